package commands_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// MustJobHandler is MustHandler closed when the test ends, so that no job
// worker outlives it.
func MustJobHandler(tb testing.TB, store *eventstore.Client, opts ...commands.Option) *commands.Handler {
	tb.Helper()
	h := MustHandler(tb, store, opts...)
	tb.Cleanup(func() { _ = h.Close() })
	return h
}

func jobTemplate() device.Template {
	return device.FoldTemplate([]device.TemplateEvent{device.TemplatePublished{
		TemplateID: "vending-v2", Name: "Vending v2",
		Settings:   []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}},
		Properties: []device.Capability{{Name: "city", Schema: device.SchemaString}},
	}})
}

func jobSet() device.Set {
	return device.FoldSet([]device.SetEvent{device.SetDefined{SetID: "seattle", Name: "Seattle", TemplateID: "vending-v2",
		Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}}})
}

// deviceIDs are the IDs of n devices, as job members use them.
func deviceIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("vm-%07d", i)
	}
	return out
}

// newJob is a valid Create of job id on n members whose names have
// nameLen bytes at least.
func newJob(id string, n, nameLen int) job.Create {
	members := make([]job.TargetedDevice, n)
	pad := strings.Repeat("x", nameLen)
	for i, d := range deviceIDs(n) {
		members[i] = job.TargetedDevice{DeviceID: d, Name: "Vending machine " + d + pad}
	}
	return job.Create{
		JobID: id, Name: "Fan speed", DeviceSetID: "seattle", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 1200}},
		Set:        jobSet(), Template: jobTemplate(), Members: members,
	}
}

// MustRunningJob creates job id on n devices and starts it.
func MustRunningJob(tb testing.TB, h *commands.Handler, id string, n int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := h.CreateJob(ctx, commands.Meta{Actor: "test"}, newJob(id, n, 0)); err != nil {
		tb.Fatalf("create job %s: %v", id, err)
	}
	if _, err := h.StartJob(ctx, commands.Meta{Actor: "dispatcher"}, job.Start{JobID: id}); err != nil {
		tb.Fatalf("start job %s: %v", id, err)
	}
}

// MustFold reads job id's stream and folds it, checking that every event
// is a job event.
func MustFold(tb testing.TB, store *eventstore.Client, id string) (*job.State, []eventstore.Recorded) {
	tb.Helper()
	codec := eventstore.NewCatalogCodec()
	recs := MustRead(tb, store, eventstore.JobStream(id))
	var s *job.State
	for _, r := range recs {
		v, err := codec.Decode(r.Type, r.Data)
		if err != nil {
			tb.Fatalf("decode %s@%d: %v", r.Stream, r.Revision, err)
		}
		ev, ok := v.(job.Event)
		if !ok {
			tb.Fatalf("%s@%d is a %T, not a job event", r.Stream, r.Revision, v)
		}
		s = job.Evolve(s, ev)
	}
	return s, recs
}

// checkCode fails t unless err is a domain error of code whose message
// says says.
func checkCode(t *testing.T, err error, code domain.Code, says string) {
	t.Helper()
	e, ok := domain.AsError(err)
	if !ok {
		t.Fatalf("error %v is not a domain error (want %s)", err, code)
	}
	if e.Code != code || !strings.Contains(err.Error(), says) {
		t.Errorf("error %q (%s), want %s saying %q", err, e.Code, code, says)
	}
}

// resultCounts counts a stream's result events by device, and its
// terminal events.
func resultCounts(recs []eventstore.Recorded) (perDevice map[string]int, terminal int) {
	perDevice = make(map[string]int)
	codec := eventstore.NewCatalogCodec()
	for _, r := range recs {
		switch r.Type {
		case eventstore.DeviceOperationSucceeded, eventstore.DeviceOperationFailed:
			v, _ := codec.Decode(r.Type, r.Data)
			switch e := v.(type) {
			case job.OperationSucceeded:
				perDevice[e.DeviceID]++
			case job.OperationFailed:
				perDevice[e.DeviceID]++
			}
		case eventstore.JobCompleted, eventstore.JobFailed:
			terminal++
		}
	}
	return perDevice, terminal
}

