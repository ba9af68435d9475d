package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/job"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// jobStub serves the job routes from memory: the shape of the HTTP layer
// (binding, paging, NDJSON, the job in command answers) is tested here; the
// real commands, read models and event log are tested through the real
// server in cmd/fleetjobs.
type jobStub struct {
	history []fjhttp.HistoryEvent
	// fail, when set, runs first in every job command; its error is the
	// command's answer.
	fail func(ctx context.Context, jobID string) error

	mu sync.Mutex
	// decided are the jobs the stub's commands created, as decided;
	// current are the jobs its read models hold (Job answers only those).
	decided map[string]fjhttp.Job
	current map[string]fjhttp.Job
	// createdBy is the command ID that created each decided job.
	createdBy map[string]string
}

// stubCreatedAt is the time of every command the stub decides.
var stubCreatedAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// stubJob is job id as decided from c: pending on three devices.
func stubJob(id string, c fjhttp.CreateJob) fjhttp.Job {
	return fjhttp.Job{ID: id, Name: c.Name, Description: c.Description, Status: "pending", DeviceSetID: c.DeviceSetID, JobType: c.JobType,
		Operations: c.Operations, TimeoutSeconds: 30, BatchSize: 100, CreatedAt: stubCreatedAt, UpdatedAt: stubCreatedAt,
		Counts: fjhttp.JobCounts{Total: 3, Pending: 3}}
}

// CreateJob creates job c.JobID. The stub's definition is the name: an
// existing job with another name refuses the create as the commands do.
func (j *jobStub) CreateJob(_ context.Context, c fjhttp.CreateJob) (fjhttp.JobResult, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if d, ok := j.decided[c.JobID]; ok {
		if d.Name != c.Name {
			return fjhttp.JobResult{}, fmt.Errorf("job %s: %w", c.JobID,
				errors.Join(domain.Conflict("job %q already exists with another definition", c.JobID), commands.ErrOtherDefinition))
		}
		return fjhttp.JobResult{CommandResult: fjhttp.CommandResult{Token: "C:1/P:1"}, Job: d, CreatedBy: j.createdBy[c.JobID]}, nil
	}
	if j.decided == nil {
		j.decided, j.createdBy = make(map[string]fjhttp.Job), make(map[string]string)
	}
	j.decided[c.JobID], j.createdBy[c.JobID] = stubJob(c.JobID, c), c.Meta.CommandID
	return fjhttp.JobResult{CommandResult: fjhttp.CommandResult{Token: "C:1/P:1", Created: true}, Job: j.decided[c.JobID], CreatedBy: c.Meta.CommandID}, nil
}

