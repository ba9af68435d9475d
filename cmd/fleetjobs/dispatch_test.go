package main_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// simTemplate declares the properties the simulated fleet reads, so that
// devices may carry them.
var simTemplate = map[string]any{
	"name":     "Fridge",
	"settings": []map[string]string{{"name": "fanSpeed", "schema": "number"}},
	"properties": []map[string]string{{"name": "city", "schema": "string"},
		{"name": "simFail", "schema": "string"}, {"name": "simOffline", "schema": "boolean"}},
}

// simDevice is a device of the fridge template: "ok" answers and succeeds,
// "fail" fails with "compressor fault", "offline" never answers.
type simDevice struct{ id, kind string }

// SimServeConfig is ServeConfig with the simulated fleet.
func SimServeConfig(tb testing.TB) main.Config {
	tb.Helper()
	url, root := MustRedisURL(tb)
	cfg := ServeConfig(tb, url, root)
	cfg.Devices = "sim"
	return cfg
}

// MustSimFleet records the fridge template, devices and the set "fleet" of
// all of them on a served fleetjobs; it returns the base of the API and the
// consistency token of the last command.
func MustSimFleet(tb testing.TB, m *main.Main, devices []simDevice) (api, token string) {
	tb.Helper()
	api = m.HTTPURL() + fjhttp.APIBase
	MustStatus(tb, Do(tb, http.MethodPut, api+"/device-templates/fridge", simTemplate, nil), http.StatusCreated)
	for _, d := range devices {
		props := map[string]any{"city": "Seattle"}
		switch d.kind {
		case "fail":
			props["simFail"] = "compressor fault"
		case "offline":
			props["simOffline"] = true
		}
		MustStatus(tb, Do(tb, http.MethodPut, api+"/devices/"+d.id, map[string]any{"name": "Fridge " + d.id, "templateId": "fridge", "properties": props}, nil), http.StatusCreated)
	}
	set := map[string]any{"name": "Fleet", "templateId": "fridge"}
	token = MustStatus(tb, Do(tb, http.MethodPut, api+"/device-sets/fleet", set, nil), http.StatusCreated).Token()
	return api, token
}

func simDevices(prefix, kind string, n int) []simDevice {
	out := make([]simDevice, n)
	for i := range out {
		out[i] = simDevice{id: fmt.Sprintf("%s-%03d", prefix, i), kind: kind}
	}
	return out
}

// MustCreateSimJob creates job id on every device of the set "fleet".
func MustCreateSimJob(tb testing.TB, api, token, id string, timeoutSeconds, batchSize int) {
	tb.Helper()
	body := map[string]any{"name": "Fan speed " + id, "deviceSetId": "fleet", "jobType": "setting",
		"operations": []map[string]any{{"name": "fanSpeed", "value": 1200}}, "timeoutSeconds": timeoutSeconds}
	if batchSize > 0 {
		body["batchSize"] = batchSize
	}
	MustStatus(tb, Do(tb, http.MethodPut, api+"/jobs/"+id, body, WithToken(token)), http.StatusCreated)
}

