package projections_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/projections"
)

// testClock is a clock a test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// MustDecodeList returns a decoder of a rendered list page that fails tb
// on an error or a page not of the API's shape; it takes what JobsJSON
// and JobDevicesJSON return.
func MustDecodeList[T any](tb testing.TB) func([]byte, error) projections.Page[T] {
	tb.Helper()
	return func(b []byte, err error) projections.Page[T] { return mustDecodeList[T](tb, b, err) }
}

func mustDecodeList[T any](tb testing.TB, b []byte, err error) projections.Page[T] {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	var l struct {
		Items []T     `json:"items"`
		Next  *string `json:"next"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		tb.Fatalf("decode %s: %v", b, err)
	}
	if l.Items == nil || l.Next == nil {
		tb.Fatalf("page %s: want items (never null) and next", b)
	}
	return projections.Page[T]{Items: l.Items, Next: *l.Next}
}

func TestRenderedJobPages(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Millisecond)
	clock := &testClock{now: start}

	for _, d := range []string{"d1", "d2", "d3"} {
		MustAppend(t, es, "device-"+d, device.Registered{DeviceID: d, Name: "Device " + d, TemplateID: "vending"})
	}
	MustAppendAt(t, es, "job-done", append(createJob("done", "Done", start.Add(-2*time.Hour), "d1"),
		jobEvent{start.Add(-2 * time.Hour), job.Started{JobID: "done"}},
		jobEvent{start.Add(-time.Hour), job.OperationSucceeded{JobID: "done", DeviceID: "d1"}},
		jobEvent{start.Add(-time.Hour), job.Completed{JobID: "done", Succeeded: 1}})...)
	tok := MustAppendAt(t, es, "job-live", append(createJob("live", "Live", start, "d1", "d2", "d3"),
		jobEvent{start, job.Started{JobID: "live"}})...)
	r := MustRunJobs(t, es, rdb, root, "1")
	MustReach(t, r.Runner, tok)
	q := projections.NewQueries(rdb, root, clock.Now, projections.WithApplied(r.Runner.Position))
	plain := projections.NewQueries(rdb, root, clock.Now)

	t.Run("rendered pages hold what the queries answer", func(t *testing.T) {
		for _, req := range []projections.PageRequest{{}, {Limit: 1}} {
			want, err := plain.Jobs(ctx, projections.JobFilter{}, req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := q.JobsJSON(ctx, projections.JobFilter{}, req)
			if diff := cmp.Diff(want, mustDecodeList[projections.Job](t, b, err)); diff != "" {
				t.Errorf("jobs, limit %d (-query +rendered):\n%s", req.Limit, diff)
			}
		}
		want, err := plain.JobDevices(ctx, "live", "", projections.PageRequest{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		b, err := q.JobDevicesJSON(ctx, "live", "", projections.PageRequest{Limit: 2})
		if diff := cmp.Diff(want, mustDecodeList[projections.JobDevice](t, b, err)); diff != "" {
			t.Errorf("devices (-query +rendered):\n%s", diff)
		}
		_, err = q.JobDevicesJSON(ctx, "never", "", projections.PageRequest{})
		MustNotFound(t, err)
		_, err = q.JobsJSON(ctx, projections.JobFilter{Status: "sleeping"}, projections.PageRequest{})
		if pe, ok := err.(*projections.PageError); !ok || pe.Field != "status" {
			t.Errorf("unknown status: error %v, want a PageError on status", err)
		}
	})

	t.Run("a page is kept while nothing is applied, and read again once something is", func(t *testing.T) {
		req := projections.PageRequest{Limit: 100}
		first, err := q.JobDevicesJSON(ctx, "live", "", req)
		if err != nil {
			t.Fatal(err)
		}
		// Redis changed behind the runner's back: the applied position
		// did not move, so the kept page still answers.
		names := projections.Prefix(root, "jobs", "1") + projections.JobDeviceNamesKey("live")
		if err := rdb.HSet(ctx, names, "d1", "Renamed").Err(); err != nil {
			t.Fatal(err)
		}
		again, err := q.JobDevicesJSON(ctx, "live", "", req)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(first) {
			t.Errorf("page read again with nothing applied:\n%s\nwant the kept one:\n%s", again, first)
		}
		// A result, awaited like a consistency token: the next answer
		// has it.
		tok := MustAppendAt(t, es, "job-live", jobEvent{start, job.OperationFailed{JobID: "live", DeviceID: "d2", Error: "jammed"}})
		MustReach(t, r.Runner, tok)
		p := MustDecodeList[projections.JobDevice](t)(q.JobDevicesJSON(ctx, "live", "", req))
		want := []projections.JobDevice{
			{DeviceID: "d1", Name: "Renamed", Status: job.DevicePending, UpdatedAt: start},
			{DeviceID: "d2", Name: "Device d2", Status: job.DeviceFailed, Error: "jammed", UpdatedAt: start},
			{DeviceID: "d3", Name: "Device d3", Status: job.DevicePending, UpdatedAt: start},
		}
		if diff := cmp.Diff(want, p.Items); diff != "" {
			t.Errorf("devices after a result (-want +got):\n%s", diff)
		}
		jobs := MustDecodeList[projections.Job](t)(q.JobsJSON(ctx, projections.JobFilter{Status: job.StatusRunning}, projections.PageRequest{}))
		if len(jobs.Items) != 1 || jobs.Items[0].Counts != (projections.JobCounts{Total: 3, Failed: 1, Pending: 2}) {
			t.Errorf("running jobs after a result: %+v, want live with 1 failed of 3", jobs.Items)
		}
	})

	t.Run("a deleted device shows at once in a kept page", func(t *testing.T) {
		req := projections.PageRequest{Limit: 100}
		if _, err := q.JobDevicesJSON(ctx, "live", "", req); err != nil {
			t.Fatal(err)
		}
		MustReach(t, r.Runner, MustAppend(t, es, "device-d3", device.Deleted{DeviceID: "d3"}))
		p := MustDecodeList[projections.JobDevice](t)(q.JobDevicesJSON(ctx, "live", "", req))
		if len(p.Items) != 3 || !p.Items[2].Deleted || p.Items[0].Deleted {
			t.Errorf("devices after d3 was deleted: %+v, want only d3 deleted", p.Items)
		}
	})

	t.Run("a kept page ends with the 30-day window", func(t *testing.T) {
		req := projections.PageRequest{Limit: 10}
		p := MustDecodeList[projections.JobDevice](t)(q.JobDevicesJSON(ctx, "done", "", req))
		if len(p.Items) != 1 {
			t.Fatalf("devices of done: %+v, want d1", p.Items)
		}
		jobs := MustDecodeList[projections.Job](t)(q.JobsJSON(ctx, projections.JobFilter{Status: job.StatusCompleted}, projections.PageRequest{}))
		if len(jobs.Items) != 1 {
			t.Fatalf("completed jobs: %+v, want done", jobs.Items)
		}
		clock.Add(projections.JobRetention)
		_, err := q.JobDevicesJSON(ctx, "done", "", req)
		MustNotFound(t, err)
		jobs = MustDecodeList[projections.Job](t)(q.JobsJSON(ctx, projections.JobFilter{Status: job.StatusCompleted}, projections.PageRequest{}))
		if len(jobs.Items) != 0 {
			t.Errorf("completed jobs 30 days on: %+v, want none", jobs.Items)
		}
	})
}
