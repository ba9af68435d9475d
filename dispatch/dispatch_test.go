package dispatch_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

// outcomes is dispatch.Outcomes over the real command handler: the adapter
// cmd/fleetjobs wires the same way.
type outcomes struct {
	h *commands.Handler
	// beforeResults, when set, is called before results are recorded.
	beforeResults func(rs []job.DeviceResult)
}

func meta(m dispatch.Meta) commands.Meta {
	return commands.Meta{CommandID: m.CommandID, CorrelationID: m.CorrelationID, CausationID: m.CausationID, Actor: m.Actor}
}

func (o outcomes) StartJob(ctx context.Context, m dispatch.Meta, cmd job.Start) error {
	_, err := o.h.StartJob(ctx, meta(m), cmd)
	return err
}

func (o outcomes) RecordDispatches(ctx context.Context, m dispatch.Meta, cmds []job.RecordDispatch) error {
	_, err := o.h.RecordDispatches(ctx, meta(m), cmds)
	return err
}

func (o outcomes) RecordResults(ctx context.Context, m dispatch.Meta, jobID string, rs []job.DeviceResult) error {
	if o.beforeResults != nil {
		o.beforeResults(rs)
	}
	_, err := o.h.RecordResults(ctx, meta(m), jobID, rs)
	return err
}

// props is the simulated devices' properties, by device ID.
type props map[string]map[string]any

func (p props) Properties(_ context.Context, ds []dispatch.Delivery) ([]map[string]any, error) {
	out := make([]map[string]any, len(ds))
	for i, d := range ds {
		out[i] = p[d.DeviceID]
	}
	return out, nil
}

// recordingTransport forwards to a sim fleet and records what it sent;
// before lets a test act on the n-th Send (1-based) before it goes out, and
// lose, when set, loses the deliveries it returns true for (given how many
// times the device was sent the job, this one included): they are recorded
// as sent but never reach the fleet.
type recordingTransport struct {
	next   dispatch.Transport
	before func(n int)
	lose   func(d dispatch.Delivery, n int) bool
	// refuse, when set and true, refuses the Send: nothing is sent or
	// recorded as sent (a broker that is down).
	refuse func() bool

	mu    sync.Mutex
	calls int
	sent  map[string]int // device ID -> deliveries
}

func (t *recordingTransport) Send(ctx context.Context, ds []dispatch.Delivery) error {
	t.mu.Lock()
	t.calls++
	n := t.calls
	t.mu.Unlock()
	if t.before != nil {
		t.before(n)
	}
	if t.refuse != nil && t.refuse() {
		return errors.New("transport down")
	}
	t.mu.Lock()
	kept := ds
	if t.lose != nil {
		kept = make([]dispatch.Delivery, 0, len(ds))
	}
	for _, d := range ds {
		t.sent[d.DeviceID]++
		if t.lose != nil && !t.lose(d, t.sent[d.DeviceID]) {
			kept = append(kept, d)
		}
	}
	t.mu.Unlock()
	if len(kept) == 0 {
		return nil
	}
	return t.next.Send(ctx, kept)
}

func (t *recordingTransport) Sent() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.sent))
	for k, v := range t.sent {
		out[k] = v
	}
	return out
}

// env is a real event store and command handler.
type env struct {
	store *eventstore.Client
	h     *commands.Handler
	codec *eventstore.Codec
}

func MustEnv(tb testing.TB) *env {
	tb.Helper()
	codec := eventstore.NewCatalogCodec()
	store := eventstoretest.MustStart(tb, eventstore.WithCodec(codec))
	h := commands.New(store, codec, time.Now, uuid.NewString, zaptest.NewLogger(tb))
	tb.Cleanup(func() { _ = h.Close() })
	return &env{store: store, h: h, codec: codec}
}

// running is a Manager and sim fleet running until stop is called (or the
// test ends).
type running struct {
	m         *dispatch.Manager
	transport *recordingTransport
	answers   chan<- []dispatch.Answer // the devices' answers, as a transport hands them on
	stop      func()
}

// MustRun starts a Manager over a sim fleet with devices' properties p.
func MustRun(tb testing.TB, e *env, p props, before func(int), cps dispatch.Checkpoints) *running {
	tb.Helper()
	return MustRunWith(tb, e, p, runOptions{before: before, checkpoints: cps})
}

