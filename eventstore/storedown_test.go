// The race detector reports the official client's own close of its
// connection channel while calls wait to send on it: that close is what
// releases them (a runtime panic that survive turns into an error), and
// it is what this test makes happen. The runtime orders a close and a
// blocked send safely; the report is about the library's design, so this
// test does not run under -race.

//go:build !race

package eventstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// TestConcurrentCallsWhileTheStoreIsDown: calls made at once while nothing
// answers all fail, none hangs and none panics. The official client ends
// its connection for good after a failed discovery; calls queued behind
// that discovery then wait on a connection nobody serves, and closing it
// (to replace it, or at Close) makes the official client panic in them
// ("send on closed channel", EventStore-Client-Go issue #187).
func TestConcurrentCallsWhileTheStoreIsDown(t *testing.T) {
	const url = "esdb://127.0.0.1:1?tls=false"
	t.Run("dialled", func(t *testing.T) {
		c, err := eventstore.Dial(url, eventstore.WithCodec(MustCodec(t)))
		if err != nil {
			t.Fatal(err)
		}
		callWhileDown(t, c)
	})
	t.Run("given to New", func(t *testing.T) {
		// Not replaced after the failed discovery (the caller owns it),
		// but its waiting calls are released all the same.
		conf, err := esdb.ParseConnectionString(url)
		if err != nil {
			t.Fatal(err)
		}
		es, err := esdb.NewClient(conf)
		if err != nil {
			t.Fatal(err)
		}
		callWhileDown(t, eventstore.New(es, eventstore.WithCodec(MustCodec(t))))
	})
}

// callWhileDown makes calls of every kind at once through c, whose store
// is down, and closes it: all must fail, none hang.
func callWhileDown(t *testing.T, c *eventstore.Client) {
	const callers, rounds = 24, 4
	var wg sync.WaitGroup
	var succeeded atomic.Int64
	for i := range callers {
		wg.Go(func() {
			for r := range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				var err error
				switch (i + r) % 4 {
				case 0:
					_, err = c.Append(ctx, "thing-x", eventstore.Any(), []eventstore.Event{ev(i*rounds+r, thingRenamed{Name: "x"})})
				case 1:
					err = c.ReadStream(ctx, "thing-x", 0, func(eventstore.Recorded) error { return nil })
				case 2:
					_, err = c.Head(ctx)
				case 3:
					err = c.SubscribeAll(ctx, eventstore.Position{}, eventstore.Filter{}, eventstore.Handler{})
				}
				cancel()
				if err == nil {
					succeeded.Add(1)
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("calls to a store that is down still running after 2 minutes")
	}
	if n := succeeded.Load(); n != 0 {
		t.Errorf("%d calls succeeded with no store", n)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close still running after a minute")
	}
}