// MustJobEnds polls GET /jobs/{id} until the job has a final status and no
// pending device, for at most 30 s, and returns it. A 404 is the read
// models not having the job yet.
func MustJobEnds(tb testing.TB, api, id string) fjhttp.Job {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var j fjhttp.Job
		if a := Do(tb, http.MethodGet, api+"/jobs/"+id, nil, nil); a.Status != http.StatusNotFound {
			j = MustDecode[fjhttp.Job](tb, MustStatus(tb, a, http.StatusOK))
		}
		switch j.Status {
		case "completed", "failed", "stopped":
			if j.Counts.Pending == 0 || j.Status == "stopped" {
				return j
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s still %s after 30 s: %+v", id, j.Status, j.Counts)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// MustJobEndsAs is MustJobEnds, and fails the test unless the job ended
// with status and counts.
func MustJobEndsAs(tb testing.TB, api, id, status string, counts fjhttp.JobCounts) fjhttp.Job {
	tb.Helper()
	j := MustJobEnds(tb, api, id)
	if diff := cmp.Diff(counts, j.Counts); diff != "" || j.Status != status {
		tb.Fatalf("job %s: status %s, want %s; counts (-want +got):\n%s", id, j.Status, status, diff)
	}
	return j
}

// MustPoll calls cond until it is true, for at most 30 s.
func MustPoll(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after 30 s, still not: %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// jobStream is what a job's stream says of its devices.
type jobStream struct {
	dispatched map[string]int    // device -> JobDevicesDispatched naming it
	results    map[string]int    // device -> results recorded
	errors     map[string]string // device -> error of its failure
	types      []string
}

func MustReadJobStream(tb testing.TB, es *eventstore.Client, id string) jobStream {
	tb.Helper()
	codec := eventstore.NewCatalogCodec()
	s := jobStream{dispatched: map[string]int{}, results: map[string]int{}, errors: map[string]string{}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := es.ReadStream(ctx, eventstore.JobStream(id), 0, func(r eventstore.Recorded) error {
		s.types = append(s.types, r.Type)
		v, err := r.Decode(codec)
		if err != nil {
			return err
		}
		switch e := v.(type) {
		case job.DevicesDispatched:
			for _, d := range e.DeviceIDs {
				s.dispatched[d]++
			}
		case job.OperationSucceeded:
			s.results[e.DeviceID]++
		case job.OperationFailed:
			s.results[e.DeviceID]++
			s.errors[e.DeviceID] = e.Error
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("read job %s: %v", id, err)
	}
	return s
}

// MustMetric reads one sample of /metrics.
func MustMetric(tb testing.TB, base, name string) float64 {
	tb.Helper()
	a := MustStatus(tb, Do(tb, http.MethodGet, base+"/metrics", nil, nil), http.StatusOK)
	sc := bufio.NewScanner(bytes.NewReader(a.Body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	tb.Fatalf("no metric %s in /metrics", name)
	return 0
}

// TestSimFleetRunsAJob runs a job on the simulated fleet: succeeding,
// failing and offline devices (timeout 1 s) each end with the right status,
// and the job fails, once, with the counts of its devices.
func TestSimFleetRunsAJob(t *testing.T) {
	t.Parallel()
	m := MustServe(t, SimServeConfig(t), nil)
	devices := append(simDevices("ok", "ok", 3), simDevice{"bad", "fail"}, simDevice{"gone", "offline"})
	api, token := MustSimFleet(t, m, devices)

	MustCreateSimJob(t, api, token, "j1", 1, 0)
	MustJobEndsAs(t, api, "j1", "failed", fjhttp.JobCounts{Total: 5, Succeeded: 3, Failed: 2})
	l := MustDecode[fjhttp.List[fjhttp.JobDevice]](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j1/devices", nil, nil), http.StatusOK))
	got := map[string]string{}
	for _, d := range l.Items {
		got[d.DeviceID] = d.Status + " " + d.Error
	}
	want := map[string]string{
		"ok-000": "succeeded ", "ok-001": "succeeded ", "ok-002": "succeeded ",
		"bad": "failed compressor fault", "gone": "failed " + dispatch.TimedOut(1),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("device statuses (-want +got):\n%s", diff)
	}
	s := MustReadJobStream(t, MustEventStore(t, m), "j1")
	if diff := cmp.Diff(map[string]int{"ok-000": 1, "ok-001": 1, "ok-002": 1, "bad": 1, "gone": 1}, s.results); diff != "" {
		t.Errorf("results in the job stream (-want +got):\n%s", diff)
	}
	if n := MustMetric(t, m.HTTPURL(), "fleetjobs_dispatch_timed_out_total"); n != 1 {
		t.Errorf("fleetjobs_dispatch_timed_out_total = %v, want 1", n)
	}
}

// TestSimStopHaltsSending stops a job whose devices never answer once its
// first batch is on its way: no device is sent the job after the stop, and
// every device stays pending, the dispatched ones too: their deadline
// passes, but no timeout is recorded on a stopped job (they did nothing).
func TestSimStopHaltsSending(t *testing.T) {
	t.Parallel()
	m := MustServe(t, SimServeConfig(t), nil)
	api, token := MustSimFleet(t, m, simDevices("off", "offline", 30))
	es := MustEventStore(t, m)

	mustStopMidJob(t, m, api, token, es, 30)
	j := MustDecode[fjhttp.Job](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j-stop", nil, WithToken(MustHead(t, es).String())), http.StatusOK))
	want := fjhttp.JobCounts{Total: 30, Pending: 30}
	if diff := cmp.Diff(want, j.Counts); diff != "" || j.Status != "stopped" {
		t.Errorf("job: status %s, want stopped; counts (-want +got):\n%s", j.Status, diff)
	}
}

// mustStopMidJob creates job j-stop (batches of 1, 2 s timeout) on a fleet
// of n devices that never answer, stops it once a first batch is
// dispatched, and fails the test if any device is sent the job after the
// stop, or a result is recorded for a device that never answered. It waits
// until the dispatcher let the job go, after the dispatched devices'
// deadline (anything it would still send or record would be recorded
// first), and returns the job's stream then.
func mustStopMidJob(t *testing.T, m *main.Main, api, token string, es *eventstore.Client, n int) jobStream {
	t.Helper()
	MustCreateSimJob(t, api, token, "j-stop", 1, 2)
	MustPoll(t, "a batch of j-stop dispatched", func() bool { return len(MustReadJobStream(t, es, "j-stop").dispatched) > 0 })
	MustStatus(t, Do(t, http.MethodPost, api+"/jobs/j-stop/stop", map[string]any{"reason": "wrong fan speed"}, nil), http.StatusOK)
	atStop := MustReadJobStream(t, es, "j-stop")
	MustPoll(t, "the dispatcher dropped j-stop", func() bool { return MustMetric(t, m.HTTPURL(), "fleetjobs_dispatch_jobs") == 0 })
	after := MustReadJobStream(t, es, "j-stop")
	if diff := cmp.Diff(atStop.dispatched, after.dispatched); diff != "" {
		t.Errorf("devices dispatched after the stop (-at stop +after):\n%s", diff)
	}
	if len(after.results) != 0 {
		t.Errorf("%d results recorded for devices that never answered (timeouts after the stop?): %v", len(after.results), after.results)
	}
	if len(after.dispatched) >= n {
		t.Fatalf("all %d devices were dispatched before the stop: the test proves nothing", len(after.dispatched))
	}
	return after
}

// TestSimRestartMidJob closes serve while a job runs and starts it again on
// the same data directory and Redis: the job finishes with every device's
// result recorded exactly once.
func TestSimRestartMidJob(t *testing.T) {
	t.Parallel()
	cfg := SimServeConfig(t)
	m1 := MustServe(t, cfg, nil)
	devices := append(append(simDevices("ok", "ok", 40), simDevices("bad", "fail", 4)...), simDevices("off", "offline", 4)...)
	api, token := MustSimFleet(t, m1, devices)
	es1 := MustEventStore(t, m1)

	MustCreateSimJob(t, api, token, "j-restart", 2, 4)
	MustPoll(t, "some results of j-restart recorded", func() bool { return len(MustReadJobStream(t, es1, "j-restart").results) > 0 })
	if err := m1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = es1.Close()

	m2 := MustServe(t, cfg, nil)
	es2 := MustEventStore(t, m2)
	// The offline devices time out 2 s after their dispatch: the job is
	// still running now, unless the restart took that long.
	if s := MustReadJobStream(t, es2, "j-restart"); len(s.results) == len(devices) {
		t.Fatal("the job ended before the restart: the test proves nothing")
	}
	api = m2.HTTPURL() + fjhttp.APIBase
	MustJobEndsAs(t, api, "j-restart", "failed", fjhttp.JobCounts{Total: 48, Succeeded: 40, Failed: 8})
	s := MustReadJobStream(t, es2, "j-restart")
	want := make(map[string]int, len(devices))
	for _, d := range devices {
		want[d.id] = 1
	}
	if diff := cmp.Diff(want, s.results); diff != "" {
		t.Errorf("results per device in the job stream (-want +got):\n%s", diff)
	}
	ends := 0
	for _, typ := range s.types {
		if typ == "JobFailed" || typ == "JobCompleted" {
			ends++
		}
	}
	if ends != 1 {
		t.Errorf("%d final events in the job stream, want 1: %v", ends, s.types)
	}
}

// TestSimRestartOnEmbeddedRedis closes serve (embedded Redis, simulated
// fleet) while a job waits for devices that never answer, and starts it
// again on the same data directory: the embedded Redis starts empty, and
// the dispatcher resends before the projections have read the devices back
// (thousands of other devices come first in the log). The job ends as it
// would have without the restart: the silent devices time out, none fails
// with "device not found".
func TestSimRestartOnEmbeddedRedis(t *testing.T) {
	t.Parallel()
	cfg := ServeConfig(t, "", "")
	cfg.Devices = "sim"
	m1 := MustServe(t, cfg, nil)
	es1 := MustEventStore(t, m1)
	// Devices of another template, before the job's in the log: the
	// projections rebuild them first at the next start.
	mustRegisterDevices(t, es1, "other", 20000, func(i int) string { return fmt.Sprintf("other-%05d", i) })
	devices := append(append(simDevices("ok", "ok", 20), simDevices("bad", "fail", 2)...), simDevices("off", "offline", 3)...)
	api, token := MustSimFleet(t, m1, devices)

	const timeout = 10
	MustCreateSimJob(t, api, token, "j-embedded", timeout, 0)
	MustPoll(t, "every device of j-embedded dispatched, the answering ones answered", func() bool {
		s := MustReadJobStream(t, es1, "j-embedded")
		return len(s.dispatched) == len(devices) && len(s.results) == len(devices)-3
	})
	if err := m1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = es1.Close()

	m2 := MustServe(t, cfg, nil)
	es2 := MustEventStore(t, m2)
	api = m2.HTTPURL() + fjhttp.APIBase
	MustJobEndsAs(t, api, "j-embedded", "failed", fjhttp.JobCounts{Total: 25, Succeeded: 20, Failed: 5})
	want := map[string]string{"bad-000": "compressor fault", "bad-001": "compressor fault"}
	for _, d := range simDevices("off", "offline", 3) {
		want[d.id] = dispatch.TimedOut(timeout)
	}
	if diff := cmp.Diff(want, MustReadJobStream(t, es2, "j-embedded").errors); diff != "" {
		t.Errorf("errors recorded in the job stream (-want +got):\n%s", diff)
	}
}

// TestSimDeletedDeviceFails creates a job while nothing dispatches, deletes
// one of its devices, and starts serve again with the simulated fleet on
// the same data and Redis: the deleted device fails with "device not found"
// (the read models have applied the job's targeting, so its absence is a
// deletion, not a read model behind), the others succeed.
func TestSimDeletedDeviceFails(t *testing.T) {
	t.Parallel()
	url, root := MustRedisURL(t)
	cfg := ServeConfig(t, url, root)
	m1 := MustServe(t, cfg, nil)
	api, token := MustSimFleet(t, m1, simDevices("ok", "ok", 3))
	MustCreateSimJob(t, api, token, "j-deleted", 5, 0)
	MustStatus(t, Do(t, http.MethodDelete, api+"/devices/ok-001", nil, nil), http.StatusOK)
	if err := m1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	cfg.Devices = "sim"
	m2 := MustServe(t, cfg, nil)
	MustJobEndsAs(t, m2.HTTPURL()+fjhttp.APIBase, "j-deleted", "failed", fjhttp.JobCounts{Total: 3, Succeeded: 2, Failed: 1})
	if diff := cmp.Diff(map[string]string{"ok-001": "device not found"}, MustReadJobStream(t, MustEventStore(t, m2), "j-deleted").errors); diff != "" {
		t.Errorf("errors recorded in the job stream (-want +got):\n%s", diff)
	}
}

// readmeJob is the fan-speed job of the README (and of the demo's banner).
const readmeJob = `{"name":"Fan speed 1200","deviceSetId":"seattle-fridges","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}],"timeoutSeconds":5}`

// TestDemoSeedsOnceAndRunsTheReadmeJob starts serve --demo twice on the
// same data: the first start records the demo fleet through the command
// path, the second records nothing; the README's fan-speed job runs on it
// to its end.
func TestDemoSeedsOnceAndRunsTheReadmeJob(t *testing.T) {
	t.Parallel()
	cfg := SimServeConfig(t)
	cfg.Demo = true
	m1 := MustServe(t, cfg, nil)
	es1 := MustEventStore(t, m1)
	head := MustHead(t, es1)
	if head.IsZero() {
		t.Fatal("the demo recorded nothing")
	}
	api := m1.HTTPURL() + fjhttp.APIBase
	members := MustDecode[fjhttp.Members](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/seattle-fridges/devices?limit=1000", nil, WithToken(head.String())), http.StatusOK))
	if len(members.Items) == 0 {
		t.Fatal("the demo's seattle-fridges set has no members")
	}
	all := MustDecode[fjhttp.Members](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/all-fridges/devices?limit=1000", nil, nil), http.StatusOK))
	if len(all.Items) < 200 {
		t.Errorf("all-fridges has %d devices, want a few hundred", len(all.Items))
	}
	var faulty int
	for _, d := range members.Items {
		if d.Properties["simFail"] != nil || d.Properties["simOffline"] == true {
			faulty++
		}
	}
	if faulty == 0 {
		t.Error("no Seattle fridge fails or is offline: the demo shows no failure")
	}
	if err := m1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = es1.Close()

	m2 := MustServe(t, cfg, nil)
	es2 := MustEventStore(t, m2)
	if again := MustHead(t, es2); again != head {
		t.Fatalf("the second start recorded events: head %s, was %s", again, head)
	}
	api = m2.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/jobs/fan-1200", readmeJob, WithToken(head.String())), http.StatusCreated)
	j := MustJobEnds(t, api, "fan-1200")
	want := fjhttp.JobCounts{Total: len(members.Items), Succeeded: len(members.Items) - faulty, Failed: faulty}
	if diff := cmp.Diff(want, j.Counts); diff != "" || j.Status != "failed" {
		t.Errorf("fan-1200: status %s, want failed (some fridges fail); counts (-want +got):\n%s", j.Status, diff)
	}
}

// TestNoTransportLeavesJobsPending: with FLEETJOBS_DEVICES=none serve
// starts no dispatcher, says once that jobs stay pending, and a job does.
func TestNoTransportLeavesJobsPending(t *testing.T) {
	t.Parallel()
	url, root := MustRedisURL(t)
	core, logs := observer.New(zap.WarnLevel)
	m := MustServe(t, ServeConfig(t, url, root), zap.New(core))
	api, token := MustSimFleet(t, m, simDevices("ok", "ok", 2))
	MustCreateSimJob(t, api, token, "j-pending", 1, 0)

	if n := logs.FilterMessageSnippet("jobs stay pending").Len(); n != 1 {
		t.Errorf("%d warnings that jobs stay pending, want 1: %v", n, logs.All())
	}
	a := MustStatus(t, Do(t, http.MethodGet, m.HTTPURL()+"/metrics", nil, nil), http.StatusOK)
	if bytes.Contains(a.Body, []byte("fleetjobs_dispatch_")) {
		t.Error("/metrics has dispatcher metrics without a dispatcher")
	}
	j := MustDecode[fjhttp.Job](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j-pending", nil, WithToken(MustHead(t, MustEventStore(t, m)).String())), http.StatusOK))
	if j.Status != "pending" {
		t.Errorf("job status %s without a transport, want pending", j.Status)
	}
}

// TestNoTransportServesBesideADispatcher runs what FLEETJOBS_DEVICES=none
// is for: an instance that serves the API beside one that dispatches (the
// simulated fleet), over the same event log and Redis. A job created
// through it is started and run by the other; a gateway's result for the
// device that does not answer, posted to it, completes the job.
func TestNoTransportServesBesideADispatcher(t *testing.T) {
	t.Parallel()
	url, root := MustRedisURL(t)
	dcfg := ServeConfig(t, url, root)
	dcfg.Devices = "sim"
	dispatching := MustServe(t, dcfg, nil)
	cfg := ServeConfig(t, url, root)
	cfg.EventStoreURL = dispatching.EventStoreURL()
	m := MustServe(t, cfg, nil)

	api, token := MustSimFleet(t, m, append(simDevices("ok", "ok", 2), simDevice{"gw", "offline"}))
	MustCreateSimJob(t, api, token, "j-beside", 60, 0)
	MustPoll(t, "j-beside running, its answering devices succeeded", func() bool {
		a := Do(t, http.MethodGet, api+"/jobs/j-beside", nil, nil)
		if a.Status != http.StatusOK {
			return false
		}
		j := MustDecode[fjhttp.Job](t, a)
		return j.Status == "running" && j.Counts.Succeeded == 2
	})
	MustStatus(t, Do(t, http.MethodPost, api+"/jobs/j-beside/devices/gw/result", map[string]any{"status": "succeeded"}, nil), http.StatusAccepted)
	MustJobEndsAs(t, api, "j-beside", "completed", fjhttp.JobCounts{Total: 3, Succeeded: 3})
}