// runOptions are MustRunWith's options: the recordingTransport's before and
// lose, the Manager's Checkpoints and ResendAfter.
type runOptions struct {
	before      func(int)
	lose        func(d dispatch.Delivery, n int) bool
	refuse      func() bool
	checkpoints dispatch.Checkpoints
	resendAfter time.Duration
	window      int
	// beforeResults: see outcomes.
	beforeResults func(rs []job.DeviceResult)
}

// MustRunWith is MustRun with more options.
func MustRunWith(tb testing.TB, e *env, p props, o runOptions) *running {
	tb.Helper()
	answers := make(chan []dispatch.Answer, 64)
	fleet := sim.New(p, answers, sim.Config{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Rand: rand.New(rand.NewPCG(1, 2))})
	tr := &recordingTransport{next: fleet, before: o.before, lose: o.lose, refuse: o.refuse, sent: make(map[string]int)}
	m, err := dispatch.New(dispatch.Config{
		Events: e.store, Codec: e.codec, Outcomes: outcomes{h: e.h, beforeResults: o.beforeResults}, Transport: tr, Answers: answers,
		Checkpoints: o.checkpoints, Now: time.Now, NewID: uuid.NewString, Logger: zaptest.NewLogger(tb),
		ResendAfter: o.resendAfter, Window: o.window,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = fleet.Run(ctx) })
	wg.Go(func() {
		if err := m.Run(ctx); err != nil {
			tb.Errorf("manager: %v", err)
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	tb.Cleanup(stop)
	return &running{m: m, transport: tr, answers: answers, stop: stop}
}

func template() device.Template {
	return device.FoldTemplate([]device.TemplateEvent{device.TemplatePublished{
		TemplateID: "vending-v2", Name: "Vending v2",
		Settings: []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}},
	}})
}

func set() device.Set {
	return device.FoldSet([]device.SetEvent{device.SetDefined{SetID: "seattle", Name: "Seattle", TemplateID: "vending-v2"}})
}

func deviceIDs(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%07d", prefix, i)
	}
	return out
}

// MustCreate creates job id on devices.
func MustCreate(tb testing.TB, e *env, id string, devices []string, timeoutSeconds, batchSize int) {
	tb.Helper()
	members := make([]job.TargetedDevice, len(devices))
	for i, d := range devices {
		members[i] = job.TargetedDevice{DeviceID: d, Name: "Vending " + d}
	}
	_, err := e.h.CreateJob(context.Background(), commands.Meta{Actor: "test"}, job.Create{
		JobID: id, Name: "Fan speed", DeviceSetID: "seattle", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 1200}}, TimeoutSeconds: timeoutSeconds, BatchSize: batchSize,
		Set: set(), Template: template(), Members: members,
	})
	if err != nil {
		tb.Fatalf("create job %s: %v", id, err)
	}
}

// jobLog is a job's stream, folded.
type jobLog struct {
	state   *job.State
	records []eventstore.Recorded
	events  []job.Event
}

func MustReadJob(tb testing.TB, e *env, id string) jobLog {
	tb.Helper()
	var l jobLog
	err := e.store.ReadStream(context.Background(), eventstore.JobStream(id), 0, func(r eventstore.Recorded) error {
		v, err := r.Decode(e.codec)
		if err != nil {
			return err
		}
		ev := v.(job.Event)
		l.records = append(l.records, r)
		l.events = append(l.events, ev)
		l.state = job.Evolve(l.state, ev)
		return nil
	})
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		tb.Fatalf("read job %s: %v", id, err)
	}
	return l
}

// MustWaitJob polls job id's stream until cond holds, failing after a
// deadline.
func MustWaitJob(tb testing.TB, e *env, id string, within time.Duration, cond func(jobLog) bool) jobLog {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		l := MustReadJob(tb, e, id)
		if l.state != nil && cond(l) {
			return l
		}
		if time.Now().After(deadline) {
			c := job.Counts{}
			if l.state != nil {
				c = l.state.Counts()
			}
			tb.Fatalf("job %s: condition not reached within %s (counts %+v)", id, within, c)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a stand-in for a condition
	}
}

