package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// rebuildConfig is a RebuildConfig of both projections under root with a
// short grace period.
func rebuildConfig(tb testing.TB, es *eventstore.Client, rdb redis.UniversalClient, root string, ps ...projections.Projector) projections.RebuildConfig {
	if len(ps) == 0 {
		ps = []projections.Projector{projections.NewDevicesProjector(0), projections.NewJobsProjector()}
	}
	return projections.RebuildConfig{Store: es, Codec: eventstore.NewCatalogCodec(), Redis: rdb, Root: root,
		Projectors: ps, Logger: zapTestLogger(tb), Grace: 1500 * time.Millisecond, ProgressEvery: 10 * time.Millisecond}
}

// mustVerify runs Verify on both projections and returns the drift.
func mustVerify(tb testing.TB, es *eventstore.Client, rdb redis.UniversalClient, root string) []projections.Drift {
	tb.Helper()
	ds, err := projections.Verify(context.Background(), projections.VerifyConfig{Store: es, Codec: eventstore.NewCatalogCodec(),
		Redis: rdb, Root: root, Logger: zapTestLogger(tb),
		Projectors: []projections.Projector{projections.NewDevicesProjector(0), projections.NewJobsProjector()}})
	if err != nil {
		tb.Fatal(err)
	}
	return ds
}

func mustAppendJobs(tb testing.TB, es *eventstore.Client, n int) eventstore.Position {
	tb.Helper()
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	var tok eventstore.Position
	for i := range n {
		id := fmt.Sprintf("j%02d", i)
		evs := createJob(id, "Job "+id, at.Add(time.Duration(i)*time.Second), "d0001", "d0002", "d0003")
		evs = append(evs, jobEvent{at.Add(time.Duration(i) * time.Second), job.OperationSucceeded{JobID: id, DeviceID: "d0001"}})
		if i%2 == 0 {
			evs = append(evs, jobEvent{at.Add(time.Duration(i) * time.Second), job.Stopped{JobID: id, Reason: "enough"}})
		}
		tok = MustAppendAt(tb, es, "job-"+id, evs...)
	}
	return tok
}

func TestRebuildWhileLiveServes(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	// Never idle-polls: it must learn of the switch from its commits.
	live := MustRunJobs(t, es, rdb, root, "", func(c *projections.RunnerConfig) { c.BatchSize, c.ActivePoll = 32, time.Hour })
	q := projections.NewQueries(rdb, root, time.Now, projections.WithVersions(live.Version), projections.WithApplied(live.Position))
	mustAppendFleet(t, es, 200)
	MustReach(t, live.Runner, mustAppendJobs(t, es, 10))
	ctx := context.Background()

	// Commands and queries while the rebuild runs: every write is read
	// back after its token, every query succeeds.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes, reads atomic.Int64
	errs := make(chan error, 100)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("n%04d", i)
			tok := MustAppend(t, es, "device-"+id, device.Registered{DeviceID: id, Name: "New " + id, TemplateID: "vending",
				Properties: map[string]any{"city": "Seattle", "temp": 1.0}})
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := live.WaitFor(wctx, tok)
			cancel()
			if err == nil {
				_, err = q.Device(ctx, id)
			}
			if err != nil {
				errs <- fmt.Errorf("device %s after its write: %w", id, err)
				return
			}
			writes.Add(1)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := q.Device(ctx, "d0001"); err != nil {
				errs <- fmt.Errorf("query device: %w", err)
				return
			}
			if _, err := q.Job(ctx, "j01"); err != nil {
				errs <- fmt.Errorf("query job: %w", err)
				return
			}
			reads.Add(1)
		}
	}()

	cfg := rebuildConfig(t, es, rdb, root)
	cfg.BatchSize = 16
	var switched atomic.Bool
	cfg.Switched = func(projections.RebuildResult) { switched.Store(true) }
	var progressed atomic.Int64
	cfg.Progress = func(p projections.RebuildProgress) {
		if !p.Head.IsZero() {
			progressed.Add(1)
		}
	}
	res, err := projections.Rebuild(ctx, cfg)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !switched.Load() || progressed.Load() == 0 {
		t.Errorf("switched %v, progress reported %d times", switched.Load(), progressed.Load())
	}
	if want := map[string]string{"devices": "2", "jobs": "2"}; !cmp.Equal(res.To, want) || res.From["devices"] != "1" {
		t.Errorf("rebuilt from %v to %v, want to %v", res.From, res.To, want)
	}
	if writes.Load() == 0 || reads.Load() == 0 {
		t.Errorf("%d writes and %d reads during the rebuild: the test exercised nothing", writes.Load(), reads.Load())
	}
	for _, name := range []string{"devices", "jobs"} {
		if v := rdb.Get(ctx, projections.ActiveKey(root, name)).Val(); v != "2" {
			t.Errorf("active %s version %q, want 2", name, v)
		}
		if n := len(MustDump(t, rdb, projections.Prefix(root, name, "1"))); n != 0 {
			t.Errorf("%d keys of the old %s version left after the grace period", n, name)
		}
	}
	if res.Deleted == 0 {
		t.Error("the rebuild deleted no old keys")
	}

	// The live runner follows the switch: an event appended now is
	// applied to version 2.
	tok := MustAppend(t, es, "device-after", device.Registered{DeviceID: "after", Name: "After", TemplateID: "vending"})
	MustReach(t, live.Runner, tok)
	if v := live.Version("devices"); v != "2" {
		t.Errorf("live runner writes devices version %q, want 2", v)
	}
	if _, err := q.Device(ctx, "after"); err != nil {
		t.Errorf("device appended after the switch: %v", err)
	}
	// No event lost or applied twice: the projection is what a fresh
	// one makes of the log.
	fresh := MustRunJobs(t, es, rdb, root, "fresh")
	MustReach(t, fresh.Runner, tok)
	for _, name := range []string{"devices", "jobs"} {
		want := MustDump(t, rdb, projections.Prefix(root, name, "fresh"))
		if diff := cmp.Diff(want, MustDump(t, rdb, projections.Prefix(root, name, "2"))); diff != "" {
			t.Errorf("%s after the rebuild differs from a fresh projection (-fresh +rebuilt):\n%s", name, diff)
		}
	}
	for _, d := range mustVerify(t, es, rdb, root) {
		if d.Drifted() || d.Keys == 0 {
			t.Errorf("verify %s: %d keys, drift %+v", d.Projection, d.Keys, d)
		}
	}
}

