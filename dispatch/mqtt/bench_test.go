package mqtt_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// BenchmarkDeviceRoundTrips connects FLEETJOBS_BENCH_MQTT_DEVICES simulated
// devices (agents; default 1,000) to the embedded broker, and per iteration
// sends every device a job and waits for every answer. It reports device
// round trips per second (target: 20,000/s with 10,000 devices).
//
//	FLEETJOBS_BENCH_MQTT_DEVICES=10000 go test -run - -bench DeviceRoundTrips -benchtime 5x ./dispatch/mqtt/
func BenchmarkDeviceRoundTrips(b *testing.B) {
	n := 1000
	if v := os.Getenv("FLEETJOBS_BENCH_MQTT_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("FLEETJOBS_BENCH_MQTT_DEVICES=%q: want a positive number", v)
		}
	}
	// Devices and broker share this process: two descriptors per device.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+500) {
		b.Skipf("%d devices need about %d open files in one process; the limit is %d (ulimit -n)", n, 2*n+500, lim.Cur)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%06d", i)
	}
	bk := MustBroker(b, ids...)
	answers := make(chan []dispatch.Answer, 1024)
	tr := MustTransport(b, bk, "bench", answers)

	// Connect the devices 64 at a time.
	agents := make([]*mqtt.Agent, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, n)
	ok := func(context.Context, dispatch.Delivery) error { return nil }
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			a, err := mqtt.ConnectAgent(ctx, mqtt.AgentConfig{URL: bk.url, DeviceID: id, Key: bk.keyFor(id), Handler: ok, Logger: zap.NewNop()})
			if err != nil {
				errs <- err
				return
			}
			agents[i] = a
		})
	}
	wg.Wait()
	b.Cleanup(func() {
		var cw sync.WaitGroup
		for _, a := range agents {
			if a != nil {
				cw.Go(func() { _ = a.Close(context.Background()) })
			}
		}
		cw.Wait()
	})
	select {
	case err := <-errs:
		b.Fatalf("connect devices: %v", err)
	default:
	}

	const batch = 1000
	ops := []dispatch.Operation{{Name: "fanSpeed", Value: 1200}}
	b.ResetTimer()
	start := time.Now()
	for it := range b.N {
		job := fmt.Sprintf("bench-%d", it)
		ds := make([]dispatch.Delivery, n)
		for i, id := range ids {
			ds[i] = dispatch.Delivery{JobID: job, DeviceID: id, JobType: "setting", Operations: ops, Deadline: time.Now().Add(time.Minute)}
		}
		sent := make(chan error, 1)
		go func() {
			var sw sync.WaitGroup
			var once sync.Once
			for i := 0; i < n; i += batch {
				sw.Go(func() {
					if err := tr.Send(context.Background(), ds[i:min(i+batch, n)]); err != nil {
						once.Do(func() { sent <- err })
					}
				})
			}
			sw.Wait()
			once.Do(func() { sent <- nil })
		}()
		timeout := time.After(2 * time.Minute)
		for got := 0; got < n; {
			select {
			case as := <-answers:
				for _, a := range as {
					if a.JobID == job {
						got++
					}
				}
			case <-timeout:
				b.Fatalf("iteration %d: %d of %d answers", it, got, n)
			}
		}
		if err := <-sent; err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "roundtrips/s")
	b.ReportMetric(float64(n), "devices")
}