func finished(l jobLog) bool { return l.state.Status.Finished() }

// results counts the result events per device.
func results(l jobLog) map[string]int {
	out := make(map[string]int)
	for _, ev := range l.events {
		switch e := ev.(type) {
		case job.OperationSucceeded:
			out[e.DeviceID]++
		case job.OperationFailed:
			out[e.DeviceID]++
		}
	}
	return out
}

func deviceStates(l jobLog) map[string]job.Device {
	out := make(map[string]job.Device)
	for id, d := range l.state.Devices() {
		out[id] = d
	}
	return out
}

func TestJobOverSimulatedDevicesRecordsEachOutcome(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("vm", 250)
	p := props{}
	want := make(map[string]job.Device)
	for i, id := range ids {
		switch {
		case i%50 == 7:
			p[id] = map[string]any{sim.FailProperty: "fan stuck"}
			want[id] = job.Device{Status: job.DeviceFailed, Dispatched: true, Error: "fan stuck"}
		case i%50 == 9:
			p[id] = map[string]any{sim.OfflineProperty: true}
			want[id] = job.Device{Status: job.DeviceFailed, Dispatched: true, Error: dispatch.TimedOut(1)}
		default:
			want[id] = job.Device{Status: job.DeviceSucceeded, Dispatched: true}
		}
	}
	MustRun(t, e, p, nil, nil)
	MustCreate(t, e, "mixed", ids, 1, 20)

	l := MustWaitJob(t, e, "mixed", 30*time.Second, finished)
	if l.state.Status != job.StatusFailed {
		t.Errorf("status %s, want failed (some devices failed)", l.state.Status)
	}
	if diff := cmp.Diff(want, deviceStates(l)); diff != "" {
		t.Errorf("device states (-want +got):\n%s", diff)
	}
	for id, n := range results(l) {
		if n != 1 {
			t.Errorf("device %s has %d results, want 1", id, n)
		}
	}
}

func TestAllSucceedingJobCompletes(t *testing.T) {
	e := MustEnv(t)
	MustRun(t, e, props{}, nil, nil)
	MustCreate(t, e, "ok", deviceIDs("vm", 1000), 30, 100)
	l := MustWaitJob(t, e, "ok", 30*time.Second, finished)
	if diff := cmp.Diff(job.Counts{Total: 1000, Succeeded: 1000, Dispatched: 1000}, l.state.Counts()); l.state.Status != job.StatusCompleted || diff != "" {
		t.Errorf("status %s, counts (-want +got):\n%s", l.state.Status, diff)
	}
}

func TestStopHaltsSendingAndRecordsAnswersInFlight(t *testing.T) {
	e := MustEnv(t)
	const batch, window = 10, 30
	stopped := make(chan struct{})
	before := func(n int) {
		if n != 1 {
			return
		}
		// The first batches are recorded as dispatched: stop the job
		// before they leave. They are still sent (the log says they were
		// dispatched), but nothing after them is.
		if _, err := e.h.StopJob(context.Background(), commands.Meta{Actor: "test"}, job.Stop{JobID: "stop-me"}); err != nil {
			t.Errorf("stop: %v", err)
		}
		close(stopped)
	}
	r := MustRunWith(t, e, props{}, runOptions{before: before, window: window})
	MustCreate(t, e, "stop-me", deviceIDs("vm", 500), 30, batch)
	<-stopped

	l := MustWaitJob(t, e, "stop-me", 30*time.Second, func(l jobLog) bool {
		c := l.state.Counts()
		return c.Dispatched > 0 && c.Succeeded+c.Failed == c.Dispatched
	})
	if l.state.Status != job.StatusStopped {
		t.Errorf("status %s, want stopped", l.state.Status)
	}
	// Every device sent was recorded as dispatched before the stop, no
	// more than the window, and each one's answer is recorded.
	c := l.state.Counts()
	sent := r.transport.Sent()
	if len(sent) != c.Dispatched || c.Dispatched > window || c.Succeeded != c.Dispatched {
		t.Errorf("sent %d devices, dispatched %d, succeeded %d: want the same number, at most the window of %d", len(sent), c.Dispatched, c.Succeeded, window)
	}
	for id := range sent {
		if d, _ := l.state.Device(id); !d.Dispatched {
			t.Errorf("device %s was sent but not recorded as dispatched", id)
		}
	}
	stopAt := -1
	for i, ev := range l.events {
		switch ev.(type) {
		case job.Stopped:
			stopAt = i
		case job.DevicesDispatched:
			if stopAt >= 0 {
				t.Errorf("JobDevicesDispatched at revision %d, after JobStopped", i)
			}
		}
	}
}