func TestRebuildInterruptedThenRerun(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	live := MustRunJobs(t, es, rdb, root, "")
	mustAppendFleet(t, es, 300)
	tok := mustAppendJobs(t, es, 5)
	MustReach(t, live.Runner, tok)
	ctx := context.Background()

	// Interrupted in the middle of its fourth batch, as Ctrl-C or a kill
	// would: before that batch's MULTI/EXEC.
	crashCtx, crash := context.WithCancel(ctx)
	p := &crashingProjector{DevicesProjector: projections.NewDevicesProjector(0), crashAt: 4, crash: crash}
	cfg := rebuildConfig(t, es, rdb, root, p, projections.NewJobsProjector())
	cfg.BatchSize = 16
	if _, err := projections.Rebuild(crashCtx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rebuild: %v, want context.Canceled", err)
	}
	if v := rdb.Get(ctx, projections.ActiveKey(root, "devices")).Val(); v != "1" {
		t.Fatalf("active devices version %q after an interrupted rebuild, want 1", v)
	}
	if v := rdb.Get(ctx, projections.RebuildKey(root, "devices")).Val(); v != "2" {
		t.Fatalf("rebuild key %q, want 2 (the version in progress)", v)
	}
	cp, err := eventstore.ParsePosition(rdb.Get(ctx, projections.CheckpointKey(root, "devices", "2")).Val())
	if err != nil || cp.IsZero() || cp.Compare(tok) >= 0 {
		t.Fatalf("interrupted rebuild's checkpoint %v (%v): want part of the way to %v", cp, err, tok)
	}

	res, err := projections.Rebuild(ctx, rebuildConfig(t, es, rdb, root))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed["devices"] || res.To["devices"] != "2" || res.To["jobs"] != "2" {
		t.Errorf("rerun: resumed %v, to %v; want devices version 2 resumed", res.Resumed, res.To)
	}
	if n, _ := rdb.Exists(ctx, projections.RebuildKey(root, "devices")).Result(); n != 0 {
		t.Error("rebuild key left after the switch")
	}
	// Idle, the live runner noticed the switch by itself, within the
	// grace period.
	if v := live.Version("jobs"); v != "2" {
		t.Errorf("idle live runner writes jobs version %q after the rebuild, want 2", v)
	}
	tok = MustAppend(t, es, "device-after", device.Registered{DeviceID: "after", Name: "After", TemplateID: "vending"})
	MustReach(t, live.Runner, tok)
	for _, d := range mustVerify(t, es, rdb, root) {
		if d.Drifted() || d.Keys == 0 || d.Version != "2" {
			t.Errorf("verify %s: %+v", d.Projection, d)
		}
	}
}