func TestCreateJobIsIdempotentAndRefusesAnotherBody(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)

	created, err := h.CreateJob(ctx, commands.Meta{CommandID: "put-1"}, newJob("j1", 2500, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !created.Created || created.Events != 4 || created.Position.IsZero() {
		t.Errorf("create = %+v, want created with JobCreated and 3 JobDevicesTargeted", created)
	}
	want := []string{eventstore.JobCreated, eventstore.JobDevicesTargeted, eventstore.JobDevicesTargeted, eventstore.JobDevicesTargeted}
	if diff := cmp.Diff(want, types(MustRead(t, store, "job-j1"))); diff != "" {
		t.Errorf("job-j1 (-want +got):\n%s", diff)
	}

	t.Run("the same body again is unchanged", func(t *testing.T) {
		for _, hh := range []*commands.Handler{h, MustJobHandler(t, store)} { // cached, and read from the stream
			again, err := hh.CreateJob(ctx, commands.Meta{CommandID: "put-2"}, newJob("j1", 2500, 0))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(commands.Result{Position: created.Position}, again); diff != "" {
				t.Errorf("same body (-want +got):\n%s", diff)
			}
		}
	})
	t.Run("a retried command is answered with its position", func(t *testing.T) {
		again, err := h.CreateJob(ctx, commands.Meta{CommandID: "put-1"}, newJob("j1", 2500, 0))
		if err != nil || again.Events != 0 || again.Position != created.Position {
			t.Errorf("retry = %+v, %v; want nothing new at %s", again, err, created.Position)
		}
	})
	t.Run("another body under the same ID is a conflict", func(t *testing.T) {
		other := newJob("j1", 2500, 0)
		other.Name = "Slower fans"
		_, err := h.CreateJob(ctx, commands.Meta{}, other)
		checkCode(t, err, domain.CodeConflict, "another definition")
		// The HTTP edge tells a reused Idempotency-Key by it (422).
		if !errors.Is(err, commands.ErrOtherDefinition) {
			t.Errorf("another body: %v does not wrap ErrOtherDefinition", err)
		}
		if got := len(MustRead(t, store, "job-j1")); got != 4 {
			t.Errorf("job-j1 has %d events after another body, want 4", got)
		}
	})
	t.Run("an invalid job is refused", func(t *testing.T) {
		bad := newJob("j2", 3, 0)
		bad.Name = ""
		_, err := h.CreateJob(ctx, commands.Meta{}, bad)
		checkCode(t, err, domain.CodeInvalid, "name")
		if got := MustRead(t, store, "job-j2"); len(got) != 0 {
			t.Errorf("refused job recorded %d events", len(got))
		}
	})
	if got := len(MustRead(t, store, "job-j1")); got != 4 {
		t.Errorf("job-j1 has %d events after the retries, want 4", got)
	}
}

func TestJobIDForIsDeterministic(t *testing.T) {
	a, b := commands.JobIDFor("key-1"), commands.JobIDFor("key-1")
	if a != b || a == commands.JobIDFor("key-2") {
		t.Errorf("JobIDFor: %q, %q, and %q for another key", a, b, commands.JobIDFor("key-2"))
	}
	if err := domain.CheckID("jobId", a); err != nil {
		t.Errorf("JobIDFor gives an invalid ID: %v", err)
	}
}

func TestCreateLargeJobSplitsItsTargeting(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	// 30,000 devices with 150-byte names: 30 targeting events of some
	// 190 kB each, several MiB that the store takes 1 MiB at a time.
	c := newJob("big", 30_000, 150)
	res, err := h.CreateJob(ctx, commands.Meta{}, c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 31 || !res.Created {
		t.Errorf("create = %+v, want 31 events", res)
	}
	s, recs := MustFold(t, store, "big")
	if s.Targeted() != 30_000 || s.DeviceCount != 30_000 || len(recs) != 31 {
		t.Errorf("folded: %d of %d devices targeted in %d events", s.Targeted(), s.DeviceCount, len(recs))
	}
	if _, err := h.StartJob(ctx, commands.Meta{}, job.Start{JobID: "big"}); err != nil {
		t.Errorf("start a fully targeted job: %v", err)
	}
}

func TestInterruptedTargetingIsFinishedByARetry(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	c := newJob("j1", 5500, 0)
	const cmdID = "create-1"
	stream := eventstore.JobStream("j1")

	// The first try landed JobCreated and two of six targeting events,
	// then its process died: append them as it would have.
	events, err := job.Decide(nil, c)
	if err != nil {
		t.Fatal(err)
	}
	codec := eventstore.NewCatalogCodec()
	var first []eventstore.Event
	for i, ev := range events[:3] {
		name, data, err := codec.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, eventstore.Event{ID: commands.EventID(cmdID, stream, i), Type: name, Data: data,
			Metadata: eventstore.Metadata{CommandID: cmdID, CorrelationID: cmdID, CausationID: cmdID}})
	}
	if _, err := store.Append(ctx, stream, eventstore.NoStream(), first); err != nil {
		t.Fatal(err)
	}

	h := MustJobHandler(t, store)
	_, err = h.StartJob(ctx, commands.Meta{}, job.Start{JobID: "j1"})
	checkCode(t, err, domain.CodeConflict, "2000 of its 5500 devices")

	res, err := h.CreateJob(ctx, commands.Meta{CommandID: cmdID}, c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 4 || !res.Created {
		t.Errorf("retry = %+v, want the 4 missing targeting events", res)
	}
	s, recs := MustFold(t, store, "j1")
	if s.Targeted() != 5500 || len(recs) != 7 {
		t.Fatalf("after the retry: %d devices targeted in %d events", s.Targeted(), len(recs))
	}
	for i, r := range recs {
		if want := commands.EventID(cmdID, stream, i); r.ID != want {
			t.Errorf("event %d has ID %s, want %s (the first try's numbering)", i, r.ID, want)
		}
	}
	if again, err := h.CreateJob(ctx, commands.Meta{CommandID: cmdID}, c); err != nil || again.Events != 0 {
		t.Errorf("second retry = %+v, %v; want nothing new", again, err)
	}
	if _, err := h.StartJob(ctx, commands.Meta{}, job.Start{JobID: "j1"}); err != nil {
		t.Errorf("start once targeted: %v", err)
	}

	t.Run("members that changed meanwhile are a conflict", func(t *testing.T) {
		stream := eventstore.JobStream("j2")
		c := newJob("j2", 2500, 0)
		events, _ := job.Decide(nil, c)
		var first []eventstore.Event
		for i, ev := range events[:2] {
			name, data, _ := codec.Encode(ev)
			first = append(first, eventstore.Event{ID: commands.EventID(cmdID, stream, i), Type: name, Data: data})
		}
		if _, err := store.Append(ctx, stream, eventstore.NoStream(), first); err != nil {
			t.Fatal(err)
		}
		c.Members = c.Members[:2000] // 500 devices left the set
		_, err := h.CreateJob(ctx, commands.Meta{CommandID: cmdID}, c)
		checkCode(t, err, domain.CodeConflict, "create a new job")
		if errors.Is(err, commands.ErrOtherDefinition) {
			t.Errorf("the same definition, not targetable: %v wraps ErrOtherDefinition", err)
		}
	})
}

func TestStoppedJobIsNeverRestarted(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	MustRunningJob(t, h, "j1", 10)

	stop, err := h.StopJob(ctx, commands.Meta{CommandID: "stop-1"}, job.Stop{JobID: "j1", Reason: " wrong speed "})
	if err != nil || stop.Events != 1 || stop.Reason != "wrong speed" {
		t.Fatalf("stop = %+v, %v; want one event, the reason as recorded", stop, err)
	}
	if again, err := h.StopJob(ctx, commands.Meta{CommandID: "stop-1"}, job.Stop{JobID: "j1"}); err != nil || again.Position != stop.Position || again.Reason != "wrong speed" {
		t.Errorf("retried stop = %+v, %v; want its original position and reason", again, err)
	}
	_, err = h.StopJob(ctx, commands.Meta{}, job.Stop{JobID: "j1"})
	checkCode(t, err, domain.CodeConflict, "a new job must be created")
	_, err = h.StartJob(ctx, commands.Meta{}, job.Start{JobID: "j1"})
	checkCode(t, err, domain.CodeConflict, "cannot be restarted")
	_, err = h.RecordDispatch(ctx, commands.Meta{}, job.RecordDispatch{JobID: "j1", DeviceIDs: deviceIDs(1)})
	checkCode(t, err, domain.CodeConflict, "stopped")

	// A late result is recorded; the job stays stopped.
	late, err := h.RecordResult(ctx, commands.Meta{}, "j1", job.DeviceResult{DeviceID: "vm-0000003", Status: job.DeviceSucceeded})
	if err != nil || late.Events != 1 {
		t.Errorf("late result = %+v, %v; want it recorded", late, err)
	}
	s, _ := MustFold(t, store, "j1")
	if s.Status != job.StatusStopped || s.Counts().Succeeded != 1 {
		t.Errorf("after a late result: %s, %+v", s.Status, s.Counts())
	}
	_, err = h.StopJob(ctx, commands.Meta{}, job.Stop{JobID: "nope"})
	checkCode(t, err, domain.CodeNotFound, "does not exist")
}

func TestResultsFromManyCallersAreRecordedOnce(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	const n = 3000
	MustRunningJob(t, h, "j1", n)
	if _, err := h.RecordDispatch(ctx, commands.Meta{}, job.RecordDispatch{JobID: "j1", DeviceIDs: deviceIDs(n)[:100]}); err != nil {
		t.Fatal(err)
	}

	// Every device answers from its own goroutine, some twice, and a
	// tenth fail; one caller names a device the job does not target.
	ids := deviceIDs(n)
	answers := make([]commands.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			r := job.DeviceResult{DeviceID: id, Status: job.DeviceSucceeded}
			if i%10 == 0 {
				r = job.DeviceResult{DeviceID: id, Status: job.DeviceFailed, Error: "timed out"}
			}
			answers[i], errs[i] = h.RecordResult(ctx, commands.Meta{CommandID: "delivery-" + id}, "j1", r)
			if i%7 == 0 { // a redelivery: recorded once
				if res, err := h.RecordResult(ctx, commands.Meta{CommandID: "redelivery-" + id}, "j1", r); err != nil || res.Events != 0 {
					t.Errorf("redelivered result of %s = %+v, %v; want nothing new", id, res, err)
				}
			}
		})
	}
	var stranger error
	wg.Go(func() {
		_, stranger = h.RecordResult(ctx, commands.Meta{}, "j1", job.DeviceResult{DeviceID: "stranger", Status: job.DeviceSucceeded})
	})
	wg.Wait()
	checkCode(t, stranger, domain.CodeNotFound, `"stranger" is not in job`)

	s, recs := MustFold(t, store, "j1")
	perDevice, terminal := resultCounts(recs)
	var lastPos eventstore.Position
	for i, id := range ids {
		if errs[i] != nil {
			t.Fatalf("result of %s: %v", id, errs[i])
		}
		if answers[i].Events < 1 || answers[i].Position.IsZero() {
			t.Errorf("result of %s = %+v, want recorded at a position", id, answers[i])
		}
		if perDevice[id] != 1 {
			t.Errorf("device %s has %d results in the stream, want 1", id, perDevice[id])
		}
		if answers[i].Position.Compare(lastPos) > 0 {
			lastPos = answers[i].Position
		}
	}
	want := job.Counts{Total: n, Succeeded: n - n/10, Failed: n / 10, Dispatched: 100}
	if diff := cmp.Diff(want, s.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	// The last result brought JobFailed in the same decision: it ends the
	// stream, and the caller of that result was answered after it landed.
	last := recs[len(recs)-1]
	if s.Status != job.StatusFailed || terminal != 1 || last.Type != eventstore.JobFailed {
		t.Errorf("job %s with %d terminal events, last %s; want one JobFailed at the end", s.Status, terminal, last.Type)
	}
	if lastPos.Compare(last.Position) < 0 {
		t.Errorf("the last answer was at %s, before JobFailed at %s", lastPos, last.Position)
	}
	for _, r := range recs {
		if r.Type == eventstore.DeviceOperationSucceeded && !strings.HasPrefix(r.Metadata.CommandID, "delivery-") {
			t.Errorf("%s@%d carries command %q, want its delivery's", r.Stream, r.Revision, r.Metadata.CommandID)
			break
		}
	}
}

func TestResultRefusalsFailOnlyTheirCaller(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	if _, err := h.CreateJob(ctx, commands.Meta{}, newJob("pending", 5, 0)); err != nil {
		t.Fatal(err)
	}
	MustRunningJob(t, h, "j1", 200)

	_, err := h.RecordResult(ctx, commands.Meta{}, "pending", job.DeviceResult{DeviceID: "vm-0000001", Status: job.DeviceSucceeded})
	checkCode(t, err, domain.CodeConflict, "has not started")
	_, err = h.RecordResult(ctx, commands.Meta{}, "ghost", job.DeviceResult{DeviceID: "vm-0000001", Status: job.DeviceSucceeded})
	checkCode(t, err, domain.CodeNotFound, "does not exist")
	_, err = h.RecordResult(ctx, commands.Meta{}, "j1", job.DeviceResult{DeviceID: "vm-0000001", Status: "maybe"})
	checkCode(t, err, domain.CodeInvalid, "status")
	_, err = h.RecordResult(ctx, commands.Meta{}, "j1", job.DeviceResult{DeviceID: "vm-0000001", Status: job.DeviceSucceeded, Error: "all good"})
	checkCode(t, err, domain.CodeInvalid, "error: must be empty when status is succeeded")

	// A batch with one stranger is refused whole; the batches and single
	// results around it are recorded.
	var wg sync.WaitGroup
	var badBatch, contradicting error
	good := make([]error, 4)
	ids := deviceIDs(200)
	wg.Go(func() {
		rs := []job.DeviceResult{{DeviceID: ids[0], Status: job.DeviceSucceeded}, {DeviceID: "stranger", Status: job.DeviceSucceeded}}
		_, badBatch = h.RecordResults(ctx, commands.Meta{}, "j1", rs)
	})
	wg.Go(func() {
		rs := []job.DeviceResult{{DeviceID: ids[170], Status: job.DeviceFailed, Error: "x"}, {DeviceID: ids[171], Status: job.DeviceSucceeded, Error: "all good"}}
		_, contradicting = h.RecordResults(ctx, commands.Meta{}, "j1", rs)
	})
	for g := range good {
		wg.Go(func() {
			var rs []job.DeviceResult
			for _, id := range ids[1+g*40 : 1+(g+1)*40] {
				rs = append(rs, job.DeviceResult{DeviceID: id, Status: job.DeviceSucceeded})
			}
			_, good[g] = h.RecordResults(ctx, commands.Meta{}, "j1", rs)
		})
	}
	wg.Wait()
	checkCode(t, badBatch, domain.CodeNotFound, `"stranger" is not in job`)
	checkCode(t, contradicting, domain.CodeInvalid, "results[1].error")
	for g, err := range good {
		if err != nil {
			t.Errorf("batch %d beside a refused one: %v", g, err)
		}
	}
	s, _ := MustFold(t, store, "j1")
	if got := s.Counts().Succeeded; got != 160 {
		t.Errorf("%d results recorded, want the good batches' 160", got)
	}
	for _, id := range []string{ids[0], ids[170], ids[171]} {
		if d, _ := s.Device(id); d.Status != job.DevicePending {
			t.Errorf("the refused batches' device %s is %s, want pending", id, d.Status)
		}
	}
}

// A job stopped while pending never started: its devices were never sent
// it, so every result for it is refused, single or in a batch, whatever
// arrives together, and nothing is recorded.
func TestResultsOnAJobStoppedBeforeItStartedAreRefused(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	if _, err := h.CreateJob(ctx, commands.Meta{}, newJob("early", 5, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.StopJob(ctx, commands.Meta{}, job.Stop{JobID: "early"}); err != nil {
		t.Fatal(err)
	}
	ids := deviceIDs(5)
	_, err := h.RecordResult(ctx, commands.Meta{}, "early", job.DeviceResult{DeviceID: ids[0], Status: job.DeviceSucceeded})
	checkCode(t, err, domain.CodeConflict, "was stopped before it started")

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			rs := []job.DeviceResult{{DeviceID: ids[i], Status: job.DeviceFailed, Error: "x"}, {DeviceID: ids[4], Status: job.DeviceSucceeded}}
			_, errs[i] = h.RecordResults(ctx, commands.Meta{}, "early", rs)
		})
	}
	wg.Wait()
	for _, err := range errs {
		checkCode(t, err, domain.CodeConflict, "was stopped before it started")
	}
	s, recs := MustFold(t, store, "early")
	if s.Status != job.StatusStopped || s.Counts() != (job.Counts{Total: 5, Pending: 5}) {
		t.Errorf("job %s with counts %+v, want stopped with 5 pending", s.Status, s.Counts())
	}
	if last := recs[len(recs)-1].Type; last != eventstore.JobStopped {
		t.Errorf("the stream ends with %s, want JobStopped and nothing after it", last)
	}
}