func TestRestartMidJobFinishesWithEachResultOnce(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("vm", 3000)
	p := props{ids[5]: {sim.FailProperty: "door open"}, ids[2500]: {sim.OfflineProperty: true}}
	cps := &memCheckpoints{}

	// Cut once some results are recorded and a send is on its way (so
	// that not all are).
	cut := make(chan struct{})
	var once sync.Once
	first := MustRun(t, e, p, func(n int) {
		if n > 1 && len(results(MustReadJob(t, e, "restart"))) > 0 {
			once.Do(func() { close(cut) })
		}
	}, cps)
	MustCreate(t, e, "restart", ids, 2, 100)
	<-cut
	first.stop()

	before := results(MustReadJob(t, e, "restart"))
	if len(before) == 0 || len(before) == len(ids) {
		t.Fatalf("%d results before the restart: the cut is not mid-job", len(before))
	}
	second := MustRun(t, e, p, nil, cps)
	l := MustWaitJob(t, e, "restart", 60*time.Second, finished)

	if l.state.Status != job.StatusFailed {
		t.Errorf("status %s, want failed", l.state.Status)
	}
	got := results(l)
	if len(got) != len(ids) {
		t.Errorf("%d devices have results, want %d", len(got), len(ids))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("device %s has %d results, want exactly 1", id, n)
		}
	}
	for id := range second.transport.Sent() {
		if before[id] > 0 {
			t.Errorf("device %s was sent again after the restart, though it had a result", id)
		}
	}
	if d, _ := l.state.Device(ids[2500]); d.Error != dispatch.TimedOut(2) {
		t.Errorf("offline device: %+v, want timed out", d)
	}
	if d, _ := l.state.Device(ids[5]); d.Error != "door open" {
		t.Errorf("failing device: %+v, want its message", d)
	}
}

func TestTwoJobsAtOnceBothProgress(t *testing.T) {
	e := MustEnv(t)
	MustRun(t, e, props{}, nil, nil)
	MustCreate(t, e, "a", deviceIDs("a", 2000), 30, 50)
	MustCreate(t, e, "b", deviceIDs("b", 2000), 30, 50)
	a := MustWaitJob(t, e, "a", 30*time.Second, finished)
	b := MustWaitJob(t, e, "b", 30*time.Second, finished)
	if a.state.Status != job.StatusCompleted || b.state.Status != job.StatusCompleted {
		t.Fatalf("statuses %s, %s: want both completed", a.state.Status, b.state.Status)
	}
	// Round-robin: each job's first dispatch comes before the other's last.
	span := func(l jobLog) (first, last eventstore.Position) {
		for _, r := range l.records {
			if r.Type == eventstore.JobDevicesDispatched {
				if first.IsZero() {
					first = r.Position
				}
				last = r.Position
			}
		}
		return first, last
	}
	af, al := span(a)
	bf, bl := span(b)
	if af.Compare(bl) > 0 || bf.Compare(al) > 0 {
		t.Errorf("dispatches did not interleave: a %s..%s, b %s..%s", af, al, bf, bl)
	}
}

// memCheckpoints is an in-memory Checkpoints shared by a manager and its
// successor, as Redis would be.
type memCheckpoints struct {
	mu sync.Mutex
	p  eventstore.Position
}

func (c *memCheckpoints) Load(context.Context) (eventstore.Position, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p, nil
}

func (c *memCheckpoints) Save(_ context.Context, p eventstore.Position) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p = p
	return nil
}