// Decided is how many jobs the stub's commands created.
func (j *jobStub) Decided() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.decided)
}
func (j *jobStub) NewJobID(commandID string) string { return "job-" + commandID }
func (j *jobStub) StopJob(ctx context.Context, c fjhttp.StopJob) (fjhttp.JobResult, error) {
	if j.fail != nil {
		if err := j.fail(ctx, c.JobID); err != nil {
			return fjhttp.JobResult{}, err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	d := j.decided[c.JobID]
	d.ID, d.Status, d.Reason = c.JobID, "stopped", c.Reason
	return fjhttp.JobResult{CommandResult: fjhttp.CommandResult{Token: "C:2/P:2"}, Job: d}, nil
}
func (j *jobStub) CopyJob(_ context.Context, c fjhttp.CopyJob) (fjhttp.JobResult, error) {
	id := c.JobID + "-copy"
	return fjhttp.JobResult{CommandResult: fjhttp.CommandResult{Created: true, Notes: []string{"a copy"}},
		Job: stubJob(id, fjhttp.CreateJob{Name: "Copied"})}, nil
}
func (j *jobStub) RecordResult(ctx context.Context, c fjhttp.RecordResult) (fjhttp.CommandResult, error) {
	if j.fail != nil {
		if err := j.fail(ctx, c.JobID); err != nil {
			return fjhttp.CommandResult{}, err
		}
	}
	return fjhttp.CommandResult{Token: "C:3/P:3", Created: true}, nil
}
func (j *jobStub) Job(_ context.Context, id string) (fjhttp.Job, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if c, ok := j.current[id]; ok {
		return c, nil
	}
	return fjhttp.Job{}, fmt.Errorf("job %q: %w", id, fjhttp.ErrNotFound)
}

// setCurrent puts job in the stub's read models.
func (j *jobStub) setCurrent(job fjhttp.Job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.current == nil {
		j.current = make(map[string]fjhttp.Job)
	}
	j.current[job.ID] = job
}
func (j *jobStub) Jobs(context.Context, string, fjhttp.Page) (fjhttp.List[fjhttp.Job], error) {
	return fjhttp.List[fjhttp.Job]{}, nil
}
func (j *jobStub) JobDevices(context.Context, string, string, fjhttp.Page) (fjhttp.List[fjhttp.JobDevice], error) {
	return fjhttp.List[fjhttp.JobDevice]{}, nil
}
func (j *jobStub) Summary(context.Context) (fjhttp.JobSummary, error) {
	return fjhttp.JobSummary{}, nil
}
func (j *jobStub) ReadJobHistory(ctx context.Context, id string, from uint64, fn func(fjhttp.HistoryEvent) error) error {
	if len(j.history) == 0 {
		return fmt.Errorf("job %q: %w", id, fjhttp.ErrNotFound)
	}
	for _, e := range j.history[min(int(from), len(j.history)):] {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

func newJobStub(events int) *jobStub {
	j := &jobStub{}
	for i := range events {
		j.history = append(j.history, fjhttp.HistoryEvent{Revision: uint64(i), Position: fmt.Sprintf("C:%d/P:%d", i, i), Type: "JobCreated",
			Data: json.RawMessage(`{"jobId":"j"}`), Metadata: json.RawMessage(`{"actor":"local"}`), RecordedAt: time.Unix(int64(i), 0).UTC()})
	}
	return j
}

func withJobs(cfg fjhttp.Config, j *jobStub) fjhttp.Config {
	cfg.JobCommands, cfg.JobQueries, cfg.JobHistory = j, j, j
	return cfg
}

func TestJobHistoryPagesAndStreams(t *testing.T) {
	j := newJobStub(5)
	s := MustOpen(t, withJobs(fjhttp.Config{}, j))
	var got []uint64
	cursor := ""
	for range 10 {
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/jobs/j/history?limit=2&cursor=" + cursor})
		if a.Code != http.StatusOK {
			t.Fatalf("status %d: %s", a.Code, a.Body)
		}
		page := MustDecode[fjhttp.List[fjhttp.HistoryEvent]](t, a)
		for _, e := range page.Items {
			got = append(got, e.Revision)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	if diff := cmp.Diff([]uint64{0, 1, 2, 3, 4}, got); diff != "" {
		t.Errorf("paged revisions (-want +got):\n%s", diff)
	}

	a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/jobs/j/history?cursor=3", Header: map[string]string{"Accept": "application/x-ndjson"}})
	if ct := a.Header.Get("Content-Type"); ct != fjhttp.MIMENDJSON {
		t.Errorf("content type %q", ct)
	}
	var lines []fjhttp.HistoryEvent
	sc := bufio.NewScanner(bytes.NewReader(a.Body))
	for sc.Scan() {
		var e fjhttp.HistoryEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		lines = append(lines, e)
	}
	if diff := cmp.Diff(j.history[3:], lines); diff != "" {
		t.Errorf("NDJSON (-want +got):\n%s", diff)
	}

	for _, c := range []struct{ path, field string }{
		{"/api/v1/jobs/j/history?cursor=abc", "cursor"},
		{"/api/v1/jobs/j/history?limit=0", "limit"},
	} {
		if a := MustDo(t, s.URL(), Request{Method: "GET", Path: c.path}); a.Code != http.StatusBadRequest || !bytes.Contains(a.Body, []byte(strconv.Quote(c.field))) {
			t.Errorf("%s: %d %s, want 400 naming %s", c.path, a.Code, a.Body, c.field)
		}
	}
	empty := MustOpen(t, withJobs(fjhttp.Config{}, newJobStub(0)))
	if a := MustDo(t, empty.URL(), Request{Method: "GET", Path: "/api/v1/jobs/nope/history", Header: map[string]string{"Accept": "application/x-ndjson"}}); a.Code != http.StatusNotFound {
		t.Errorf("unknown job as NDJSON: %d, want 404", a.Code)
	}
}

// bodyCase is a request body and the answer it must get: its status and,
// for a refusal, the field it names.
type bodyCase struct {
	body  string
	code  int
	field string
}

// mustAnswerBodies sends each body to method path and checks the answer.
func mustAnswerBodies(t *testing.T, base, method, path string, cases []bodyCase) {
	t.Helper()
	for _, c := range cases {
		a := MustDo(t, base, Request{Method: method, Path: path, Body: c.body, Header: JSONHeader()})
		if a.Code != c.code || (c.field != "" && !bytes.Contains(a.Body, []byte(strconv.Quote(c.field)))) {
			t.Errorf("%s: %d %s, want %d naming %q", c.body, a.Code, a.Body, c.code, c.field)
		}
	}
}

func TestResultStatusIsChecked(t *testing.T) {
	s := MustOpen(t, withJobs(fjhttp.Config{}, newJobStub(1)))
	mustAnswerBodies(t, s.URL(), "POST", "/api/v1/jobs/j/devices/d/result", []bodyCase{
		{`{"status":"done"}`, 400, "status"},
		{`{}`, 400, "status"},
		{`{"status":"failed","error":"E42"}`, 202, ""},
		{`{"status":"failed","error":"` + strings.Repeat("x", job.MaxErrorLen) + `"}`, 202, ""},
		{`{"status":"failed","error":"` + strings.Repeat("x", job.MaxErrorLen+1) + `"}`, 400, "error"},
	})
}

// TestJobCommandsAnswerTheJob: create, copy and stop answer the job in the
// shape of GET /jobs/{jobId}. A new job is what was decided, at once; the
// same create again, or a stop, is the read models' job once they applied
// the command's token, else what was decided with a note saying so.
func TestJobCommandsAnswerTheJob(t *testing.T) {
	j := newJobStub(1)
	p := newProgress()
	s := MustOpen(t, withJobs(fjhttp.Config{Waiter: p, ConsistencyWait: 50 * time.Millisecond}, j))
	body := `{"name":"Fans up","description":"d","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}]}`
	put := func() Answer {
		return MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/jobs/j1", Body: body, Header: JSONHeader()})
	}
	decided := fjhttp.Job{ID: "j1", Name: "Fans up", Description: "d", Status: "pending", DeviceSetID: "seattle", JobType: "setting",
		Operations: []fjhttp.Operation{{Name: "fanSpeed", Value: 1200.0}}, TimeoutSeconds: 30, BatchSize: 100,
		CreatedAt: stubCreatedAt, UpdatedAt: stubCreatedAt, Counts: fjhttp.JobCounts{Total: 3, Pending: 3}}

	// A new job: the decided one, though the read models are behind.
	a := put()
	if a.Code != http.StatusCreated || a.Header.Get("Location") != "/api/v1/jobs/j1" || a.Header.Get(fjhttp.ConsistencyTokenHeader) != "C:1/P:1" {
		t.Fatalf("PUT: %d, location %q, token %q: %s", a.Code, a.Header.Get("Location"), a.Header.Get(fjhttp.ConsistencyTokenHeader), a.Body)
	}
	if diff := cmp.Diff(fjhttp.JobAnswer{Job: decided, Created: true}, MustDecode[fjhttp.JobAnswer](t, a)); diff != "" {
		t.Errorf("PUT, new job (-want +got):\n%s", diff)
	}

	// The same body again, the read models behind: the decided job, noted.
	a = put()
	again := MustDecode[fjhttp.JobAnswer](t, a)
	if a.Code != http.StatusOK || a.Header.Get("Location") != "/api/v1/jobs/j1" || len(again.Notes) != 1 || !strings.Contains(again.Notes[0], "not applied this job yet") {
		t.Errorf("PUT again, read models behind: %d, location %q: %s", a.Code, a.Header.Get("Location"), a.Body)
	}
	if diff := cmp.Diff(decided, again.Job); diff != "" {
		t.Errorf("PUT again, read models behind (-want +got):\n%s", diff)
	}

	// The same body again, the read models caught up: their job.
	running := decided
	running.Status, running.Counts = "running", fjhttp.JobCounts{Total: 3, Succeeded: 1, Pending: 2}
	j.setCurrent(running)
	p.advance(1)
	a = put()
	if diff := cmp.Diff(fjhttp.JobAnswer{Job: running}, MustDecode[fjhttp.JobAnswer](t, a)); a.Code != http.StatusOK || diff != "" {
		t.Errorf("PUT again, read models caught up: %d (-want +got):\n%s", a.Code, diff)
	}

	// A stop the read models have not applied: the decided job, stopped.
	a = MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/jobs/j1/stop", Body: `{"reason":"wrong speed"}`, Header: JSONHeader()})
	stopped := MustDecode[fjhttp.JobAnswer](t, a)
	if a.Code != http.StatusOK || a.Header.Get(fjhttp.ConsistencyTokenHeader) != "C:2/P:2" || stopped.Status != "stopped" || stopped.Reason != "wrong speed" ||
		stopped.ID != "j1" || stopped.Counts.Total != 3 || stopped.UpdatedAt.IsZero() || len(stopped.Notes) != 1 {
		t.Errorf("stop, read models behind: %d, token %q: %s", a.Code, a.Header.Get(fjhttp.ConsistencyTokenHeader), a.Body)
	}
	// Applied: the read models' stopped job, with its counts.
	halted := running
	halted.Status, halted.Reason = "stopped", "wrong speed"
	j.setCurrent(halted)
	p.advance(2)
	a = MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/jobs/j1/stop", Body: `{"reason":"wrong speed"}`, Header: JSONHeader()})
	if diff := cmp.Diff(fjhttp.JobAnswer{Job: halted}, MustDecode[fjhttp.JobAnswer](t, a)); a.Code != http.StatusOK || diff != "" {
		t.Errorf("stop, read models caught up: %d (-want +got):\n%s", a.Code, diff)
	}

	// A copy: the new job, as decided, where Location says.
	a = MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/jobs/j1/copy"})
	cp := MustDecode[fjhttp.JobAnswer](t, a)
	if a.Code != http.StatusCreated || a.Header.Get("Location") != "/api/v1/jobs/j1-copy" || cp.ID != "j1-copy" || cp.Status != "pending" ||
		cp.Counts != (fjhttp.JobCounts{Total: 3, Pending: 3}) || !cp.Created || len(cp.Notes) != 1 {
		t.Errorf("copy: %d, location %q: %s", a.Code, a.Header.Get("Location"), a.Body)
	}
	if !bytes.Contains(a.Body, []byte(`"operations":[]`)) {
		t.Errorf("copy without operations: %s, want operations []", a.Body)
	}
}

// A 0 sent for timeoutSeconds or batchSize is refused, naming the field;
// left out, the domain's default applies.
func TestJobZeroIsNotLeftOut(t *testing.T) {
	s := MustOpen(t, withJobs(fjhttp.Config{}, newJobStub(1)))
	const job = `{"name":"Fans up","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}]`
	mustAnswerBodies(t, s.URL(), "POST", "/api/v1/jobs", []bodyCase{
		{job + `}`, 201, ""},
		{job + `,"timeoutSeconds":0}`, 400, "timeoutSeconds"},
		{job + `,"batchSize":0}`, 400, "batchSize"},
		{job + `,"timeoutSeconds":45,"batchSize":10}`, 201, ""},
	})
}

// A 0 sent, refused by HTTP, does not hide the body's other bad fields:
// one answer names them all.
func TestJobZeroAndOtherBadFieldsInOneAnswer(t *testing.T) {
	s := MustOpen(t, withJobs(fjhttp.Config{}, newJobStub(1)))
	a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/jobs", Header: JSONHeader(),
		Body: `{"name":"","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1}],"timeoutSeconds":0,"batchSize":99999,"cancellationThreshold":150}`})
	var got []string
	for _, f := range a.Problem(t).Errors {
		got = append(got, f.Field)
	}
	slices.Sort(got)
	if want := []string{"batchSize", "cancellationThreshold", "name", "timeoutSeconds"}; a.Code != http.StatusBadRequest || !slices.Equal(got, want) {
		t.Errorf("%d naming %v, want 400 naming %v: %s", a.Code, got, want, a.Body)
	}
}

// An Idempotency-Key names one request, and POST /jobs derives the job's
// ID from the key alone: another request under the key meets the job the
// first one created and is refused, 422 naming the header, whether its
// definition differs or not, instead of creating a second job. The same
// request again is answered with its job; without a key, every POST
// creates a job; a PUT of another body under an existing ID stays a 409.
func TestIdempotencyKeyCreatesOneJob(t *testing.T) {
	j := newJobStub(1)
	s := MustOpen(t, withJobs(fjhttp.Config{}, j))
	post := func(key, body string) Answer {
		t.Helper()
		h := JSONHeader()
		if key != "" {
			h = With(h, "Idempotency-Key", key)
		}
		return MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/jobs", Header: h, Body: body})
	}
	const (
		a      = `{"name":"Fans up","description":"d","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}]}`
		aAgain = `{ "operations": [{"value": 1200.0, "name": "fanSpeed"}], "jobType": "setting", "deviceSetId": "seattle", "description": "d", "name": "Fans up" }`
		b      = `{"name":"Fans down","description":"d","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}]}`
		// aOther is another request for the stub's same definition.
		aOther = `{"name":"Fans up","description":"other","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}]}`
	)
	first := post("abc", a)
	x := MustDecode[fjhttp.JobAnswer](t, first)
	if first.Code != http.StatusCreated || x.ID == "" {
		t.Fatalf("first POST: %d %s", first.Code, first.Body)
	}
	again := post("abc", aAgain)
	if got := MustDecode[fjhttp.JobAnswer](t, again); again.Code != http.StatusOK || got.ID != x.ID {
		t.Errorf("the same request again: %d %s, want 200 with job %s", again.Code, again.Body, x.ID)
	}
	for name, body := range map[string]string{"another definition": b, "the same definition": aOther} {
		n := j.Decided()
		ans := post("abc", body)
		if ans.Code != http.StatusUnprocessableEntity {
			t.Errorf("%s under the key: %d %s, want 422", name, ans.Code, ans.Body)
			continue
		}
		want := []fjhttp.FieldError{{Field: "Idempotency-Key", Message: "already used for another request; use a new key for a new request"}}
		if diff := cmp.Diff(want, ans.Problem(t).Errors); diff != "" {
			t.Errorf("%s under the key: errors (-want +got):\n%s", name, diff)
		}
		if j.Decided() != n {
			t.Errorf("%s under the key created a job", name)
		}
	}
	if y := MustDecode[fjhttp.JobAnswer](t, post("another-key", b)); y.ID == x.ID || !y.Created {
		t.Errorf("another key: job %s (created %t), want a new job", y.ID, y.Created)
	}
	one, two := post("", a), post("", a)
	if one.Code != http.StatusCreated || two.Code != http.StatusCreated || MustDecode[fjhttp.JobAnswer](t, one).ID == MustDecode[fjhttp.JobAnswer](t, two).ID {
		t.Errorf("without a key: %d %s then %d %s, want two new jobs", one.Code, one.Body, two.Code, two.Body)
	}
	put := func(body string) Answer {
		return MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/jobs/j1", Header: With(JSONHeader(), "Idempotency-Key", "put-key"), Body: body})
	}
	if got := put(a); got.Code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", got.Code, got.Body)
	}
	if got := put(b); got.Code != http.StatusConflict {
		t.Errorf("PUT of another body under an existing ID: %d %s, want 409", got.Code, got.Body)
	}
}

// A command refused because the command handler closed (the service is
// shutting down) is the unavailability answer, 503 with Retry-After, and
// nothing is logged as an error: another instance, or this one restarted,
// takes it.
func TestCommandsDuringShutdownAreUnavailable(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	j := newJobStub(1)
	j.fail = func(_ context.Context, id string) error { return fmt.Errorf("job %s: %w", id, commands.ErrClosed) } // as the handler says it
	s := MustOpen(t, withJobs(fjhttp.Config{Logger: zap.New(core)}, j))
	for _, r := range []Request{
		{Method: "POST", Path: "/api/v1/jobs/j1/stop", Body: `{}`, Header: JSONHeader()},
		{Method: "POST", Path: "/api/v1/jobs/j1/devices/d1/result", Body: `{"status":"succeeded"}`, Header: JSONHeader()},
	} {
		a := MustDo(t, s.URL(), r)
		p := a.Problem(t)
		if a.Code != http.StatusServiceUnavailable || p.Type != fjhttp.ProblemTypeBase+"unavailable" || a.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s during shutdown: %d, Retry-After %q: %s", r.Method, r.Path, a.Code, a.Header.Get("Retry-After"), a.Body)
		}
	}
	if errs := logs.FilterLevelExact(zap.ErrorLevel).All(); len(errs) != 0 {
		t.Errorf("%d error entries, want none: %v", len(errs), errs[0].ContextMap())
	}
}

// A client that hangs up while its command runs gets no answer it could
// read; the server logs nothing above debug and counts the request as
// 499, neither its own failure (5xx) nor unavailability (503).
func TestAClientThatHangsUpIsNotTheServersFailure(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	entered := make(chan struct{})
	j := newJobStub(1)
	j.fail = func(ctx context.Context, id string) error {
		close(entered)
		<-ctx.Done() // the command waits, as the job's worker does, until the caller gives up
		return fmt.Errorf("job %s: gave up waiting for the command: %w", id, ctx.Err())
	}
	s := MustOpen(t, withJobs(fjhttp.Config{Logger: zap.New(core)}, j))

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", s.URL()+"/api/v1/jobs/j1/stop", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client's request ended with %v, want its cancellation", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessage("request").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server did not finish the abandoned request within 10s")
		}
		time.Sleep(10 * time.Millisecond) // polling for the server's log entry
	}
	if e := logs.FilterMessage("request").All()[0]; e.ContextMap()["status"] != int64(fjhttp.StatusClientClosedRequest) {
		t.Errorf("the abandoned request was counted as %v, want %d", e.ContextMap()["status"], fjhttp.StatusClientClosedRequest)
	}
	for _, e := range logs.All() {
		if e.Level > zap.DebugLevel {
			t.Errorf("%s entry %q %v, want debug at most", e.Level, e.Message, e.ContextMap())
		}
	}
}

