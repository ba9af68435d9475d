package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

// delivery is one thing a subscription handed its handler.
type delivery struct {
	event      *eventstore.Recorded
	checkpoint *eventstore.Position
	caughtUp   bool
}

// subscription runs SubscribeAll in the background and collects what it
// delivers.
type subscription struct {
	got  chan delivery
	done chan error
	stop context.CancelFunc
}

func MustSubscribe(tb testing.TB, c *eventstore.Client, from eventstore.Position, f eventstore.Filter) *subscription {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{got: make(chan delivery, 1024), done: make(chan error, 1), stop: cancel}
	put := func(ctx context.Context, d delivery) error {
		select {
		case s.got <- d:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() {
		s.done <- c.SubscribeAll(ctx, from, f, eventstore.Handler{
			Event:      func(ctx context.Context, r eventstore.Recorded) error { return put(ctx, delivery{event: &r}) },
			Checkpoint: func(ctx context.Context, p eventstore.Position) error { return put(ctx, delivery{checkpoint: &p}) },
			CaughtUp:   func(ctx context.Context) error { return put(ctx, delivery{caughtUp: true}) },
		})
	}()
	tb.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// next waits (bounded) for the next delivery.
func (s *subscription) next(tb testing.TB) delivery {
	tb.Helper()
	select {
	case d := <-s.got:
		return d
	case err := <-s.done:
		tb.Fatalf("subscription ended: %v", err)
	case <-time.After(15 * time.Second):
		tb.Fatal("no delivery within 15s")
	}
	return delivery{}
}

// events waits for n events, skipping checkpoints, and reports whether it
// saw caught-up on the way.
func (s *subscription) events(tb testing.TB, n int) (evs []eventstore.Recorded, caughtUp bool) {
	tb.Helper()
	for len(evs) < n {
		d := s.next(tb)
		switch {
		case d.event != nil:
			evs = append(evs, *d.event)
		case d.caughtUp:
			caughtUp = true
		}
	}
	return evs, caughtUp
}

func (s *subscription) untilCaughtUp(tb testing.TB) (evs []eventstore.Recorded, checkpoints []eventstore.Position) {
	tb.Helper()
	for {
		d := s.next(tb)
		switch {
		case d.event != nil:
			evs = append(evs, *d.event)
		case d.checkpoint != nil:
			checkpoints = append(checkpoints, *d.checkpoint)
		case d.caughtUp:
			return evs, checkpoints
		}
	}
}

func streams(evs []eventstore.Recorded) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s@%d", e.Stream, e.Revision))
	}
	return out
}

func TestSubscribeAllCatchesUpThenGoesLive(t *testing.T) {
	c := MustClient(t)
	MustAppend(t, c, "job-1", eventstore.NoStream(), ev(1, thingRenamed{Name: "a"}), ev(2, thingRenamed{Name: "b"}))
	MustAppend(t, c, "job-2", eventstore.NoStream(), ev(3, thingRenamed{Name: "c"}))

	sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{StreamPrefixes: []string{"job-"}})
	history, _ := sub.untilCaughtUp(t)
	if diff := cmp.Diff([]string{"job-1@0", "job-1@1", "job-2@0"}, streams(history)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if history[0].Metadata.Actor != "tester" || history[0].Type != typeThingRenamed {
		t.Errorf("first event = %+v", history[0])
	}

	MustAppend(t, c, "job-1", eventstore.Exact(1), ev(4, thingRenamed{Name: "live"}))
	live, _ := sub.events(t, 1)
	if diff := cmp.Diff([]string{"job-1@2"}, streams(live)); diff != "" {
		t.Errorf("live (-want +got):\n%s", diff)
	}
}

func TestSubscribeAllFromAPositionIsExclusive(t *testing.T) {
	c := MustClient(t)
	first := MustAppend(t, c, "job-1", eventstore.NoStream(), ev(1, thingRenamed{Name: "a"}))
	MustAppend(t, c, "job-1", eventstore.Exact(0), ev(2, thingRenamed{Name: "b"}))

	sub := MustSubscribe(t, c, first.Position, eventstore.Filter{StreamPrefixes: []string{"job-"}})
	got, _ := sub.untilCaughtUp(t)
	if diff := cmp.Diff([]string{"job-1@1"}, streams(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSubscribeAllCheckpointsWhenNothingMatches(t *testing.T) {
	c := MustClient(t)
	batch := make([]eventstore.Event, 40)
	for i := range batch {
		batch[i] = ev(i, thingRenamed{Name: fmt.Sprint(i)})
	}
	res := MustAppend(t, c, "other-1", eventstore.NoStream(), batch...)

	sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{StreamPrefixes: []string{"job-"}})
	got, checkpoints := sub.untilCaughtUp(t)
	if len(got) != 0 {
		t.Errorf("got %d events, want none: %v", len(got), streams(got))
	}
	if len(checkpoints) == 0 {
		t.Fatal("no checkpoint before caught-up")
	}
	if last := checkpoints[len(checkpoints)-1]; last.Compare(res.Position) < 0 {
		t.Errorf("last checkpoint %v is before the head %v: a projector would rescan", last, res.Position)
	}
	for i := 1; i < len(checkpoints); i++ {
		if checkpoints[i].Compare(checkpoints[i-1]) < 0 {
			t.Errorf("checkpoints go backwards: %v", checkpoints)
		}
	}
}

func TestSubscribeAllFiltersByEventType(t *testing.T) {
	c := MustClient(t)
	MustAppend(t, c, "job-1", eventstore.NoStream(),
		ev(1, thingCreated{ThingID: "1"}), ev(2, thingRenamed{Name: "a"}))
	MustAppend(t, c, "device-1", eventstore.NoStream(), ev(3, thingRenamed{Name: "b"}))

	t.Run("type only", func(t *testing.T) {
		sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{EventTypePrefixes: []string{"ThingRen"}})
		got, _ := sub.untilCaughtUp(t)
		if diff := cmp.Diff([]string{"job-1@1", "device-1@0"}, streams(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("stream and type", func(t *testing.T) {
		sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{
			StreamPrefixes: []string{"job-"}, EventTypePrefixes: []string{"ThingRen"},
		})
		got, _ := sub.untilCaughtUp(t)
		if diff := cmp.Diff([]string{"job-1@1"}, streams(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestSubscribeAllUnfilteredDeliversEverything(t *testing.T) {
	c := MustClient(t)
	MustAppend(t, c, "a-1", eventstore.NoStream(), ev(1, thingRenamed{Name: "a"}))
	MustAppend(t, c, "b-1", eventstore.NoStream(), ev(2, thingRenamed{Name: "b"}))
	sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{})
	got, _ := sub.untilCaughtUp(t)
	if diff := cmp.Diff([]string{"a-1@0", "b-1@0"}, streams(got)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSubscribeAllEnds(t *testing.T) {
	t.Run("when ctx ends", func(t *testing.T) {
		c := MustClient(t)
		sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{})
		sub.untilCaughtUp(t)
		sub.stop()
		if err := waitDone(t, sub); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("with the handler's error", func(t *testing.T) {
		c := MustClient(t)
		MustAppend(t, c, "a-1", eventstore.NoStream(), ev(1, thingRenamed{Name: "a"}))
		boom := errors.New("projection failed")
		err := c.SubscribeAll(testContext(t), eventstore.Position{}, eventstore.Filter{}, eventstore.Handler{
			Event: func(context.Context, eventstore.Recorded) error { return boom },
		})
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want the handler's error", err)
		}
	})
	t.Run("when the store goes away", func(t *testing.T) {
		srv := eventstoretest.MustStartServer(t)
		c := eventstoretest.MustDial(t, srv.URL())
		sub := MustSubscribe(t, c, eventstore.Position{}, eventstore.Filter{})
		sub.untilCaughtUp(t)
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := waitDone(t, sub); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want a dropped subscription", err)
		}
	})
}

func waitDone(tb testing.TB, s *subscription) error {
	tb.Helper()
	for {
		select {
		case err := <-s.done:
			s.done <- err // for the cleanup
			return err
		case <-s.got:
		case <-time.After(15 * time.Second):
			tb.Fatal("subscription did not end within 15s")
		}
	}
}