// An event the dispatcher cannot decode is skipped, not fatal to the other
// jobs, and counted so that /metrics shows it (a log line alone would not do).
func TestUndecodableJobEventIsSkippedAndCounted(t *testing.T) {
	e := MustEnv(t)
	bad := eventstore.Event{ID: uuid.New(), Type: eventstore.JobStarted, Data: json.RawMessage(`{"jobId": 42}`)}
	if _, err := e.store.Append(context.Background(), eventstore.JobStream("broken"), eventstore.Any(), []eventstore.Event{bad}); err != nil {
		t.Fatal(err)
	}
	r := MustRun(t, e, props{}, nil, nil)
	MustCreate(t, e, "ok", deviceIDs("vm", 10), 30, 100)
	MustWaitJob(t, e, "ok", 30*time.Second, finished)
	if got := r.m.Stats().Undecodable; got != 1 {
		t.Errorf("Stats().Undecodable = %d, want 1", got)
	}
}

// A delivery lost on its way (a device offline, a broker that dropped its
// session) is sent again while the device has no result: the devices whose
// first delivery was lost still succeed, long before they would time out.
func TestLostDeliveriesAreResentUntilAnswered(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("vm", 300)
	// Every third device loses its first delivery, every seventh its first
	// three: they answer only a resend.
	lost := func(i int) int {
		switch {
		case i%7 == 0:
			return 3
		case i%3 == 0:
			return 1
		}
		return 0
	}
	index := make(map[string]int, len(ids))
	for i, id := range ids {
		index[id] = i
	}
	r := MustRunWith(t, e, props{}, runOptions{
		resendAfter: 20 * time.Millisecond,
		lose:        func(d dispatch.Delivery, n int) bool { return n <= lost(index[d.DeviceID]) },
	})
	MustCreate(t, e, "lossy", ids, 300, 50) // a timeout far beyond the test's wait

	l := MustWaitJob(t, e, "lossy", 60*time.Second, finished)
	if diff := cmp.Diff(job.Counts{Total: len(ids), Succeeded: len(ids), Dispatched: len(ids)}, l.state.Counts()); l.state.Status != job.StatusCompleted || diff != "" {
		t.Errorf("status %s, want completed; counts (-want +got):\n%s", l.state.Status, diff)
	}
	sent := r.transport.Sent()
	for i, id := range ids {
		if sent[id] <= lost(i) {
			t.Errorf("device %s was sent the job %d times, want more than the %d lost", id, sent[id], lost(i))
		}
	}
	for id, n := range results(l) {
		if n != 1 {
			t.Errorf("device %s has %d results, want 1", id, n)
		}
	}
	if got := r.m.Stats().Resent; got == 0 {
		t.Error("Stats().Resent = 0, want the resends counted")
	}
}

// TestDeliveriesRefusedDuringAnOutageGoWhenItEnds: while the transport
// refuses deliveries (its broker is down), they are tried again every
// ResendAfter, not after the doubling wait meant for devices that got them
// and did not answer: once it takes them again, the devices get the job
// and answer well before their deadline. With the doubling, the first try
// after a 3 s outage came about 5.5 s after the dispatch, past the 4.5 s
// deadline, and every device timed out.
func TestDeliveriesRefusedDuringAnOutageGoWhenItEnds(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("vm", 20)
	var (
		mu       sync.Mutex
		outageTo time.Time // zero until the first Send
	)
	r := MustRunWith(t, e, props{}, runOptions{
		resendAfter: 20 * time.Millisecond,
		refuse: func() bool {
			mu.Lock()
			defer mu.Unlock()
			if outageTo.IsZero() {
				outageTo = time.Now().Add(3 * time.Second)
			}
			return time.Now().Before(outageTo)
		},
	})
	MustCreate(t, e, "outage", ids, 5, 0)

	l := MustWaitJob(t, e, "outage", time.Minute, finished)
	if diff := cmp.Diff(job.Counts{Total: len(ids), Succeeded: len(ids), Dispatched: len(ids)}, l.state.Counts()); l.state.Status != job.StatusCompleted || diff != "" {
		t.Errorf("status %s, want completed; counts (-want +got):\n%s", l.state.Status, diff)
	}
	if got := r.m.Stats().Resent; got == 0 {
		t.Error("Stats().Resent = 0, want the deliveries sent after the outage counted as resent")
	}
}