func TestTwoInstancesRecordResultsOnOneJob(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	a, b := MustJobHandler(t, store), MustJobHandler(t, store)
	const n = 2000
	MustRunningJob(t, a, "j1", n)

	// Each instance has its own worker and cached state; every append one
	// makes puts the other's state behind: conflict, catch up, decide
	// again. Some devices answer through both.
	ids := deviceIDs(n)
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i, id := range ids {
		for k, h := range []*commands.Handler{a, b} {
			if i%3 != 0 && k != i%2 {
				continue
			}
			wg.Go(func() {
				r := job.DeviceResult{DeviceID: id, Status: job.DeviceSucceeded}
				if _, err := h.RecordResult(ctx, commands.Meta{CommandID: fmt.Sprintf("d-%s-%d", id, k)}, "j1", r); err != nil {
					errs <- fmt.Errorf("%s via instance %d: %w", id, k, err)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s, recs := MustFold(t, store, "j1")
	perDevice, terminal := resultCounts(recs)
	for _, id := range ids {
		if perDevice[id] != 1 {
			t.Errorf("device %s has %d results, want 1", id, perDevice[id])
		}
	}
	if s.Status != job.StatusCompleted || terminal != 1 || s.Counts().Succeeded != n {
		t.Errorf("job %s with %d terminal events and %+v", s.Status, terminal, s.Counts())
	}
}

func TestBigResultBatchesRespectTheAppendLimit(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	const n = 12_000
	MustRunningJob(t, h, "j1", n)
	// 12,000 failures with 1 kB messages: some 13 MB of events, which
	// the store refuses in one append; two batches at once.
	msg := strings.Repeat("the fan controller did not answer; ", 28)
	ids := deviceIDs(n)
	var wg sync.WaitGroup
	res := make([]commands.Result, 2)
	errs := make([]error, 2)
	for k := range 2 {
		wg.Go(func() {
			rs := make([]job.DeviceResult, 0, n/2)
			for _, id := range ids[k*n/2 : (k+1)*n/2] {
				rs = append(rs, job.DeviceResult{DeviceID: id, Status: job.DeviceFailed, Error: msg})
			}
			res[k], errs[k] = h.RecordResults(ctx, commands.Meta{}, "j1", rs)
		})
	}
	wg.Wait()
	events := 0
	for k := range 2 {
		if errs[k] != nil {
			t.Fatalf("batch %d: %v", k, errs[k])
		}
		events += res[k].Events
	}
	if events != n+1 {
		t.Errorf("the batches recorded %d events, want %d results and JobFailed", events, n+1)
	}
	s, recs := MustFold(t, store, "j1")
	if s.Status != job.StatusFailed || s.Counts().Failed != n {
		t.Errorf("job %s with %+v", s.Status, s.Counts())
	}
	if d, _ := s.Device(ids[5]); d.Error != strings.TrimSpace(msg) {
		t.Errorf("device error %q", d.Error)
	}
	perDevice, _ := resultCounts(recs)
	if len(perDevice) != n {
		t.Errorf("%d devices have results in the stream, want %d", len(perDevice), n)
	}
}

func TestSplitAppend(t *testing.T) {
	cases := []struct {
		name  string
		sizes []int
		glued []bool
		limit int
		want  []int
		err   bool
	}{
		{"nothing", nil, nil, 10, nil, false},
		{"all in one", []int{3, 3, 3}, nil, 10, []int{3}, false},
		{"exactly full", []int{5, 5, 5}, nil, 10, []int{2, 3}, false},
		{"one per append", []int{6, 6, 6}, nil, 10, []int{1, 2, 3}, false},
		{"a glued event moves with its result", []int{4, 4, 3, 1}, []bool{false, false, true, false}, 10, []int{1, 4}, false},
		{"a glued run at the start stays", []int{4, 4, 4}, []bool{false, true, false}, 10, []int{2, 3}, false},
		{"an event above the limit", []int{3, 11}, nil, 10, nil, true},
		{"a glued run above the limit", []int{6, 6}, []bool{false, true}, 10, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := commands.SplitAppend(c.sizes, c.glued, c.limit)
			if (err != nil) != c.err {
				t.Fatalf("error %v, want error %v", err, c.err)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("ends (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClosedHandlerRefusesJobCommands(t *testing.T) {
	ctx := context.Background()
	h := MustJobHandler(t, MustStore(t))
	MustRunningJob(t, h, "j1", 3)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := h.RecordResult(ctx, commands.Meta{}, "j1", job.DeviceResult{DeviceID: "vm-0000001", Status: job.DeviceSucceeded})
	if !errors.Is(err, commands.ErrClosed) {
		t.Errorf("result after Close: %v, want ErrClosed", err)
	}
}

func TestIdleWorkerReloadsTheJob(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	// A worker that stops as soon as it has nothing to do: every command
	// may find its job's state gone and read it back from the stream.
	h := MustJobHandler(t, store, commands.WithJobIdle(1))
	MustRunningJob(t, h, "j1", 50)
	for i, id := range deviceIDs(50) {
		res, err := h.RecordResult(ctx, commands.Meta{}, "j1", job.DeviceResult{DeviceID: id, Status: job.DeviceSucceeded})
		if err != nil || res.Events < 1 {
			t.Fatalf("result %d = %+v, %v", i, res, err)
		}
	}
	if s, _ := MustFold(t, store, "j1"); s.Status != job.StatusCompleted {
		t.Errorf("job %s, want completed", s.Status)
	}
}

// watchedStore passes every call to the real store, and checks what the
// job worker's pipelining must never do: two appends to one stream in
// flight at once, or an append heavier than the limit.
type watchedStore struct {
	*eventstore.Client
	limit int

	mu       sync.Mutex
	inFlight map[string]bool
	appends  int
	problems []string
}

func (s *watchedStore) Append(ctx context.Context, stream string, exp eventstore.Revision, events []eventstore.Event) (eventstore.AppendResult, error) {
	size := 0
	for _, ev := range events {
		md, _ := ev.Metadata.MarshalJSON()
		data, _ := ev.Data.(json.RawMessage)
		size += len(ev.Type) + len(data) + len(md)
	}
	s.mu.Lock()
	if s.inFlight[stream] {
		s.problems = append(s.problems, "two appends to "+stream+" in flight")
	}
	if size > s.limit {
		s.problems = append(s.problems, fmt.Sprintf("an append of %d bytes to %s, over the %d limit", size, stream, s.limit))
	}
	s.inFlight[stream] = true
	s.appends++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inFlight[stream] = false
		s.mu.Unlock()
	}()
	return s.Client.Append(ctx, stream, exp, events)
}

// TestPipelinedRoundsStaySequentialAndSmall records results from many
// single callers while the worker overlaps deciding a round with the
// append of the one before, with a small append limit that cuts each
// round in several appends.
func TestPipelinedRoundsStaySequentialAndSmall(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	const limit = 128 << 10 // a targeting event of 1,000 devices weighs some 62 kB
	ws := &watchedStore{Client: store, limit: limit, inFlight: map[string]bool{}}
	h := commands.New(ws, eventstore.NewCatalogCodec(), func() time.Time { return testNow }, uuid.NewString, zaptest.NewLogger(t),
		commands.WithMaxAppendBytes(limit))
	t.Cleanup(func() { _ = h.Close() })
	const n = 3000
	MustRunningJob(t, h, "j1", n)
	ids := deviceIDs(n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i, id := range ids {
		wg.Go(func() {
			r := job.DeviceResult{DeviceID: id, Status: job.DeviceSucceeded}
			if i%10 == 0 {
				r = job.DeviceResult{DeviceID: id, Status: job.DeviceFailed, Error: "timed out"}
			}
			if _, err := h.RecordResult(ctx, commands.Meta{}, "j1", r); err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ws.mu.Lock()
	for _, p := range ws.problems {
		t.Error(p)
	}
	appends := ws.appends
	ws.mu.Unlock()
	s, recs := MustFold(t, store, "j1")
	perDevice, terminal := resultCounts(recs)
	for _, id := range ids {
		if perDevice[id] != 1 {
			t.Errorf("device %s has %d results, want 1", id, perDevice[id])
		}
	}
	if s.Status != job.StatusFailed || terminal != 1 || s.Counts().Failed != n/10 || s.Counts().Succeeded != n-n/10 {
		t.Errorf("job %s with %d terminal events and %+v", s.Status, terminal, s.Counts())
	}
	for i, r := range recs {
		if r.Revision != uint64(i) {
			t.Fatalf("event %d at revision %d", i, r.Revision)
		}
	}
	if appends < n*200/limit {
		t.Errorf("%d appends for %d results: the limit did not cut the rounds", appends, n)
	}
}