// BenchmarkFleetRoundTrips measures device round trips through the
// Transport with FLEETJOBS_BENCH_MQTT_DEVICES simulated devices (default
// 10,000; target: at least 20,000 round trips/s) connected to the embedded
// broker with their device keys: a delivery published by Transport.Send,
// received by the device, its answer published, and the Transport handing
// it over on the answers channel. roundtrips/s is the Transport attached
// to the broker (Broker.Attach), as serve runs it with the embedded broker;
// connected-roundtrips/s the Transport connected to it over MQTT, as serve
// runs it with a broker of its own. The devices run in a child process (a
// light MQTT client each, rawConn) so that their sockets and the broker's
// fit the limit of open files. Each run sends every device
// FLEETJOBS_BENCH_MQTT_ROUNDS jobs (default 5) in batches of 1,000, with up
// to 8 batches being sent at once.
//
// The baseline, in the same run before and after: the same round trips
// with a bare MQTT client (rawConn) in place of the Transport, publishing
// pipelined at QoS 1 and reading the answers from a shared subscription at
// QoS 0: about what the broker and the devices allow.
//
//	go test -run '^$' -bench FleetRoundTrips -benchtime 1x ./dispatch/mqtt/
func BenchmarkFleetRoundTrips(b *testing.B) {
	n := 10_000
	if v := os.Getenv("FLEETJOBS_BENCH_MQTT_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("FLEETJOBS_BENCH_MQTT_DEVICES=%q: want a positive number", v)
		}
	}
	rounds := 5
	if v := os.Getenv("FLEETJOBS_BENCH_MQTT_ROUNDS"); v != "" {
		var err error
		if rounds, err = strconv.Atoi(v); err != nil || rounds <= 0 {
			b.Fatalf("FLEETJOBS_BENCH_MQTT_ROUNDS=%q: want a positive number", v)
		}
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%06d", i)
	}
	// The broker and the Transport share a process, as in `fleetjobs
	// serve`, which runs with GOGC=300, a 1 GiB soft memory limit and two
	// processors per CPU unless GOGC, GOMEMLIMIT or GOMAXPROCS are set
	// (cmd/fleetjobs, serveRuntime): so does this benchmark, baseline included.
	// The simulated devices keep the defaults.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		defer debug.SetGCPercent(debug.SetGCPercent(300))
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	}
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2 * runtime.GOMAXPROCS(0)))
	}
	bk := MustBroker(b, ids...)
	t0 := time.Now()
	mustSimDevices(b, bk, ids)
	b.Logf("%d simulated devices connected and subscribed in %s", n, time.Since(t0).Round(time.Millisecond))

	before := rawRoundTrips(b, bk, ids, rounds, "raw-before")
	var rate, connected float64
	for i := 0; b.Loop(); i++ {
		connected = transportRoundTrips(b, bk, ids, rounds, fmt.Sprintf("tr-%d", i), false)
		rate = transportRoundTrips(b, bk, ids, rounds, fmt.Sprintf("at-%d", i), true)
	}
	b.StopTimer()
	after := rawRoundTrips(b, bk, ids, rounds, "raw-after")
	b.Logf("%d devices × %d jobs: Transport attached %.0f, connected %.0f round trips/s; bare client %.0f / %.0f round trips/s",
		n, rounds, rate, connected, before, after)
	st := bk.broker.Stats()
	b.Logf("broker: %d messages dropped, %d answers written to the service after its queue was full", st.Dropped, st.ServiceWaited)
	b.ReportMetric(rate, "roundtrips/s")
	b.ReportMetric(connected, "connected-roundtrips/s")
	b.ReportMetric((before+after)/2, "bare-roundtrips/s")
	b.ReportMetric(float64(n), "devices")
}

// transportRoundTrips sends every device rounds jobs through a Transport,
// attached to bk's broker or connected to it, and waits for every answer;
// it returns the round trips per second.
func transportRoundTrips(tb testing.TB, bk backend, ids []string, rounds int, name string, attached bool) float64 {
	tb.Helper()
	answers := make(chan []dispatch.Answer, 1024)
	bk.attached = attached
	tr := openTransport(tb, bk, mqtt.Config{ShareGroup: name, Logger: zap.NewNop()}, answers)
	runCtx, stop := context.WithCancel(context.Background())
	var rw sync.WaitGroup
	rw.Go(func() { _ = tr.Run(runCtx) })
	defer func() {
		stop()
		rw.Wait()
		_ = tr.Close(context.Background())
	}()
	if !attached {
		mustSubscribed(tb, bk, tr, name, answers)
	}

	ops := []dispatch.Operation{{Name: "fanSpeed", Value: 1200}}
	var batches [][]dispatch.Delivery
	jobs := make(map[string]bool, rounds)
	for r := range rounds {
		job := fmt.Sprintf("%s-%d", name, r)
		jobs[job] = true
		ds := make([]dispatch.Delivery, len(ids))
		for i, id := range ids {
			ds[i] = dispatch.Delivery{JobID: job, DeviceID: id, JobType: "setting", Operations: ops, Deadline: time.Now().Add(time.Minute)}
		}
		for i := 0; i < len(ds); i += 1000 {
			batches = append(batches, ds[i:min(i+1000, len(ds))])
		}
	}
	want := rounds * len(ids)
	start := time.Now()
	sent := make(chan error, 1)
	go func() {
		var sw sync.WaitGroup
		var once sync.Once
		sem := make(chan struct{}, 8)
		for _, batch := range batches {
			sem <- struct{}{}
			sw.Go(func() {
				defer func() { <-sem }()
				if err := tr.Send(context.Background(), batch); err != nil {
					once.Do(func() { sent <- err })
				}
			})
		}
		sw.Wait()
		once.Do(func() { sent <- nil })
	}()
	timeout := time.After(2 * time.Minute)
	answered := make(map[[2]string]bool, want)
	for got := 0; got < want; {
		select {
		case as := <-answers:
			for _, a := range as {
				if jobs[a.JobID] && !answered[[2]string{a.JobID, a.DeviceID}] {
					answered[[2]string{a.JobID, a.DeviceID}] = true
					got++
				}
			}
		case <-timeout:
			var st mqtt.BrokerStats
			if bk.broker != nil {
				st = bk.broker.Stats()
			}
			var missing []string
			for _, b := range batches {
				for _, d := range b {
					if !answered[[2]string{d.JobID, d.DeviceID}] && len(missing) < 20 {
						missing = append(missing, d.JobID+"/"+d.DeviceID)
					}
				}
			}
			tb.Fatalf("%s: %d of %d answers after 2 minutes (transport: %+v; broker: %+v); no answer for %v", name, got, want, tr.Stats(), st, missing)
		}
	}
	elapsed := time.Since(start)
	if err := <-sent; err != nil {
		tb.Fatal(err)
	}
	return float64(want) / elapsed.Seconds()
}