// Once the Manager has seen a job's stop, it sends that job nothing more,
// resends included; its dispatched devices still wait for their answers,
// and when their deadline passes they are not recorded as timed out (the
// domain records no timeout on a finished job): they stay pending.
func TestNoResendAfterStop(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("mute", 40)
	mute := make(map[string]bool, len(ids))
	for _, id := range ids {
		mute[id] = true
	}
	var resent sync.Once
	resending := make(chan struct{})
	r := MustRunWith(t, e, props{}, runOptions{
		resendAfter: 20 * time.Millisecond,
		lose: func(d dispatch.Delivery, n int) bool {
			if n > 1 && d.JobID == "muted" {
				resent.Do(func() { close(resending) })
			}
			return mute[d.DeviceID]
		},
	})
	MustCreate(t, e, "muted", ids, 3, 10)
	<-resending // the muted devices are being sent the job again
	if _, err := e.h.StopJob(context.Background(), commands.Meta{Actor: "test"}, job.Stop{JobID: "muted"}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	// The Manager handles the log in order: once it has run a job created
	// after the stop, it has seen the stop.
	MustCreate(t, e, "after", deviceIDs("ok", 1), 30, 10)
	MustWaitJob(t, e, "after", 30*time.Second, finished)
	atStop := r.transport.Sent()
	dispatched := MustWaitJob(t, e, "muted", time.Second, func(jobLog) bool { return true }).state.Counts().Dispatched

	// Until the muted devices' deadline (3 s) has passed and their
	// timeouts went to the command path.
	for deadline := time.Now().Add(30 * time.Second); r.m.Stats().TimedOut < dispatched; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d timeouts handed on after 30 s", r.m.Stats().TimedOut, dispatched)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	l := MustWaitJob(t, e, "muted", time.Second, func(jobLog) bool { return true })
	if diff := cmp.Diff(atStop, r.transport.Sent()); diff != "" {
		t.Errorf("deliveries sent after the stop was seen (-at stop +after the timeouts):\n%s", diff)
	}
	if l.state.Status != job.StatusStopped {
		t.Errorf("status %s, want stopped", l.state.Status)
	}
	if c := l.state.Counts(); dispatched == 0 || c.Failed != 0 || c.Pending != len(ids) {
		t.Errorf("counts %+v after the deadlines (%d dispatched), want every device pending, none failed", c, dispatched)
	}
}

// TestLateAnswerWhileItsTimeoutIsRecorded: on a stopped job, a device's
// answer that arrives after its deadline passed, while the timeout is
// being recorded (which on an ended job records nothing), is recorded as
// the device's late result: it is not dropped as a duplicate of the
// timeout.
func TestLateAnswerWhileItsTimeoutIsRecorded(t *testing.T) {
	e := MustEnv(t)
	var once sync.Once
	timingOut, release := make(chan struct{}), make(chan struct{})
	r := MustRunWith(t, e, props{}, runOptions{
		lose: func(d dispatch.Delivery, _ int) bool { return d.DeviceID == "late-1" },
		beforeResults: func(rs []job.DeviceResult) {
			for _, res := range rs {
				if res.TimedOut && res.DeviceID == "late-1" {
					once.Do(func() { close(timingOut) })
					<-release
				}
			}
		},
	})
	MustCreate(t, e, "slow", []string{"late-1", "ok-1"}, 1, 10)
	MustWaitJob(t, e, "slow", 30*time.Second, func(l jobLog) bool { return l.state.Counts().Succeeded == 1 })
	if _, err := e.h.StopJob(context.Background(), commands.Meta{Actor: "test"}, job.Stop{JobID: "slow"}); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-timingOut:
	case <-time.After(30 * time.Second):
		t.Fatal("late-1's timeout was not recorded within 30 s")
	}
	// The device answers now, while its timeout is being recorded.
	before := r.m.Stats().Dropped
	r.answers <- []dispatch.Answer{{JobID: "slow", DeviceID: "late-1", Succeeded: true}}
	for deadline := time.Now().Add(30 * time.Second); r.m.Stats().Dropped == before && r.m.Stats().Answers < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the late answer was neither taken nor dropped within 30 s")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	close(release)
	l := MustWaitJob(t, e, "slow", 30*time.Second, func(l jobLog) bool {
		d, _ := l.state.Device("late-1")
		return d.Status != job.DevicePending
	})
	if d, _ := l.state.Device("late-1"); d.Status != job.DeviceSucceeded || l.state.Status != job.StatusStopped {
		t.Errorf("late-1 %s, job %s; want its late answer recorded (succeeded) and the job still stopped", d.Status, l.state.Status)
	}
}

