package main_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// progress is read models at a position; reach, when set, is called by
// WaitFor for a position beyond it (the projections applying the log) and
// says whether they got there; without it they never do. first is closed
// once they have caught up since the start; nil means they have.
type progress struct {
	at    eventstore.Position
	reach func() bool
	first chan struct{}
}

func (p *progress) Position() eventstore.Position { return p.at }

func (p *progress) WaitFor(ctx context.Context, pos eventstore.Position) error {
	if pos.Compare(p.at) <= 0 {
		return nil
	}
	if p.reach != nil && p.reach() {
		p.at = pos
		return nil
	}
	<-ctx.Done()
	return ctx.Err()
}

func (p *progress) FirstCaughtUp() <-chan struct{} {
	if p.first == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.first
}

// TestSimLookupOfDevicesNotReadYet: the simulated fleet's lookup in the
// read models answers a device they have, calls one they do not have
// "not found" once they have read its job's targeting, waits for them
// when they have not, and when they still have not after its wait (or a
// delivery's deadline comes first), does not answer that device this time
// (the dispatcher resends) rather than fail it or hold the dispatcher.
func TestSimLookupOfDevicesNotReadYet(t *testing.T) {
	url, root := MustRedisURL(t)
	rdb := MustRedisClient(t, url)
	ctx := context.Background()
	prefix := projections.Prefix(root, projections.DevicesProjection, projections.DefaultVersion)
	put := func(id, doc string) {
		if err := rdb.Set(ctx, prefix+projections.DeviceKey(id), doc, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	put("known", `{"properties":{"simFail":"fan stuck"}}`)
	read := eventstore.Position{Commit: 100, Prepare: 100}  // what the read models have applied
	later := eventstore.Position{Commit: 200, Prepare: 200} // a job targeted after it
	in := func(d time.Duration) time.Time { return time.Now().Add(d) }
	deliveries := func(deadline time.Time) []dispatch.Delivery {
		return []dispatch.Delivery{
			{DeviceID: "known", Targeted: later, Deadline: deadline},
			{DeviceID: "deleted", Targeted: read, Deadline: deadline}, // its job's targeting is read: gone
			{DeviceID: "new", Targeted: later, Deadline: deadline},    // not read yet
		}
	}
	lookup := func(p sim.Properties, ds []dispatch.Delivery) []map[string]any {
		t.Helper()
		type result struct {
			props []map[string]any
			err   error
		}
		done := make(chan result, 1)
		go func() {
			props, err := p.Properties(ctx, ds)
			done <- result{props, err}
		}()
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatal(r.err)
			}
			return r.props
		case <-time.After(time.Minute):
			t.Fatal("the lookup is still waiting after a minute")
			return nil
		}
	}
	fail := map[string]any{sim.FailProperty: "fan stuck"}
	notFound := map[string]any{sim.FailProperty: main.DeviceNotFound}
	offline := map[string]any{sim.OfflineProperty: true}

	t.Run("never read within the wait", func(t *testing.T) {
		p := main.NewDeviceProperties(rdb, root, &progress{at: read}, 50*time.Millisecond)
		if diff := cmp.Diff([]map[string]any{fail, notFound, offline}, lookup(p, deliveries(in(time.Hour)))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("a deadline before the wait ends it", func(t *testing.T) {
		p := main.NewDeviceProperties(rdb, root, &progress{at: read}, time.Hour)
		ds := append(deliveries(in(time.Hour)), dispatch.Delivery{DeviceID: "new-too", Targeted: later, Deadline: in(time.Hour)})
		ds[2].Deadline = in(-time.Second) // the earliest deadline bounds the wait, not the latest
		if diff := cmp.Diff([]map[string]any{fail, notFound, offline, offline}, lookup(p, ds)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("read during the wait", func(t *testing.T) {
		p := main.NewDeviceProperties(rdb, root, &progress{at: read, reach: func() bool {
			put("new", `{"properties":{"simFail":"read late"}}`)
			return true
		}}, time.Hour)
		want := []map[string]any{fail, notFound, {sim.FailProperty: "read late"}}
		if diff := cmp.Diff(want, lookup(p, deliveries(in(time.Hour)))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	// A device deleted before this process started, whose delete its
	// read models have not applied yet: they still have it, and have not
	// caught up since the start.
	stale := []dispatch.Delivery{{DeviceID: "known", Targeted: read, Deadline: in(time.Hour)}}
	t.Run("a delete before the start, applied while catching up", func(t *testing.T) {
		first := make(chan struct{})
		go func() {
			if err := rdb.Del(ctx, prefix+projections.DeviceKey("known")).Err(); err != nil {
				t.Error(err)
			}
			close(first) // the projections caught up: the delete is applied
		}()
		p := main.NewDeviceProperties(rdb, root, &progress{at: read, first: first}, time.Hour)
		if diff := cmp.Diff([]map[string]any{notFound}, lookup(p, stale)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		put("known", `{"properties":{"simFail":"fan stuck"}}`)
	})
	t.Run("a delete before the start, not caught up within the wait", func(t *testing.T) {
		p := main.NewDeviceProperties(rdb, root, &progress{at: read, first: make(chan struct{})}, 50*time.Millisecond)
		if diff := cmp.Diff([]map[string]any{offline}, lookup(p, stale)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}