// rawRoundTrips is transportRoundTrips with a bare MQTT client as the
// service: deliveries published at QoS 1, up to 1,000 unacknowledged (the
// broker's receive maximum is 1,024), answers read from a shared
// subscription at QoS 0 (no acknowledgements to send back). The embedded
// broker drops what it cannot queue for a connection (DefaultMaxPendingWrites), so
// some answers may never come: it waits until every delivery is
// acknowledged and no answer has come for two seconds, logs how many were
// lost, and returns the answers per second up to the last one.
func rawRoundTrips(tb testing.TB, bk backend, ids []string, rounds int, name string) float64 {
	tb.Helper()
	rc, err := rawDial(strings.TrimPrefix(bk.url, "mqtt://"), mqtt.ServiceClientPrefix+name, bk.user, bk.password, 64<<10)
	if err != nil {
		tb.Fatal(err)
	}
	defer rc.Close()
	if err := rc.subscribe(mqtt.SharedResultFilter(name), 0); err != nil {
		tb.Fatal(err)
	}
	want := rounds * len(ids)
	inflight := make(chan struct{}, 1000)
	var got, acked, last atomic.Int64 // last: when the latest answer came, Unix ns
	failed := make(chan error, 1)
	go func() {
		for {
			first, body, err := rc.readPacket()
			if err != nil {
				failed <- err
				return
			}
			switch first >> 4 {
			case pktPuback:
				acked.Add(1)
				<-inflight
			case pktPublish:
				topic, _, _, err := parsePublish(first, body)
				if err != nil {
					failed <- err
					return
				}
				if strings.Contains(topic, "/jobs/"+name+"-") {
					got.Add(1)
					last.Store(time.Now().UnixNano())
				}
			}
		}
	}()
	start := time.Now()
	deadline := time.Now().Add(time.Minute).UTC().Format(time.RFC3339)
	for r := range rounds {
		job := fmt.Sprintf("%s-%d", name, r)
		for _, id := range ids {
			select {
			case inflight <- struct{}{}:
			default:
				_ = rc.Flush()
				inflight <- struct{}{}
			}
			payload := `{"jobId":"` + job + `","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}],"deadline":"` + deadline + `"}`
			rc.publish(mqtt.JobTopic(id, job), []byte(payload), 1)
		}
	}
	_ = rc.Flush()
	for giveUp := time.Now().Add(2 * time.Minute); got.Load() < int64(want); {
		select {
		case err := <-failed:
			tb.Fatalf("%s: %v", name, err)
		case <-time.After(100 * time.Millisecond): // polling interval
		}
		idle := time.Since(time.Unix(0, last.Load()))
		if acked.Load() == int64(want) && got.Load() > 0 && idle > 2*time.Second || time.Now().After(giveUp) {
			break
		}
	}
	n := got.Load()
	if n == 0 {
		tb.Fatalf("%s: no answer", name)
	}
	if lost := int64(want) - n; lost > 0 {
		tb.Logf("%s: %d of %d answers never came (dropped by the broker)", name, lost, want)
	}
	return float64(n) / time.Unix(0, last.Load()).Sub(start).Seconds()
}