// TestAnswersRelayedByAStandbyComplete: the dispatching Manager gets none
// of the answers; they reach another instance's Manager, standing by in
// Relay, which records them. The dispatching one learns them from the log
// (its window of 20 devices in flight frees up and widens with them), and
// the job completes with each device's result once.
func TestAnswersRelayedByAStandbyComplete(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("vm", 200)
	relayed := make(chan []dispatch.Answer, 64)
	fleet := sim.New(props{}, relayed, sim.Config{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Rand: rand.New(rand.NewPCG(3, 4))})
	cfg := dispatch.Config{Events: e.store, Codec: e.codec, Outcomes: outcomes{h: e.h}, Transport: fleet,
		Now: time.Now, NewID: uuid.NewString, Logger: zaptest.NewLogger(t), Window: 20}
	cfg.Answers = make(chan []dispatch.Answer) // nothing reaches the dispatching instance
	leader, err := dispatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Answers = relayed
	standby, err := dispatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { _ = fleet.Run(ctx) })
	wg.Go(func() { _ = leader.Run(ctx) })
	wg.Go(func() { standby.Relay(ctx, stop) })
	defer func() {
		close(stop)
		cancel()
		wg.Wait()
	}()

	MustCreate(t, e, "j1", ids, 30, 10)
	l := MustWaitJob(t, e, "j1", 30*time.Second, func(l jobLog) bool { return finished(l) && l.state.Counts().Pending == 0 })
	if l.state.Status != job.StatusCompleted {
		t.Errorf("job %s, want completed", l.state.Status)
	}
	want := make(map[string]int, len(ids))
	for _, id := range ids {
		want[id] = 1
	}
	if diff := cmp.Diff(want, results(l)); diff != "" {
		t.Errorf("results per device (-want +got):\n%s", diff)
	}
	if got := standby.Stats().Answers; got != len(ids) {
		t.Errorf("the standby recorded %d answers, want %d", got, len(ids))
	}
	if got := leader.Stats().Answers; got != 0 {
		t.Errorf("the dispatching Manager recorded %d answers, want none (they did not reach it)", got)
	}
}

// TestAnswersForAJobStoppedBeforeItStartedAreNotRecorded: a job stopped
// while pending was never sent to its devices, so answers that claim it
// (a confused or replaying device) are refused by the job, the batch and
// then each answer alone, and nothing is recorded.
func TestAnswersForAJobStoppedBeforeItStartedAreNotRecorded(t *testing.T) {
	e := MustEnv(t)
	ids := deviceIDs("vm", 3)
	MustCreate(t, e, "early", ids, 30, 10)
	if _, err := e.h.StopJob(context.Background(), commands.Meta{Actor: "test"}, job.Stop{JobID: "early"}); err != nil {
		t.Fatal(err)
	}
	answers := make(chan []dispatch.Answer) // unbuffered: a send returns once Relay took it
	m, err := dispatch.New(dispatch.Config{Events: e.store, Codec: e.codec, Outcomes: outcomes{h: e.h}, Transport: sim.New(props{}, nil, sim.Config{}),
		Answers: answers, Now: time.Now, NewID: uuid.NewString, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { m.Relay(context.Background(), stop) })
	answers <- []dispatch.Answer{{JobID: "early", DeviceID: ids[0], Succeeded: true}, {JobID: "early", DeviceID: ids[1], Error: "fan stuck"}}
	close(stop)
	wg.Wait() // Relay records the answers it took before it returns

	l := MustReadJob(t, e, "early")
	if l.state.Status != job.StatusStopped || len(results(l)) != 0 {
		t.Errorf("job %s with results %v, want stopped with none", l.state.Status, results(l))
	}
	if got := m.Stats().Answers; got != 0 {
		t.Errorf("%d answers recorded, want none", got)
	}
}
