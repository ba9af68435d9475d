package main_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// BenchmarkSimJobEndToEnd times a job on the simulated fleet end to end, as
// the service runs it: from PUT /api/v1/jobs/{id} on a set of
// FLEETJOBS_BENCH_DEVICES devices (default 100,000; the targets:
// 100,000 in under 5 s, 1,000,000 in under 40 s, peak RSS under 1.5 GiB)
// until GET /api/v1/jobs/{id} shows a result for every device. The job
// leaves out batchSize (the API's default) unless FLEETJOBS_BENCH_BATCH
// gives one.
//
// The service is the real binary, `fleetjobs serve` with
// FLEETJOBS_DEVICES=sim, as a child process (embedded event store on disk,
// the real redis-server of FLEETJOBS_TEST_REDIS_URL), so that its peak RSS
// (VmHWM) is the service's own. FLEETJOBS_BENCH_INPROCESS=1 runs serve in
// the test process instead, for -cpuprofile (the RSS is then the test's).
//
// Setup is fast but leaves the read models as the product would: the
// devices' DeviceRegistered events are appended straight to the log by many
// writers and projected by the service, then the set is defined over HTTP.
//
// Each run reports phases, read back from the job stream's recorded times:
// PUT answered (targeting recorded), JobStarted, first and last
// JobDevicesDispatched, last result appended, and the moment the poll
// (every 20 ms) saw every result in the read model. The baseline, in the
// same run before and after: a job's events (created, targeted, started,
// and n results) appended straight to the log in batches of 2,000, until
// the read model shows them: the store and projection floor with no
// dispatch at all (the job is stopped as it starts, so that the dispatcher
// leaves it alone).
//
//	bash .ci/testenv.sh go test -run '^$' -bench SimJobEndToEnd -benchtime 1x ./cmd/fleetjobs
//	FLEETJOBS_BENCH_DEVICES=1000000 bash .ci/testenv.sh go test -run '^$' -bench SimJobEndToEnd -benchtime 1x -timeout 30m ./cmd/fleetjobs
func BenchmarkSimJobEndToEnd(b *testing.B) {
	n := benchEnv(b, "FLEETJOBS_BENCH_DEVICES", 100_000)
	batch := 0 // the API's default
	if os.Getenv("FLEETJOBS_BENCH_BATCH") != "" {
		batch = benchEnv(b, "FLEETJOBS_BENCH_BATCH", 0)
	}
	svc := startSimService(b)
	es, err := eventstore.Dial(svc.esURL, eventstore.WithCodec(eventstore.NewCatalogCodec()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = es.Close() })

	start := time.Now()
	MustStatus(b, Do(b, http.MethodPut, svc.api+"/device-templates/fridge", simTemplate, nil), http.StatusCreated)
	mustRegisterDevices(b, es, "fridge", n, simBenchDevice)
	set := map[string]any{"name": "Fleet", "templateId": "fridge"}
	tok := MustStatus(b, Do(b, http.MethodPut, svc.api+"/device-sets/fleet", set, nil), http.StatusCreated).Token()
	MustApplied(b, svc.api+"/device-sets/fleet", tok)
	b.Logf("setup: %d devices registered and projected, set defined, in %s; service RSS %s (peak %s)",
		n, time.Since(start).Round(time.Millisecond), mib(svc.rss(b, "VmRSS")), mib(svc.rss(b, "VmHWM")))
	writeHeapProfile(b, "setup")

	baseline := func(name string) time.Duration {
		t0 := time.Now()
		tok := mustWriteStoppedJob(b, es, name, n)
		written := time.Since(t0)
		MustWaitJob(b, &fleet{api: svc.api}, name, tok, n)
		took := time.Since(t0)
		b.Logf("baseline %s: %d results' events appended raw in %s, in the read model after %s (%.0f results/s)",
			name, n, written.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds())
		return took
	}
	base := baseline("raw-before")

	var total time.Duration
	var peak int64
	for i := 0; b.Loop(); i++ {
		id := "sim-" + strconv.Itoa(i)
		svc.resetPeak(b)
		body := map[string]any{"name": "Fan speed " + id, "deviceSetId": "fleet", "jobType": "setting",
			"operations": []map[string]any{{"name": "fanSpeed", "value": 1200}}, "timeoutSeconds": 60}
		if batch > 0 {
			body["batchSize"] = batch
		}
		stopProfile := startJobProfile(b, i)
		t0 := time.Now()
		MustStatus(b, Do(b, http.MethodPut, svc.api+"/jobs/"+id, body, WithToken(tok)), http.StatusCreated)
		put := time.Since(t0)
		var j fjhttp.Job
		for deadline := t0.Add(10 * time.Minute); ; {
			if a := Do(b, http.MethodGet, svc.api+"/jobs/"+id, nil, nil); a.Status == http.StatusOK {
				j = MustDecode[fjhttp.Job](b, a)
				if j.Counts.Total == n && j.Counts.Pending == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("job %s after 10 min: %s %+v", id, j.Status, j.Counts)
			}
			time.Sleep(20 * time.Millisecond) // polling interval
		}
		took := time.Since(t0)
		stopProfile()
		writeHeapProfile(b, "job-"+strconv.Itoa(i))
		total += took
		hwm := svc.rss(b, "VmHWM")
		peak = max(peak, hwm)
		if j.Status != "completed" || j.Counts.Succeeded != n {
			b.Fatalf("job %s: %s %+v, want completed with %d succeeded", id, j.Status, j.Counts, n)
		}
		ph := mustJobPhases(b, es, id)
		at := func(t time.Time) string { return t.Sub(t0).Round(time.Millisecond).String() }
		b.Logf("job %s, %d devices: PUT answered %s, started %s, first dispatch %s, last dispatch %s, last result appended %s, all in the read model %s (%.0f devices/s); peak RSS during the job %s",
			id, n, put.Round(time.Millisecond), at(ph.started), at(ph.firstDispatch), at(ph.lastDispatch), at(ph.lastResult),
			took.Round(time.Millisecond), float64(n)/took.Seconds(), mib(hwm))
	}
	b.StopTimer()
	after := baseline("raw-after")
	b.Logf("baseline (raw appends + projection, before/after): %s / %s", base.Round(time.Millisecond), after.Round(time.Millisecond))
	b.ReportMetric(total.Seconds()/float64(b.N), "s/job")
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "devices/s")
	b.ReportMetric(float64(n)/((base+after)/2).Seconds(), "raw-results/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
}

