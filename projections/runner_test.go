package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

func vendingTemplate(props ...string) device.TemplatePublished {
	t := device.TemplatePublished{TemplateID: "vending", Name: "Vending machine",
		Settings: []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}},
		Commands: []device.Capability{{Name: "reboot", Schema: device.SchemaObject}}}
	for _, p := range props {
		schema := device.SchemaString
		if p == "temp" {
			schema = device.SchemaNumber
		}
		t.Properties = append(t.Properties, device.Capability{Name: p, Schema: schema})
	}
	return t
}

func memberIDs(tb testing.TB, q *projections.Queries, setID string) []string {
	tb.Helper()
	ids := []string{}
	err := q.EachSetMember(context.Background(), setID, func(ds []projections.Member) error {
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

func TestRunnerKeepsDevicesAndMembershipCurrent(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	r := MustRun(t, es, rdb, root, "1")
	q := projections.NewQueries(rdb, root, time.Now)
	ctx := context.Background()

	MustAppend(t, es, "template-vending", vendingTemplate("city", "temp"))
	MustAppend(t, es, "device-d1", device.Registered{DeviceID: "d1", Name: "One", TemplateID: "vending",
		Properties: map[string]any{"city": "Seattle", "temp": 4.0}})
	MustAppend(t, es, "device-d2", device.Registered{DeviceID: "d2", Name: "Two", TemplateID: "vending",
		Properties: map[string]any{"city": "Portland", "temp": 4.0}})
	MustAppend(t, es, "device-d3", device.Registered{DeviceID: "d3", Name: "Three", TemplateID: "vending",
		Properties: map[string]any{"city": "Seattle", "temp": 12.0}})
	tok := MustAppend(t, es, "deviceset-cold-seattle", device.SetDefined{SetID: "cold-seattle", Name: "Cold in Seattle",
		TemplateID: "vending", Conditions: []device.Condition{
			{Property: "city", Op: device.OpEq, Value: "Seattle"}, {Property: "temp", Op: device.OpLt, Value: 8.0}}})
	MustReach(t, r.Runner, tok)

	if diff := cmp.Diff([]string{"d1"}, memberIDs(t, q, "cold-seattle")); diff != "" {
		t.Errorf("members after the set is defined (-want +got):\n%s", diff)
	}
	d1, err := q.Device(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	want := projections.Device{ID: "d1", Name: "One", TemplateID: "vending",
		Properties: map[string]any{"city": "Seattle", "temp": 4.0}, UpdatedAt: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
	if diff := cmp.Diff(want, d1); diff != "" {
		t.Errorf("device d1 (-want +got):\n%s", diff)
	}

	t.Run("a device joins and leaves as its properties change", func(t *testing.T) {
		MustAppend(t, es, "device-d3", device.PropertiesChanged{DeviceID: "d3", Properties: map[string]any{"city": "Seattle", "temp": 5.0}})
		tok := MustAppend(t, es, "device-d1", device.PropertiesChanged{DeviceID: "d1", Properties: map[string]any{"city": "Tacoma", "temp": 5.0}})
		MustReach(t, r.Runner, tok)
		if diff := cmp.Diff([]string{"d3"}, memberIDs(t, q, "cold-seattle")); diff != "" {
			t.Errorf("members (-want +got):\n%s", diff)
		}
	})
	t.Run("a deleted device is never a member and leaves every list", func(t *testing.T) {
		tok := MustAppend(t, es, "device-d3", device.Deleted{DeviceID: "d3"})
		MustReach(t, r.Runner, tok)
		if diff := cmp.Diff([]string{}, memberIDs(t, q, "cold-seattle")); diff != "" {
			t.Errorf("members (-want +got):\n%s", diff)
		}
		_, err := q.Device(ctx, "d3")
		MustNotFound(t, err)
		for name, list := range map[string]func() (projections.Page[projections.Device], error){
			"devices": func() (projections.Page[projections.Device], error) { return q.Devices(ctx, projections.PageRequest{}) },
			"by template": func() (projections.Page[projections.Device], error) {
				return q.TemplateDevices(ctx, "vending", projections.PageRequest{})
			},
		} {
			p, err := list()
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range p.Items {
				ids = append(ids, d.ID)
			}
			if diff := cmp.Diff([]string{"d1", "d2"}, ids); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
		}
	})
	t.Run("deleting the template breaks the set and empties it; publishing it again mends it", func(t *testing.T) {
		MustAppend(t, es, "device-d2", device.PropertiesChanged{DeviceID: "d2", Properties: map[string]any{"city": "Seattle", "temp": 1.0}})
		tok := MustAppend(t, es, "template-vending", device.TemplateDeleted{TemplateID: "vending"})
		MustReach(t, r.Runner, tok)
		set, err := q.DeviceSet(ctx, "cold-seattle")
		if err != nil {
			t.Fatal(err)
		}
		if !set.Broken || set.BrokenReason == "" {
			t.Errorf("set after its template was deleted: broken %v, reason %q; want broken with a reason", set.Broken, set.BrokenReason)
		}
		if diff := cmp.Diff([]string{}, memberIDs(t, q, "cold-seattle")); diff != "" {
			t.Errorf("members of the broken set (-want +got):\n%s", diff)
		}
		_, err = q.Template(ctx, "vending")
		MustNotFound(t, err)

		tok = MustAppend(t, es, "template-vending", vendingTemplate("city", "temp"))
		MustReach(t, r.Runner, tok)
		if set, err = q.DeviceSet(ctx, "cold-seattle"); err != nil || set.Broken {
			t.Errorf("set after its template came back: %+v, %v; want not broken", set, err)
		}
		if diff := cmp.Diff([]string{"d2"}, memberIDs(t, q, "cold-seattle")); diff != "" {
			t.Errorf("members of the mended set (-want +got):\n%s", diff)
		}
	})
	t.Run("a template that loses a condition's property breaks the set", func(t *testing.T) {
		tok := MustAppend(t, es, "template-vending", vendingTemplate("city"))
		MustReach(t, r.Runner, tok)
		set, err := q.DeviceSet(ctx, "cold-seattle")
		if err != nil {
			t.Fatal(err)
		}
		if !set.Broken {
			t.Errorf("set whose template lost property temp: %+v, want broken", set)
		}
		if diff := cmp.Diff([]string{}, memberIDs(t, q, "cold-seattle")); diff != "" {
			t.Errorf("members (-want +got):\n%s", diff)
		}
	})
	t.Run("a deleted set is not found", func(t *testing.T) {
		tok := MustAppend(t, es, "deviceset-cold-seattle", device.SetDeleted{SetID: "cold-seattle"})
		MustReach(t, r.Runner, tok)
		_, err := q.DeviceSet(ctx, "cold-seattle")
		MustNotFound(t, err)
		_, err = q.SetMembers(ctx, "cold-seattle", projections.PageRequest{})
		MustNotFound(t, err)
	})
	if st := r.Status(); !st.CaughtUp || st.Err != nil {
		t.Errorf("status %+v: want caught up, no error", st)
	}
}

// TestFirstCaughtUpWaitsForTheHistory: a Runner's FirstCaughtUp is open
// until it has applied what the log held when it started.
func TestFirstCaughtUpWaitsForTheHistory(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	MustAppend(t, es, "template-vending", vendingTemplate("city"))
	tok := MustAppend(t, es, "device-d1", device.Registered{DeviceID: "d1", Name: "One", TemplateID: "vending"})
	w, err := projections.NewWriter(rdb, zapTestLogger(t), root, projections.Target{Projector: projections.NewDevicesProjector(0)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := projections.NewRunner(projections.RunnerConfig{Store: es, Codec: eventstore.NewCatalogCodec(), Writer: w, Logger: zapTestLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.FirstCaughtUp():
		t.Fatal("FirstCaughtUp closed before the Runner ran")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-r.FirstCaughtUp():
	case <-time.After(20 * time.Second):
		t.Fatal("FirstCaughtUp not closed within 20 s")
	}
	if p := r.Position(); p.Compare(tok) < 0 {
		t.Errorf("caught up at %s, before the last event of the history %s", p, tok)
	}
}

func TestRunnerResumesFromItsCheckpoint(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	MustAppend(t, es, "template-vending", vendingTemplate("city", "temp"))
	var tok eventstore.Position
	for i := range 10 {
		tok = MustAppend(t, es, fmt.Sprintf("device-d%d", i), device.Registered{DeviceID: fmt.Sprintf("d%d", i),
			Name: "n", TemplateID: "vending", Properties: map[string]any{"city": "Seattle"}})
	}
	r1 := MustRun(t, es, rdb, root, "1")
	MustReach(t, r1.Runner, tok)
	if got := r1.Status().EventsApplied; got != 11 {
		t.Errorf("first runner applied %d events, want 11", got)
	}
	r1.stop()

	tok = MustAppend(t, es, "device-d0", device.Deleted{DeviceID: "d0"})
	r2 := MustRun(t, es, rdb, root, "1")
	MustReach(t, r2.Runner, tok)
	if got := r2.Status().EventsApplied; got != 1 {
		t.Errorf("second runner applied %d events, want only the 1 appended after the first stopped", got)
	}
	p, err := projections.NewQueries(rdb, root, time.Now).Devices(context.Background(), projections.PageRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 9 {
		t.Errorf("%d devices listed, want 9", len(p.Items))
	}
}

// crashingProjector is the devices projector, except that its Apply
// number crashAt ends the runner's context in the middle of the batch, as
// a crash would: before the MULTI/EXEC.
type crashingProjector struct {
	*projections.DevicesProjector
	calls   int
	crashAt int
	crash   context.CancelFunc
}

func (p *crashingProjector) Apply(ctx context.Context, r projections.Reader, evs []projections.Event, ops []projections.Op) ([]projections.Op, error) {
	p.calls++
	out, err := p.DevicesProjector.Apply(ctx, r, evs, ops)
	if p.calls == p.crashAt {
		p.crash()
		return out, context.Canceled
	}
	return out, err
}

// mustAppendFleet appends a history that exercises every event type: n
// devices over two templates, property changes, set definitions mid-way,
// deletions, a template deleted and published again. It returns the last
// position.
func mustAppendFleet(tb testing.TB, es *eventstore.Client, n int) eventstore.Position {
	tb.Helper()
	MustAppend(tb, es, "template-vending", vendingTemplate("city", "temp"))
	MustAppend(tb, es, "template-kiosk", device.TemplatePublished{TemplateID: "kiosk", Name: "Kiosk",
		Properties: []device.Capability{{Name: "city", Schema: device.SchemaString}}})
	cities := []string{"Seattle", "Portland", "Tacoma"}
	for i := range n {
		id := fmt.Sprintf("d%04d", i)
		tmpl := []string{"vending", "kiosk"}[i%2]
		MustAppend(tb, es, "device-"+id, device.Registered{DeviceID: id, Name: "Device " + id, TemplateID: tmpl,
			Properties: map[string]any{"city": cities[i%3], "temp": float64(i % 10)}})
		switch i {
		case n / 4:
			MustAppend(tb, es, "deviceset-cold", device.SetDefined{SetID: "cold", Name: "Cold", TemplateID: "vending",
				Conditions: []device.Condition{{Property: "temp", Op: device.OpLt, Value: 5.0}}})
			MustAppend(tb, es, "deviceset-seattle", device.SetDefined{SetID: "seattle", Name: "Seattle", TemplateID: "kiosk",
				Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}})
		case n / 2:
			MustAppend(tb, es, "template-kiosk", device.TemplateDeleted{TemplateID: "kiosk"})
		case 3 * n / 4:
			MustAppend(tb, es, "template-kiosk", device.TemplatePublished{TemplateID: "kiosk", Name: "Kiosk 2",
				Properties: []device.Capability{{Name: "city", Schema: device.SchemaString}}})
			MustAppend(tb, es, "deviceset-cold", device.SetDefined{SetID: "cold", Name: "Colder", TemplateID: "vending",
				Conditions: []device.Condition{{Property: "temp", Op: device.OpLt, Value: 3.0}}})
		}
		if i%3 == 0 && i > 0 {
			prev := fmt.Sprintf("d%04d", i-1)
			MustAppend(tb, es, "device-"+prev, device.PropertiesChanged{DeviceID: prev,
				Properties: map[string]any{"city": cities[(i+1)%3], "temp": float64((i * 7) % 10)}})
		}
		if i%7 == 0 && i > 0 {
			MustAppend(tb, es, fmt.Sprintf("device-d%04d", i-3), device.Deleted{DeviceID: fmt.Sprintf("d%04d", i-3)})
		}
	}
	return MustAppend(tb, es, "deviceset-gone", device.SetDefined{SetID: "gone", Name: "Gone", TemplateID: "vending"},
		device.SetDeleted{SetID: "gone"})
}

func TestRunnerCrashBetweenBatchesEndsLikeARebuild(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	tok := mustAppendFleet(t, es, 300)
	small := func(c *projections.RunnerConfig) { c.BatchSize = 37 }

	for _, crashAt := range []int{3, 7} {
		p := &crashingProjector{DevicesProjector: projections.NewDevicesProjector(0), crashAt: crashAt}
		ctx, cancel := context.WithCancel(context.Background())
		p.crash = cancel
		log := zapTestLogger(t)
		w, err := projections.NewWriter(rdb, log, root, projections.Target{Projector: p, Version: "1"})
		if err != nil {
			t.Fatal(err)
		}
		r, err := projections.NewRunner(projections.RunnerConfig{Store: es, Codec: eventstore.NewCatalogCodec(),
			Writer: w, Logger: log, BatchSize: 37})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if r.Position().Compare(tok) >= 0 {
			t.Fatalf("crash at batch %d: the runner reached the end before crashing", crashAt)
		}
	}
	live := MustRun(t, es, rdb, root, "1", small)
	MustReach(t, live.Runner, tok)
	rebuilt := MustRun(t, es, rdb, root, "2")
	MustReach(t, rebuilt.Runner, tok)

	want := MustDump(t, rdb, projections.Prefix(root, "devices", "2"))
	got := MustDump(t, rdb, projections.Prefix(root, "devices", "1"))
	if len(want) < 200 {
		t.Fatalf("the rebuild has only %d keys", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("projection after crashes differs from a rebuild (-rebuild +live):\n%s", diff)
	}
	if v := rdb.Get(context.Background(), projections.ActiveKey(root, "devices")).Val(); v != "1" {
		t.Errorf("active version %q, want the first one written, 1", v)
	}
}

func TestTwoRunnersOnOneRedisEndLikeARebuild(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	small := func(c *projections.RunnerConfig) { c.BatchSize = 16 }
	a := MustRun(t, es, rdb, root, "1", small)
	b := MustRun(t, es, rdb, root, "1", small)
	// Losing a race to the other runner's commit is not a failure: the
	// loser reopens at once, and Status (so /readyz) never reports it.
	stop := make(chan struct{})
	raced := make(chan error, 1)
	go func() {
		defer close(raced)
		for {
			for _, r := range []*projections.Runner{a.Runner, b.Runner} {
				if err := r.Status().Err; errors.Is(err, projections.ErrCheckpointMoved) {
					raced <- err
					return
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond): // sampling interval, not a wait for a condition
			}
		}
	}()
	tok := mustAppendFleet(t, es, 200)
	MustReach(t, a.Runner, tok)
	MustReach(t, b.Runner, tok)
	close(stop)
	if err := <-raced; err != nil {
		t.Errorf("a runner reported losing a race as a failure: %v", err)
	}
	rebuilt := MustRun(t, es, rdb, root, "2")
	MustReach(t, rebuilt.Runner, tok)
	if diff := cmp.Diff(MustDump(t, rdb, projections.Prefix(root, "devices", "2")), MustDump(t, rdb, projections.Prefix(root, "devices", "1"))); diff != "" {
		t.Errorf("projection written by two runners differs from a rebuild (-rebuild +live):\n%s", diff)
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	first := MustAppend(t, es, "template-vending", vendingTemplate("city"))
	r := MustRun(t, es, rdb, root, "1")
	MustReach(t, r.Runner, first)

	t.Run("a token already applied returns at once", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // even with a context already over
		if err := r.WaitFor(ctx, first); err != nil {
			t.Errorf("WaitFor(applied token) = %v, want nil", err)
		}
	})
	t.Run("a token not yet in the log waits until the context ends", func(t *testing.T) {
		ahead := eventstore.Position{Commit: first.Commit + 1<<40, Prepare: first.Prepare + 1<<40}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := r.WaitFor(ctx, ahead); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitFor(future token) = %v, want DeadlineExceeded", err)
		}
	})
	t.Run("a waiter is released when its event is applied", func(t *testing.T) {
		// Append and wait at once: the waiter starts before the event is
		// projected (or just after: either way it must return nil).
		tok := MustAppend(t, es, "device-d1", device.Registered{DeviceID: "d1", Name: "n", TemplateID: "vending"})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.WaitFor(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if _, err := projections.NewQueries(rdb, root, time.Now).Device(ctx, "d1"); err != nil {
			t.Errorf("read after WaitFor: %v, want the device (read-your-writes)", err)
		}
	})
}

func TestRunnerSurfacesFailuresInStatus(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	// A wrong-type key where the projector keeps its template list makes
	// every batch fail until it is removed.
	key := projections.Prefix(root, "devices", "1") + "templates"
	if err := rdb.Set(context.Background(), key, "not a sorted set", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tok := MustAppend(t, es, "template-vending", vendingTemplate("city"))
	r := MustRun(t, es, rdb, root, "1")
	deadline := time.Now().Add(20 * time.Second)
	for r.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("no error in status %+v", r.Status())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	if st := r.Status(); st.CaughtUp {
		t.Errorf("status %+v: caught up while failing", st)
	}
	if err := rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
	MustReach(t, r.Runner, tok)
	deadline = time.Now().Add(20 * time.Second)
	for r.Err() != nil || !r.Status().CaughtUp {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v after recovery: want caught up, no error", r.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSetMembersOfDevicesNotInMemory: a set defined or redefined over
// devices that the projector does not hold in memory (a restarted
// projection) gets its members from the read models, together with the
// devices that the same batch deletes, moves to another template, changes
// or registers before the set's event.
func TestSetMembersOfDevicesNotInMemory(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	other := vendingTemplate("city")
	other.TemplateID = "other"
	MustAppend(t, es, "template-vending", vendingTemplate("city"))
	MustAppend(t, es, "template-other", other)
	city := func(i int) string {
		if i%2 == 0 {
			return "Seattle"
		}
		return "Paris"
	}
	for i := range 40 {
		id := fmt.Sprintf("d%02d", i)
		MustAppend(t, es, "device-"+id, device.Registered{DeviceID: id, Name: "n", TemplateID: "vending", Properties: map[string]any{"city": city(i)}})
	}
	inSeattle := device.Condition{Property: "city", Op: device.OpEq, Value: "Seattle"}
	tok := MustAppend(t, es, "deviceset-a", device.SetDefined{SetID: "a", Name: "A", TemplateID: "vending", Conditions: []device.Condition{inSeattle}})
	first := MustRun(t, es, rdb, root, "1")
	MustReach(t, first.Runner, tok)
	first.stop()

	// One batch, applied by a projector that holds no device.
	ctx := context.Background()
	prefix := projections.Prefix(root, projections.DevicesProjection, "1")
	r := projections.NewReader(rdb, prefix)
	p := projections.NewDevicesProjector(0)
	if err := p.Load(ctx, r); err != nil {
		t.Fatal(err)
	}
	batch := []any{
		device.Deleted{DeviceID: "d02"},
		device.Registered{DeviceID: "d04", Name: "n", TemplateID: "other", Properties: map[string]any{"city": "Seattle"}},
		device.PropertiesChanged{DeviceID: "d01", Properties: map[string]any{"city": "Seattle"}},
		device.Registered{DeviceID: "d90", Name: "n", TemplateID: "vending", Properties: map[string]any{"city": "Seattle"}},
		device.SetDefined{SetID: "b", Name: "B", TemplateID: "vending", Conditions: []device.Condition{inSeattle}},
		device.SetDefined{SetID: "a", Name: "A", TemplateID: "vending", Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Paris"}}},
	}
	events := make([]projections.Event, len(batch))
	for i, d := range batch {
		events[i] = projections.Event{Data: d, Metadata: eventstore.Metadata{OccurredAt: time.Date(2026, 11, 2, 10, 0, i, 0, time.UTC)}}
	}
	ops, err := p.Apply(ctx, r, events, nil)
	if err != nil {
		t.Fatal(err)
	}
	pipe := rdb.TxPipeline()
	projections.QueuePlanned(ctx, pipe, prefix, ops)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	members := func(setID string) []string { // as stored: the queries also drop deleted devices
		ids, err := rdb.ZRange(ctx, prefix+projections.SetMembersKey(setID), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	var seattle, paris []string
	for i := range 40 {
		id := fmt.Sprintf("d%02d", i)
		switch {
		case id == "d02" || id == "d04":
		case i%2 == 0 || id == "d01":
			seattle = append(seattle, id)
		default:
			paris = append(paris, id)
		}
	}
	seattle = append(seattle, "d90")
	slices.Sort(seattle)
	if diff := cmp.Diff(seattle, members("b")); diff != "" {
		t.Errorf("members of b, city Seattle (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(paris, members("a")); diff != "" {
		t.Errorf("members of a, redefined to city Paris (-want +got):\n%s", diff)
	}
}

// TestBatchesAreBoundedByBytes: a catch-up over fat events (a job's
// targeting events carry a thousand devices each) is cut into batches of
// at most BatchBytes of event data, not BatchSize events: one MULTI/EXEC
// of millions of commands would outlast the Redis client's read timeout.
func TestBatchesAreBoundedByBytes(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	MustAppend(t, es, "template-vending", vendingTemplate("note"))
	var tok eventstore.Position
	const n = 20
	for i := range n {
		id := fmt.Sprintf("d%02d", i)
		tok = MustAppend(t, es, "device-"+id, device.Registered{DeviceID: id, Name: "n", TemplateID: "vending",
			Properties: map[string]any{"note": strings.Repeat("x", 600)}})
	}
	r := MustRun(t, es, rdb, root, "1", func(c *projections.RunnerConfig) {
		c.BatchBytes = 1000
		c.MaxDelay = time.Minute // only the bytes bound cuts the catch-up
	})
	MustReach(t, r.Runner, tok)
	if st := r.Status(); st.Batches < n/2 || st.EventsApplied != n+1 {
		t.Errorf("%d events of over 600 bytes applied in %d batches of at most 1000 bytes; want all %d in at least %d",
			st.EventsApplied, st.Batches, n+1, n/2)
	}
}

// TestIdleRunnerNoticesRedisLosingWrites: Redis restarted from an older
// copy of itself (or emptied) while a Runner had nothing to apply. The
// Runner notices without a new event, warns once, applies the log again
// from the checkpoint Redis has, and meanwhile does not claim the position
// it had reached (consistency waits would pass on writes Redis lost).
func TestIdleRunnerNoticesRedisLosingWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		older bool // restored from a copy taken before d2's registration; else emptied
	}{{"restored from an older copy", true}, {"emptied", false}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			es := MustStore(t)
			rdb, root := MustRedis(t)
			core, logs := observer.New(zap.WarnLevel)
			r := MustRun(t, es, rdb, root, "", func(cfg *projections.RunnerConfig) {
				cfg.Logger = zap.New(core)
				cfg.ActivePoll = 20 * time.Millisecond
			})
			q := projections.NewQueries(rdb, root, time.Now)
			MustAppend(t, es, "template-vending", vendingTemplate("city"))
			tok1 := MustAppend(t, es, "device-d1", device.Registered{DeviceID: "d1", Name: "One", TemplateID: "vending"})
			MustReach(t, r.Runner, tok1)
			select {
			case <-r.FirstCaughtUp():
			case <-time.After(20 * time.Second):
				t.Fatal("FirstCaughtUp not closed 20 s after the Runner applied the whole log")
			}
			copyAt1 := mustSnapshot(t, rdb, root)
			tok2 := MustAppend(t, es, "device-d2", device.Registered{DeviceID: "d2", Name: "Two", TemplateID: "vending"})
			MustReach(t, r.Runner, tok2)

			MustDeleteKeys(t, rdb, root+":*")
			if c.older {
				mustRestore(t, rdb, copyAt1)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, err1 := q.Device(ctx, "d1")
				_, err2 := q.Device(ctx, "d2")
				if err1 == nil && err2 == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the read models did not get d1 and d2 back without a new event (d1: %v, d2: %v; runner at %s)", err1, err2, r.Position())
				}
				time.Sleep(10 * time.Millisecond)
			}
			MustReach(t, r.Runner, tok2)
			if n := logs.FilterMessageSnippet("Redis has lost read-model writes").Len(); n != 1 {
				t.Errorf("%d warnings that Redis lost writes, want 1 (logs: %v)", n, logs.All())
			}
		})
	}
}

// mustSnapshot copies every key under root with DUMP, as a Redis backup
// would hold them.
func mustSnapshot(tb testing.TB, rdb *redis.Client, root string) map[string]string {
	tb.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, root+":*", 1000).Iterator()
	for iter.Next(ctx) {
		v, err := rdb.Dump(ctx, iter.Val()).Result()
		if err != nil {
			tb.Fatal(err)
		}
		out[iter.Val()] = v
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) == 0 {
		tb.Fatal("nothing to snapshot under " + root)
	}
	return out
}

// mustRestore writes back the keys of a mustSnapshot.
func mustRestore(tb testing.TB, rdb *redis.Client, snap map[string]string) {
	tb.Helper()
	for k, v := range snap {
		if err := rdb.Restore(context.Background(), k, 0, v).Err(); err != nil {
			tb.Fatal(err)
		}
	}
}
