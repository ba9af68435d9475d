package projections_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

func TestApplyJobEvent(t *testing.T) {
	t.Parallel()
	created := t0
	at := t0.Add(time.Minute)
	running := func() *projections.JobState {
		return projections.NewJobState(map[string]projections.JobEntry{
			"j1": {Status: job.StatusRunning, CreatedAt: created, UpdatedAt: created},
		}, created)
	}
	stopped := func() *projections.JobState {
		return projections.NewJobState(map[string]projections.JobEntry{
			"j1": {Status: job.StatusStopped, CreatedAt: created, UpdatedAt: created},
		}, created)
	}
	// inv is the inverted creation time of the list members.
	inv := fmt.Sprintf("%019d", int64(^uint64(0)>>1)-created.UnixNano())
	expireAll := func(id string, when time.Time) []projections.Op {
		var ops []projections.Op
		for _, k := range []string{"job:" + id, "job:" + id + ":devices", "job:" + id + ":devices:pending",
			"job:" + id + ":devices:succeeded", "job:" + id + ":devices:failed", "job:" + id + ":names", "job:" + id + ":results"} {
			ops = append(ops, projections.ExpireAt(k, when))
		}
		return ops
	}
	flush := func(e projections.JobEntry, id string) []projections.Op {
		ops := []projections.Op{
			projections.HSet("job:"+id, "updatedAt", e.UpdatedAt.Format(time.RFC3339Nano)),
			projections.HSet("jobstate", id, fmt.Sprintf("%s %d %d", e.Status, e.CreatedAt.UnixNano(), e.UpdatedAt.UnixNano())),
			projections.ZAdd("jobs:"+string(e.Status)+":updated", float64(e.UpdatedAt.UnixMilli()), id),
		}
		if e.Status.Finished() {
			ops = append(ops, expireAll(id, e.UpdatedAt.Add(projections.JobRetention))...)
		}
		return ops
	}
	statusMove := func(from, to job.Status) []projections.Op {
		tier := func(s job.Status) string {
			if s == job.StatusRunning {
				return "0"
			}
			return "1"
		}
		return []projections.Op{
			projections.ZRem("jobs", tier(from)+inv+":j1"), projections.ZAdd("jobs", 0, tier(to)+inv+":j1"),
			projections.ZRem("jobs:"+string(from), inv+":j1"), projections.ZAdd("jobs:"+string(to), 0, inv+":j1"),
			projections.ZRem("jobs:"+string(from)+":updated", "j1"),
			projections.HSet("job:j1", "status", string(to)),
		}
	}
	concat := func(parts ...[]projections.Op) []projections.Op {
		var out []projections.Op
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	def := job.Created{JobID: "j2", Name: "Fan up", Description: "d", DeviceSetID: "cold", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 3.0}}, DeviceCount: 2, TimeoutSeconds: 30, BatchSize: 100}

	tests := []struct {
		name  string
		state func() *projections.JobState
		event any
		want  []projections.Op
	}{{
		name:  "a created job is listed pending, newest first, with zero counts",
		state: running,
		event: def,
		want: concat([]projections.Op{
			projections.HSet("job:j2", "doc", doc(t, map[string]any{"id": "j2", "name": "Fan up", "description": "d",
				"deviceSetId": "cold", "jobType": "setting", "operations": def.Operations, "timeoutSeconds": 30,
				"batchSize": 100, "cancellationThreshold": 0})),
			projections.HSet("job:j2", "status", "pending"),
			projections.HSet("job:j2", "createdAt", at.Format(time.RFC3339Nano)),
			projections.HSet("job:j2", "total", "0"), projections.HSet("job:j2", "succeeded", "0"),
			projections.HSet("job:j2", "failed", "0"), projections.HSet("job:j2", "pending", "0"),
			projections.ZAdd("jobs", 0, "1"+fmt.Sprintf("%019d", int64(^uint64(0)>>1)-at.UnixNano())+":j2"),
			projections.ZAdd("jobs:pending", 0, fmt.Sprintf("%019d", int64(^uint64(0)>>1)-at.UnixNano())+":j2"),
		}, flush(projections.JobEntry{Status: job.StatusPending, CreatedAt: at, UpdatedAt: at}, "j2")),
	}, {
		name:  "targeted devices are pending, named, and counted",
		state: running,
		event: job.DevicesTargeted{JobID: "j1", Devices: []job.TargetedDevice{{DeviceID: "d1", Name: "One"}, {DeviceID: "d2", Name: "Two"}}},
		want: concat([]projections.Op{
			projections.ZAdd("job:j1:devices", 0, "d1"), projections.ZAdd("job:j1:devices:pending", 0, "d1"),
			projections.HSet("job:j1:names", "d1", "One"),
			projections.ZAdd("job:j1:devices", 0, "d2"), projections.ZAdd("job:j1:devices:pending", 0, "d2"),
			projections.HSet("job:j1:names", "d2", "Two"),
			projections.HIncrBy("job:j1", "total", 2), projections.HIncrBy("job:j1", "pending", 2),
		}, flush(projections.JobEntry{Status: job.StatusRunning, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name: "a started job moves to the running tier on top",
		state: func() *projections.JobState {
			return projections.NewJobState(map[string]projections.JobEntry{
				"j1": {Status: job.StatusPending, CreatedAt: created, UpdatedAt: created}}, created)
		},
		event: job.Started{JobID: "j1"},
		want: concat(statusMove(job.StatusPending, job.StatusRunning),
			flush(projections.JobEntry{Status: job.StatusRunning, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a dispatch only moves the job's last change",
		state: running,
		event: job.DevicesDispatched{JobID: "j1", DeviceIDs: []string{"d1"}},
		want:  flush(projections.JobEntry{Status: job.StatusRunning, CreatedAt: created, UpdatedAt: at}, "j1"),
	}, {
		name:  "a success moves the device from pending to succeeded in O(1) ops",
		state: running,
		event: job.OperationSucceeded{JobID: "j1", DeviceID: "d1"},
		want: concat([]projections.Op{
			projections.ZRem("job:j1:devices:pending", "d1"), projections.ZAdd("job:j1:devices:succeeded", 0, "d1"),
			projections.HSet("job:j1:results", "d1", doc(t, map[string]any{"status": "succeeded", "updatedAt": at})),
			projections.HIncrBy("job:j1", "succeeded", 1), projections.HIncrBy("job:j1", "pending", -1),
		}, flush(projections.JobEntry{Status: job.StatusRunning, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a failure keeps the device's error",
		state: running,
		event: job.OperationFailed{JobID: "j1", DeviceID: "d1", Error: "jammed"},
		want: concat([]projections.Op{
			projections.ZRem("job:j1:devices:pending", "d1"), projections.ZAdd("job:j1:devices:failed", 0, "d1"),
			projections.HSet("job:j1:results", "d1", doc(t, map[string]any{"status": "failed", "error": "jammed", "updatedAt": at})),
			projections.HIncrBy("job:j1", "failed", 1), projections.HIncrBy("job:j1", "pending", -1),
		}, flush(projections.JobEntry{Status: job.StatusRunning, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a completed job leaves the running tier and its keys expire 30 days after its last event",
		state: running,
		event: job.Completed{JobID: "j1", Succeeded: 2},
		want: concat(statusMove(job.StatusRunning, job.StatusCompleted),
			flush(projections.JobEntry{Status: job.StatusCompleted, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a failed job keeps its reason",
		state: running,
		event: job.Failed{JobID: "j1", Reason: "threshold", Failed: 1},
		want: concat(statusMove(job.StatusRunning, job.StatusFailed), []projections.Op{projections.HSet("job:j1", "reason", "threshold")},
			flush(projections.JobEntry{Status: job.StatusFailed, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a stopped job keeps its reason",
		state: running,
		event: job.Stopped{JobID: "j1", Reason: "by a user"},
		want: concat(statusMove(job.StatusRunning, job.StatusStopped), []projections.Op{projections.HSet("job:j1", "reason", "by a user")},
			flush(projections.JobEntry{Status: job.StatusStopped, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a late result after a stop moves the device and the counts, not the status, and pushes the expiry",
		state: stopped,
		event: job.OperationSucceeded{JobID: "j1", DeviceID: "d1"},
		want: concat([]projections.Op{
			projections.ZRem("job:j1:devices:pending", "d1"), projections.ZAdd("job:j1:devices:succeeded", 0, "d1"),
			projections.HSet("job:j1:results", "d1", doc(t, map[string]any{"status": "succeeded", "updatedAt": at})),
			projections.HIncrBy("job:j1", "succeeded", 1), projections.HIncrBy("job:j1", "pending", -1),
		}, flush(projections.JobEntry{Status: job.StatusStopped, CreatedAt: created, UpdatedAt: at}, "j1")),
	}, {
		name:  "a finished job never changes status again",
		state: stopped,
		event: job.Completed{JobID: "j1"},
		want:  flush(projections.JobEntry{Status: job.StatusStopped, CreatedAt: created, UpdatedAt: at}, "j1"),
	}, {
		name:  "events of a job not in the list change nothing",
		state: running,
		event: job.OperationSucceeded{JobID: "nope", DeviceID: "d1"},
		want:  nil,
	}, {
		name:  "events of other streams change nothing",
		state: running,
		event: device.Deleted{DeviceID: "d1"},
		want:  nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.state()
			got := projections.ApplyJobEvent(s, projections.Event{Data: tt.event, Metadata: metaAt(at)}, nil)
			got = projections.FlushJobState(s, got)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(sameJSON)); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a finished job leaves the list once the log clock is 30 days past its last event", func(t *testing.T) {
		s := stopped()
		later := created.Add(projections.JobRetention)
		got := projections.ApplyJobEvent(s, projections.Event{Data: job.Started{JobID: "other"}, Metadata: metaAt(later)}, nil)
		want := concat([]projections.Op{
			projections.ZRem("jobs", "1"+inv+":j1"), projections.ZRem("jobs:stopped", inv+":j1"),
			projections.ZRem("jobs:stopped:updated", "j1"), projections.HDel("jobstate", "j1"),
		}, expireAll("j1", created.Add(projections.JobRetention)))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ops (-want +got):\n%s", diff)
		}
		if _, ok := s.Jobs["j1"]; ok {
			t.Errorf("job j1 still in the state after it left the list")
		}
		if got := projections.ApplyJobEvent(s, projections.Event{Data: job.OperationSucceeded{JobID: "j1", DeviceID: "d1"},
			Metadata: metaAt(later)}, nil); len(got) != 0 {
			t.Errorf("a result of a job gone from the list wrote %v, want nothing", got)
		}
	})
	t.Run("a running job never leaves the list by age", func(t *testing.T) {
		s := running()
		got := projections.ApplyJobEvent(s, projections.Event{Data: job.Started{JobID: "other"},
			Metadata: metaAt(created.Add(2 * projections.JobRetention))}, nil)
		if len(got) != 0 {
			t.Errorf("ops %v, want none", got)
		}
	})
}

// jobEvent is one event to append to a job stream at a given time.
type jobEvent struct {
	at   time.Time
	data any
}

// MustAppendAt appends events to stream, each with its own occurredAt, in
// one append, and returns the position of the last.
func MustAppendAt(tb testing.TB, es *eventstore.Client, stream string, evs ...jobEvent) eventstore.Position {
	tb.Helper()
	out := make([]eventstore.Event, len(evs))
	for i, e := range evs {
		out[i] = eventstore.Event{ID: uuid.New(), Data: e.data, Metadata: eventstore.Metadata{
			CommandID: "cmd", CorrelationID: "corr", Actor: "test", OccurredAt: e.at}}
	}
	res, err := es.Append(context.Background(), stream, eventstore.Any(), out)
	if err != nil {
		tb.Fatalf("append to %s: %v", stream, err)
	}
	return res.Position
}

// MustRunJobs starts a Runner of the jobs and devices projections (both at
// version) under root.
func MustRunJobs(tb testing.TB, es *eventstore.Client, rdb *redis.Client, root, version string, tweak ...func(*projections.RunnerConfig)) *runner {
	tb.Helper()
	return mustRunTargets(tb, es, rdb, root, []projections.Target{
		{Projector: projections.NewJobsProjector(), Version: version},
		{Projector: projections.NewDevicesProjector(0), Version: version},
	}, tweak...)
}

// mustRunTargets starts a Runner of targets under root, stopped (and
// waited for) when the test ends.
func mustRunTargets(tb testing.TB, es *eventstore.Client, rdb *redis.Client, root string, targets []projections.Target, tweak ...func(*projections.RunnerConfig)) *runner {
	tb.Helper()
	log := zapTestLogger(tb)
	w, err := projections.NewWriter(rdb, log, root, targets...)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := projections.RunnerConfig{Store: es, Codec: eventstore.NewCatalogCodec(), Writer: w, Logger: log,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	r, err := projections.NewRunner(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("runner: %v", err)
		}
	}
	tb.Cleanup(stop)
	return &runner{Runner: r, stop: stop}
}

// createJob returns the events of a job created and targeted at devices
// at the time at.
func createJob(id, name string, at time.Time, devices ...string) []jobEvent {
	tds := make([]job.TargetedDevice, len(devices))
	for i, d := range devices {
		tds[i] = job.TargetedDevice{DeviceID: d, Name: "Device " + d}
	}
	return []jobEvent{
		{at, job.Created{JobID: id, Name: name, DeviceSetID: "set", Type: job.TypeCommand,
			Operations: []job.Operation{{Name: "reboot", Value: map[string]any{}}}, DeviceCount: len(devices),
			TimeoutSeconds: 30, BatchSize: 100}},
		{at, job.DevicesTargeted{JobID: id, Devices: tds}},
	}
}

func jobIDs(p projections.Page[projections.Job]) []string {
	ids := []string{}
	for _, j := range p.Items {
		ids = append(ids, j.ID)
	}
	return ids
}

func TestJobsProjection(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	days := func(n int) time.Time { return now.Add(-time.Duration(n) * 24 * time.Hour) }
	ctx := context.Background()

	for _, d := range []string{"d1", "d2", "d3", "d4"} {
		MustAppend(t, es, "device-"+d, device.Registered{DeviceID: d, Name: "Device " + d, TemplateID: "vending"})
	}
	// old: finished 40 days ago, out of the window; recent: finished 20
	// days ago; newer, newest: running and pending; stopped: stopped a
	// day ago with a late result after the stop; stuck-running and
	// stuck-pending: unfinished, without a change for 40 and 50 days (a
	// device that never answers, a targeting that never ended), which the
	// 30-day window, for finished jobs only, does not hide.
	MustAppendAt(t, es, "job-old", append(createJob("old", "Old", days(41), "d1"),
		jobEvent{days(41), job.Started{JobID: "old"}},
		jobEvent{days(40), job.OperationSucceeded{JobID: "old", DeviceID: "d1"}},
		jobEvent{days(40), job.Completed{JobID: "old", Succeeded: 1}})...)
	MustAppendAt(t, es, "job-recent", append(createJob("recent", "Recent", days(21), "d1", "d2"),
		jobEvent{days(21), job.Started{JobID: "recent"}},
		jobEvent{days(20), job.OperationSucceeded{JobID: "recent", DeviceID: "d1"}},
		jobEvent{days(20), job.OperationFailed{JobID: "recent", DeviceID: "d2", Error: "jammed"}},
		jobEvent{days(20), job.Failed{JobID: "recent", Reason: "some failed", Succeeded: 1, Failed: 1}})...)
	MustAppendAt(t, es, "job-running", append(createJob("running", "Running", days(10), "d1", "d2", "d3", "d4"),
		jobEvent{days(10), job.Started{JobID: "running"}},
		jobEvent{days(1), job.OperationSucceeded{JobID: "running", DeviceID: "d3"}})...)
	MustAppendAt(t, es, "job-stopped", append(createJob("stopped", "Stopped", days(5), "d1", "d2", "d3"),
		jobEvent{days(5), job.Started{JobID: "stopped"}},
		jobEvent{days(2), job.Stopped{JobID: "stopped", Reason: "by a user"}},
		jobEvent{days(1), job.OperationFailed{JobID: "stopped", DeviceID: "d2", Error: "late"}})...)
	MustAppendAt(t, es, "job-newest", createJob("newest", "Newest", days(0), "d4")...)
	MustAppendAt(t, es, "job-stuck-running", append(createJob("stuck-running", "Stuck running", days(45), "d1", "d2"),
		jobEvent{days(45), job.Started{JobID: "stuck-running"}},
		jobEvent{days(40), job.OperationSucceeded{JobID: "stuck-running", DeviceID: "d1"}})...)
	MustAppendAt(t, es, "job-stuck-pending", createJob("stuck-pending", "Stuck pending", days(50), "d3")...)
	tok := MustAppend(t, es, "device-d2", device.Deleted{DeviceID: "d2"})

	r := MustRunJobs(t, es, rdb, root, "1")
	MustReach(t, r.Runner, tok)
	q := projections.NewQueries(rdb, root, func() time.Time { return now })

	t.Run("the list holds the unfinished jobs and the finished ones of the last 30 days by last change, running on top, then newest first", func(t *testing.T) {
		p, err := q.Jobs(ctx, projections.JobFilter{}, projections.PageRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"running", "stuck-running", "newest", "stopped", "recent", "stuck-pending"}, jobIDs(p)); diff != "" {
			t.Errorf("jobs (-want +got):\n%s", diff)
		}
	})
	t.Run("pages follow one another", func(t *testing.T) {
		var ids []string
		req := projections.PageRequest{Limit: 1}
		for range 10 {
			p, err := q.Jobs(ctx, projections.JobFilter{}, req)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, jobIDs(p)...)
			if req.Cursor = p.Next; p.Next == "" {
				break
			}
		}
		if diff := cmp.Diff([]string{"running", "stuck-running", "newest", "stopped", "recent", "stuck-pending"}, ids); diff != "" {
			t.Errorf("jobs over pages of 1 (-want +got):\n%s", diff)
		}
	})
	t.Run("the list filters by status", func(t *testing.T) {
		for status, want := range map[job.Status][]string{
			job.StatusRunning: {"running", "stuck-running"}, job.StatusFailed: {"recent"}, job.StatusCompleted: {},
			job.StatusPending: {"newest", "stuck-pending"}, job.StatusStopped: {"stopped"},
		} {
			p, err := q.Jobs(ctx, projections.JobFilter{Status: status}, projections.PageRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, jobIDs(p)); diff != "" {
				t.Errorf("%s jobs (-want +got):\n%s", status, diff)
			}
		}
		_, err := q.Jobs(ctx, projections.JobFilter{Status: "sleeping"}, projections.PageRequest{})
		if pe, ok := err.(*projections.PageError); !ok || pe.Field != "status" {
			t.Errorf("unknown status: error %v, want a PageError on status", err)
		}
	})
	t.Run("the summary counts the jobs by status as the list holds them", func(t *testing.T) {
		s, err := q.Summary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := projections.JobSummary{Pending: 2, Running: 2, Failed: 1, Stopped: 1, Total: 6}
		if diff := cmp.Diff(want, s); diff != "" {
			t.Errorf("summary (-want +got):\n%s", diff)
		}
	})
	t.Run("a job's detail has its definition, times and counts", func(t *testing.T) {
		j, err := q.Job(ctx, "stopped")
		if err != nil {
			t.Fatal(err)
		}
		want := projections.Job{ID: "stopped", Name: "Stopped", Status: job.StatusStopped, Reason: "by a user",
			DeviceSetID: "set", JobType: job.TypeCommand, Operations: []job.Operation{{Name: "reboot", Value: map[string]any{}}},
			TimeoutSeconds: 30, BatchSize: 100, CreatedAt: days(5), UpdatedAt: days(1),
			Counts: projections.JobCounts{Total: 3, Failed: 1, Pending: 2}}
		if diff := cmp.Diff(want, j); diff != "" {
			t.Errorf("job (-want +got):\n%s", diff)
		}
		_, err = q.Job(ctx, "old")
		MustNotFound(t, err)
		_, err = q.Job(ctx, "never")
		MustNotFound(t, err)
	})
	t.Run("a job's devices page by ID, filter by status, and show deleted devices", func(t *testing.T) {
		p, err := q.JobDevices(ctx, "stopped", "", projections.PageRequest{Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		want := []projections.JobDevice{
			{DeviceID: "d1", Name: "Device d1", Status: job.DevicePending, UpdatedAt: days(5)},
			{DeviceID: "d2", Name: "Device d2", Status: job.DeviceFailed, Error: "late", Deleted: true, UpdatedAt: days(1)},
		}
		if diff := cmp.Diff(want, p.Items); diff != "" {
			t.Errorf("first page (-want +got):\n%s", diff)
		}
		p, err = q.JobDevices(ctx, "stopped", "", projections.PageRequest{Limit: 2, Cursor: p.Next})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]projections.JobDevice{{DeviceID: "d3", Name: "Device d3", Status: job.DevicePending,
			UpdatedAt: days(5)}}, p.Items); diff != "" || p.Next != "" {
			t.Errorf("second page (-want +got):\n%s next %q", diff, p.Next)
		}
		for status, want := range map[job.DeviceStatus][]string{
			job.DevicePending: {"d1", "d2", "d4"}, job.DeviceSucceeded: {"d3"}, job.DeviceFailed: {},
		} {
			p, err := q.JobDevices(ctx, "running", status, projections.PageRequest{})
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, d := range p.Items {
				if d.Status != status {
					t.Errorf("device %s listed as %s has status %s", d.DeviceID, status, d.Status)
				}
				got = append(got, d.DeviceID)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s devices (-want +got):\n%s", status, diff)
			}
		}
		_, err = q.JobDevices(ctx, "old", "", projections.PageRequest{})
		MustNotFound(t, err)
	})

	t.Run("a late result after a stop moves counts, not the status", func(t *testing.T) {
		tok := MustAppendAt(t, es, "job-stopped", jobEvent{now, job.OperationSucceeded{JobID: "stopped", DeviceID: "d3"}})
		MustReach(t, r.Runner, tok)
		j, err := q.Job(ctx, "stopped")
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != job.StatusStopped || j.Counts != (projections.JobCounts{Total: 3, Succeeded: 1, Failed: 1, Pending: 1}) || !j.UpdatedAt.Equal(now) {
			t.Errorf("job after a late result: status %s, counts %+v, updated %v", j.Status, j.Counts, j.UpdatedAt)
		}
		exp := rdb.PExpireTime(ctx, projections.Prefix(root, "jobs", "1")+"job:stopped:devices:succeeded").Val()
		if want := now.Add(projections.JobRetention).UnixMilli(); exp.Milliseconds() != want {
			t.Errorf("succeeded set expires at %d ms, want %d (30 days after the late result)", exp.Milliseconds(), want)
		}
	})

	t.Run("a rebuild equals the live projection", func(t *testing.T) {
		tok := MustAppend(t, es, "device-d4", device.Deleted{DeviceID: "d4"})
		rebuilt := MustRunJobs(t, es, rdb, root, "2", func(c *projections.RunnerConfig) { c.BatchSize = 3 })
		MustReach(t, rebuilt.Runner, tok)
		MustReach(t, r.Runner, tok)
		want := MustDump(t, rdb, projections.Prefix(root, "jobs", "1"))
		got := MustDump(t, rdb, projections.Prefix(root, "jobs", "2"))
		if len(want) < 20 {
			keys := make([]string, 0, len(want))
			for k := range want {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Fatalf("the live projection has only %d keys: %v", len(want), keys)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rebuild differs from the live projection (-live +rebuild):\n%s", diff)
		}
	})
}