// startJobProfile starts a CPU profile of the job's run alone when
// FLEETJOBS_BENCH_JOB_CPUPROFILE names a file (with
// FLEETJOBS_BENCH_INPROCESS=1: the service is then in this process), and
// returns what stops it.
func startJobProfile(tb testing.TB, run int) (stop func()) {
	tb.Helper()
	name := os.Getenv("FLEETJOBS_BENCH_JOB_CPUPROFILE")
	if name == "" {
		return func() {}
	}
	if os.Getenv("FLEETJOBS_BENCH_INPROCESS") != "1" {
		tb.Fatal("FLEETJOBS_BENCH_JOB_CPUPROFILE needs FLEETJOBS_BENCH_INPROCESS=1: the service must run in this process")
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", name, run))
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		tb.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
	}
}

// writeHeapProfile writes a heap profile of this process to
// $FLEETJOBS_BENCH_HEAPPROFILE.name when that is set (with
// FLEETJOBS_BENCH_INPROCESS=1 the service is in this process).
func writeHeapProfile(tb testing.TB, name string) {
	tb.Helper()
	base := os.Getenv("FLEETJOBS_BENCH_HEAPPROFILE")
	if base == "" {
		return
	}
	runtime.GC() // the profile shows the heap as of the last collection
	f, err := os.Create(base + "." + name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		tb.Fatal(err)
	}
}

// simService is a served fleetjobs with the simulated fleet.
type simService struct {
	api, esURL string
	pid        int // the process whose memory is read
}

// startSimService starts `fleetjobs serve` with FLEETJOBS_DEVICES=sim as a
// child process (or in process with FLEETJOBS_BENCH_INPROCESS=1) and waits
// until it is ready.
func startSimService(tb testing.TB) simService {
	tb.Helper()
	url, root := MustRedisURL(tb)
	if os.Getenv("FLEETJOBS_BENCH_INPROCESS") == "1" {
		cfg := ServeConfig(tb, url, root)
		cfg.Devices = "sim"
		m := MustServe(tb, cfg, nil)
		return simService{api: m.HTTPURL() + fjhttp.APIBase, esURL: m.EventStoreURL(), pid: os.Getpid()}
	}
	bin := MustBuild(tb)
	httpAddr, esAddr := freeAddr(tb), freeAddr(tb)
	p := MustStart(tb, bin, []string{
		"FLEETJOBS_DEVICES=sim", "FLEETJOBS_HTTP_ADDR=" + httpAddr, "FLEETJOBS_EVENTSTORE_ADDR=" + esAddr,
		"FLEETJOBS_DATA_DIR=" + tb.TempDir(), "FLEETJOBS_REDIS_URL=" + url, "FLEETJOBS_MQTT_ADDR=" + freeAddr(tb),
		"FLEETJOBS_LOG_LEVEL=warn",
	}, "serve", "--redis-key-root", root)
	MustAnswer(tb, p, "http://"+httpAddr+"/readyz", http.StatusOK)
	tb.Cleanup(func() { p.MustStop(tb) })
	return simService{api: "http://" + httpAddr + fjhttp.APIBase, esURL: "esdb://" + esAddr + "?tls=false", pid: p.cmd.Process.Pid}
}

