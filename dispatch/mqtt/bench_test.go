package mqtt_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
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
