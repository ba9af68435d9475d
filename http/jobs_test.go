package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// jobStub serves the job routes from memory: the shape of the HTTP layer
// (binding, paging, NDJSON) is tested here; the real commands, read models
// and event log are tested through the real server in cmd/fleetjobs.
type jobStub struct {
	history []fjhttp.HistoryEvent
}

func (j *jobStub) CreateJob(context.Context, fjhttp.CreateJob) (fjhttp.CommandResult, error) {
	return fjhttp.CommandResult{Token: "C:1/P:1", Created: true}, nil
}
func (j *jobStub) NewJobID(commandID string) string { return "job-" + commandID }
func (j *jobStub) StopJob(context.Context, fjhttp.StopJob) (fjhttp.CommandResult, error) {
	return fjhttp.CommandResult{Token: "C:2/P:2"}, nil
}
func (j *jobStub) CopyJob(_ context.Context, c fjhttp.CopyJob) (fjhttp.CopyResult, error) {
	return fjhttp.CopyResult{CommandResult: fjhttp.CommandResult{Created: true}, NewJobID: c.JobID + "-copy"}, nil
}
func (j *jobStub) RecordResult(context.Context, fjhttp.RecordResult) (fjhttp.CommandResult, error) {
	return fjhttp.CommandResult{Token: "C:3/P:3", Created: true}, nil
}
func (j *jobStub) Job(_ context.Context, id string) (fjhttp.Job, error) {
	return fjhttp.Job{ID: id}, nil
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

func TestResultStatusIsChecked(t *testing.T) {
	s := MustOpen(t, withJobs(fjhttp.Config{}, newJobStub(1)))
	for _, c := range []struct {
		body  string
		code  int
		field string
	}{
		{`{"status":"done"}`, 400, "status"},
		{`{}`, 400, "status"},
		{`{"status":"succeeded","error":"x"}`, 400, "error"},
		{`{"status":"failed","error":"E42"}`, 202, ""},
	} {
		a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/jobs/j/devices/d/result", Body: c.body, Header: JSONHeader()})
		if a.Code != c.code || (c.field != "" && !bytes.Contains(a.Body, []byte(strconv.Quote(c.field)))) {
			t.Errorf("%s: %d %s, want %d naming %q", c.body, a.Code, a.Body, c.code, c.field)
		}
	}
}