// TestHistoryHonoursAcceptQualities: NDJSON only when the client prefers
// it; ?limit= (or ?cursor=) given twice is a 400 naming it.
func TestHistoryHonoursAcceptQualities(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{})
	for accept, want := range map[string]string{
		"application/x-ndjson":                         fjhttp.MIMENDJSON,
		"application/x-ndjson;q=0.5, application/json": fjhttp.MIMEJSON,
		"application/json;q=0.4, application/x-ndjson": fjhttp.MIMENDJSON,
		"application/x-ndjson;q=0":                     fjhttp.MIMEJSON,
		"application/x-ndjson;q=0.9, */*":              fjhttp.MIMEJSON,
		"*/*":                                          fjhttp.MIMEJSON,
	} {
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/jobs/j/history", Header: map[string]string{"Accept": accept}})
		if got := a.Header.Get("Content-Type"); a.Code != 200 || !strings.HasPrefix(got, want) {
			t.Errorf("Accept %q: %d %q, want %s", accept, a.Code, got, want)
		}
	}
	for _, q := range []string{"limit=1&limit=2", "cursor=a&cursor=b"} {
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/jobs/j/history?" + q})
		if p := a.Problem(t); a.Code != 400 || len(p.Errors) != 1 || p.Errors[0].Message != "is given more than once; give it once" {
			t.Errorf("?%s: %d %+v", q, a.Code, p)
		}
	}
}