func TestVerifyReportsDrift(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	live := MustRunJobs(t, es, rdb, root, "")
	mustAppendFleet(t, es, 50)
	MustReach(t, live.Runner, mustAppendJobs(t, es, 3))
	// No event follows: the live runner leaves the keys tampered with.
	ctx := context.Background()
	for _, d := range mustVerify(t, es, rdb, root) {
		if d.Drifted() || d.Keys == 0 {
			t.Fatalf("verify %s before tampering: %+v", d.Projection, d)
		}
	}

	dev := projections.Prefix(root, "devices", "1")
	rdb.Set(ctx, dev+"device:d0001", `{"id":"d0001"}`, 0)
	rdb.Del(ctx, dev+"device:d0002")
	rdb.Set(ctx, dev+"bogus", "x", 0)
	rdb.PExpireAt(ctx, projections.Prefix(root, "jobs", "1")+"job:j01", time.Now().Add(time.Hour))
	// Differences far into long values: a hash field after the job's JSON
	// document, a member at the end of the sorted set of every device.
	rdb.HSet(ctx, projections.Prefix(root, "jobs", "1")+"job:j02", "status", "failed")
	rdb.ZAdd(ctx, dev+"devices", redis.Z{Member: "d9999"})

	ds := mustVerify(t, es, rdb, root)
	byName := map[string]projections.Drift{}
	for _, d := range ds {
		byName[d.Projection] = d
	}
	devs := byName["devices"]
	if devs.Differ != 2 || devs.OnlyLive != 1 || devs.OnlyRebuilt != 1 {
		t.Errorf("devices drift: %d differ, %d only live, %d only rebuilt; want 2, 1, 1", devs.Differ, devs.OnlyLive, devs.OnlyRebuilt)
	}
	keys := map[string]projections.KeyDrift{}
	for _, s := range devs.Samples {
		keys[s.Key] = s
	}
	if s := keys["device:d0002"]; s.Live != "(missing)" {
		t.Errorf("deleted key's drift %+v", s)
	}
	if _, ok := keys["bogus"]; !ok {
		t.Errorf("added key not reported: %+v", devs.Samples)
	}
	if s, ok := keys["device:d0001"]; !ok || s.Live != `string "{\"id\":\"d0001\"}"` {
		t.Errorf("changed key's drift %+v", s)
	}
	// The sample of a long value shows the difference, cut around it.
	if s := keys["devices"]; !strings.HasPrefix(s.Rebuilt, "...") || !strings.Contains(s.Live, "d9999") || strings.Contains(s.Rebuilt, "d9999") || len(s.Live) > 310 {
		t.Errorf("a member added at the end of a long sorted set: %+v", s)
	}
	j := byName["jobs"]
	if j.Differ != 2 || len(j.Samples) != 2 {
		t.Fatalf("jobs drift (an expiry added, a field changed): %+v", j)
	}
	jobs := map[string]projections.KeyDrift{}
	for _, s := range j.Samples {
		jobs[s.Key] = s
	}
	if s := jobs["job:j01"]; !strings.HasPrefix(s.Live, "hash expires at ") || s.Rebuilt != "hash" || len(s.Fields) != 0 {
		t.Errorf("a hash's expiry added: %+v", s)
	}
	want := projections.KeyDrift{Key: "job:j02", Fields: []projections.FieldDrift{{Field: "status", Live: `"failed"`, Rebuilt: `"stopped"`}}}
	if diff := cmp.Diff(want, jobs["job:j02"]); diff != "" {
		t.Errorf("a hash field changed (-want +got):\n%s", diff)
	}
	// The scratch versions are gone.
	if n := len(MustDump(t, rdb, root+":devices:verify-")); n != 0 {
		t.Errorf("%d scratch keys left", n)
	}
}

// TestRebuildOneProjection rebuilds the devices projection alone while
// the log ends with job events, which its subscription never delivers:
// it still switches, at the live checkpoint.
func TestRebuildOneProjection(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	live := MustRunJobs(t, es, rdb, root, "")
	mustAppendFleet(t, es, 40)
	tok := mustAppendJobs(t, es, 20)
	MustReach(t, live.Runner, tok)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := rebuildConfig(t, es, rdb, root, projections.NewDevicesProjector(0))
	// Once the new version has caught up, a job event moves the live
	// checkpoint past anything the devices subscription delivers.
	cfg.Progress = func(p projections.RebuildProgress) {
		if p.Position.Compare(tok) >= 0 && tok == p.Position {
			tok = MustAppendAt(t, es, "job-late", createJob("late", "Late", time.Now().UTC().Truncate(time.Second), "d0001")...)
			MustReach(t, live.Runner, tok)
		}
	}
	res, err := projections.Rebuild(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.To["devices"] != "2" || len(res.To) != 1 {
		t.Errorf("rebuilt %v, want devices only, to version 2", res.To)
	}
	if v := rdb.Get(ctx, projections.ActiveKey(root, "jobs")).Val(); v != "1" {
		t.Errorf("active jobs version %q, want it left at 1", v)
	}
	cp := rdb.Get(ctx, projections.CheckpointKey(root, "devices", "2")).Val()
	if cp != tok.String() {
		t.Errorf("new devices checkpoint %s, want the live one, %s", cp, tok)
	}
	for _, d := range mustVerify(t, es, rdb, root) {
		if d.Drifted() {
			t.Errorf("verify %s: %+v", d.Projection, d)
		}
	}
}