// rss reads a memory figure (VmRSS, VmHWM) of the service's process, in
// bytes.
func (s simService) rss(tb testing.TB, field string) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("%s: %v", field, err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, s.pid)
	return 0
}

// resetPeak resets the process's VmHWM to its current RSS (Linux's
// clear_refs 5), so that the next reading is the peak of what follows.
func (s simService) resetPeak(tb testing.TB) {
	tb.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.pid), []byte("5"), 0); err != nil {
		tb.Logf("cannot reset the peak RSS (%v): it covers the setup too", err)
	}
}

func mib(bytes int64) string { return fmt.Sprintf("%.0f MiB", float64(bytes)/(1<<20)) }

// mustRegisterDevices appends DeviceRegistered of n devices of template
// (IDs id(0), id(1)...) straight to the log, one stream each as the command
// path would, from 64 writers.
func mustRegisterDevices(tb testing.TB, es *eventstore.Client, template string, n int, id func(int) string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	meta := eventstore.Metadata{CommandID: "bench-devices", CorrelationID: "bench-devices", CausationID: "bench-devices", Actor: "bench"}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				id := id(i)
				ev := device.Registered{DeviceID: id, Name: "Device " + id, TemplateID: template, Properties: map[string]any{"city": "Seattle"}}
				if _, err := es.Append(ctx, eventstore.DeviceStream(id), eventstore.NoStream(), []eventstore.Event{{ID: uuid.New(), Data: ev, Metadata: meta}}); err != nil {
					errs <- fmt.Errorf("register %s: %w", id, err)
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
}

func simBenchDevice(i int) string { return fmt.Sprintf("fr-%07d", i) }

// MustApplied asks GET url with token until the read models have applied it
// (the consistency wait is bounded: 503 until then).
func MustApplied(tb testing.TB, url, token string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		a := Do(tb, http.MethodGet, url, nil, WithToken(token))
		if a.Status == http.StatusOK {
			return
		}
		if a.Status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			tb.Fatalf("GET %s: %d %s", url, a.Status, a.Body)
		}
	}
}

// jobPhases are the recorded times of a job's milestones.
type jobPhases struct {
	started, firstDispatch, lastDispatch, lastResult time.Time
}

// mustJobPhases reads job id's stream for the times its milestones were
// recorded.
func mustJobPhases(tb testing.TB, es *eventstore.Client, id string) jobPhases {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var ph jobPhases
	err := es.ReadStream(ctx, eventstore.JobStream(id), 0, func(r eventstore.Recorded) error {
		switch r.Type {
		case eventstore.JobStarted:
			ph.started = r.RecordedAt
		case eventstore.JobDevicesDispatched:
			if ph.firstDispatch.IsZero() {
				ph.firstDispatch = r.RecordedAt
			}
			ph.lastDispatch = r.RecordedAt
		case eventstore.DeviceOperationSucceeded, eventstore.DeviceOperationFailed:
			ph.lastResult = r.RecordedAt
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("read job %s: %v", id, err)
	}
	return ph
}

// mustWriteStoppedJob writes job id on the set "fleet" with n devices
// straight to the log, many events per append (each under the store's
// 1 MiB): JobCreated, JobDevicesTargeted by 1,000, then JobStarted and
// JobStopped in the append of the last targeting event (so the dispatcher,
// which reads them together, never dispatches it), then a succeeded result
// for every device. It returns the last position as a consistency token.
func mustWriteStoppedJob(tb testing.TB, es *eventstore.Client, id string, n int) string {
	tb.Helper()
	w := newJobLogWriter(tb, es, id)
	defer w.close()
	add, flush := w.add, w.flush
	add(job.Created{JobID: id, Name: "Raw " + id, DeviceSetID: "fleet", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 1200.0}}, DeviceCount: n, TimeoutSeconds: 60, BatchSize: job.DefaultBatchSize}, 1)
	for lo := 0; lo < n; lo += job.MaxDevicesPerEvent {
		if lo+job.MaxDevicesPerEvent >= n {
			flush() // the last targeting event goes with Started and Stopped
		}
		ds := make([]job.TargetedDevice, 0, job.MaxDevicesPerEvent)
		for i := lo; i < min(lo+job.MaxDevicesPerEvent, n); i++ {
			ds = append(ds, job.TargetedDevice{DeviceID: simBenchDevice(i), Name: "Fridge " + simBenchDevice(i)})
		}
		add(job.DevicesTargeted{JobID: id, Devices: ds}, 200)
	}
	add(job.Started{JobID: id}, 1)
	add(job.Stopped{JobID: id, Reason: "baseline: no dispatch"}, 1)
	flush()
	for i := range n {
		add(job.OperationSucceeded{JobID: id, DeviceID: simBenchDevice(i)}, 1)
	}
	flush()
	return w.pos.String()
}
