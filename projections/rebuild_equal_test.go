package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// mustAppendJobHistory appends jobs with every kind of history the jobs
// projection folds: results and failures (with an error text JSON must
// escape), a job stopped halfway with results arriving after the stop,
// jobs completed and failed, a job finished long enough ago to leave the
// list (its keys expire at once), one finished recently (its keys get an
// expiry), dispatches, and jobs of devices deleted meanwhile.
func mustAppendJobHistory(tb testing.TB, es *eventstore.Client) eventstore.Position {
	tb.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	devs := func(from, n int) []string {
		var ids []string
		for i := from; i < from+n; i++ {
			ids = append(ids, fmt.Sprintf("d%04d", i))
		}
		return ids
	}
	finished := func(id string, at time.Time, ids []string, end any) []jobEvent {
		evs := createJob(id, "Job "+id, at, ids...)
		evs = append(evs, jobEvent{at.Add(time.Second), job.Started{JobID: id}},
			jobEvent{at.Add(2 * time.Second), job.DevicesDispatched{JobID: id, DeviceIDs: ids}})
		for i, d := range ids {
			t := at.Add(time.Duration(3+i) * time.Second)
			if i%4 == 3 {
				evs = append(evs, jobEvent{t, job.OperationFailed{JobID: id, DeviceID: d, Error: `timeout "late" <5s> \ ünïcode`}})
			} else {
				evs = append(evs, jobEvent{t, job.OperationSucceeded{JobID: id, DeviceID: d}})
			}
		}
		return append(evs, jobEvent{at.Add(time.Minute), end})
	}
	MustAppendAt(tb, es, "job-old", finished("old", now.Add(-40*24*time.Hour), devs(0, 6), job.Completed{JobID: "old"})...)
	MustAppendAt(tb, es, "job-recent", finished("recent", now.Add(-29*24*time.Hour), devs(3, 9), job.Failed{JobID: "recent", Reason: "too many failures"})...)

	// Stopped halfway, then late results of devices already dispatched.
	at := now.Add(-2 * time.Hour)
	ids := devs(10, 20)
	evs := createJob("stopped", "Stopped", at, ids[:10]...)
	evs = append(evs, jobEvent{at, job.DevicesTargeted{JobID: "stopped", Devices: []job.TargetedDevice{}}})
	tds := []job.TargetedDevice{}
	for _, d := range ids[10:] {
		tds = append(tds, job.TargetedDevice{DeviceID: d, Name: "Device " + d})
	}
	evs = append(evs, jobEvent{at, job.DevicesTargeted{JobID: "stopped", Devices: tds}},
		jobEvent{at.Add(time.Second), job.Started{JobID: "stopped"}})
	for i, d := range ids[:8] {
		evs = append(evs, jobEvent{at.Add(time.Duration(2+i) * time.Second), job.OperationSucceeded{JobID: "stopped", DeviceID: d}})
	}
	evs = append(evs, jobEvent{at.Add(time.Minute), job.Stopped{JobID: "stopped", Reason: "operator"}})
	MustAppendAt(tb, es, "job-stopped", evs...)
	MustAppendAt(tb, es, "job-stopped",
		jobEvent{at.Add(2 * time.Minute), job.OperationFailed{JobID: "stopped", DeviceID: ids[8], Error: "late"}},
		jobEvent{at.Add(3 * time.Minute), job.OperationSucceeded{JobID: "stopped", DeviceID: ids[9]}},
		jobEvent{at.Add(4 * time.Minute), job.Completed{JobID: "stopped"}}) // ignored: finished already

	// Jobs interleaved, event by event, so their keys change in many
	// batches and chunks; some of their devices are deleted meanwhile.
	var tok eventstore.Position
	for j := range 4 {
		id := fmt.Sprintf("mix%d", j)
		MustAppendAt(tb, es, "job-"+id, createJob(id, "Mix "+id, now.Add(-time.Hour), devs(40+j*5, 12)...)...)
	}
	for step := range 14 {
		for j := range 4 {
			id := fmt.Sprintf("mix%d", j)
			t := now.Add(-time.Hour + time.Duration(step)*time.Second)
			var data any
			switch {
			case step == 0:
				data = job.Started{JobID: id}
			case step <= 12:
				d := fmt.Sprintf("d%04d", 40+j*5+step-1)
				if (step+j)%5 == 0 {
					data = job.OperationFailed{JobID: id, DeviceID: d, Error: "no"}
				} else {
					data = job.OperationSucceeded{JobID: id, DeviceID: d}
				}
			case j%2 == 0:
				data = job.Completed{JobID: id}
			default:
				data = job.Stopped{JobID: id, Reason: "done"}
			}
			tok = MustAppendAt(tb, es, "job-"+id, jobEvent{t, data})
		}
		if step%4 == 1 {
			d := fmt.Sprintf("d%04d", 41+step)
			MustAppend(tb, es, "device-"+d, device.Deleted{DeviceID: d})
		}
	}
	return tok
}

// TestRebuildEqualsLive rebuilds a history of device registrations,
// property changes and deletions, set definitions, redefinitions and
// deletions, a template deleted and published again, and jobs of every
// shape (mustAppendJobHistory), and checks the rebuilt versions equal, key
// by key (values, members, scores, fields and expiry times), what the live
// Runner built in batches of 5 events. Once with batches of 3 (commits in
// the middle of every kind of history), once with the default batch size
// (as much of the history as arrives in 50ms reduced into one commit).
func TestRebuildEqualsLive(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	live := MustRunJobs(t, es, rdb, root, "", func(c *projections.RunnerConfig) { c.BatchSize = 5 })
	mustAppendFleet(t, es, 150)
	MustReach(t, live.Runner, mustAppendJobHistory(t, es))
	// Re-registered after its deletion, and changed again.
	MustAppend(t, es, "device-d0004", device.Registered{DeviceID: "d0004", Name: "Back", TemplateID: "vending",
		Properties: map[string]any{"city": "Tacoma", "temp": 2.0}})
	MustReach(t, live.Runner, MustAppend(t, es, "device-d0004", device.PropertiesChanged{DeviceID: "d0004",
		Properties: map[string]any{"temp": 9.0}}))

	for _, c := range []struct {
		name  string
		batch int
	}{
		{"batches of 3", 3},
		{"default batches", 0},
	} {
		cfg := rebuildConfig(t, es, rdb, root)
		cfg.BatchSize, cfg.Grace = c.batch, time.Millisecond
		var compared int
		cfg.Switched = func(res projections.RebuildResult) {
			for _, p := range []string{projections.DevicesProjection, projections.JobsProjection} {
				want := MustDump(t, rdb, projections.Prefix(root, p, res.From[p]))
				got := MustDump(t, rdb, projections.Prefix(root, p, res.To[p]))
				if len(want) == 0 {
					t.Errorf("%s: live projection %s version %s is empty", c.name, p, res.From[p])
				}
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("%s: projection %s rebuilt as version %s differs from live version %s (-live +rebuilt):\n%s",
						c.name, p, res.To[p], res.From[p], d)
				}
				compared++
			}
		}
		if _, err := projections.Rebuild(context.Background(), cfg); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if compared != 2 {
			t.Fatalf("%s: compared %d projections at the switch, want 2", c.name, compared)
		}
	}
}
