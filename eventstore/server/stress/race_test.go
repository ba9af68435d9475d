package stress_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// TestConcurrentExpectedRevisionOneWinnerPerRevision has several writers,
// on several client connections, race for each revision of one stream with
// the same exact expectation: exactly one must win each revision and every
// loser must get a wrong-expected-version error, never a second write.
func TestConcurrentExpectedRevisionOneWinnerPerRevision(t *testing.T) {
	writers, rounds := 8, 40
	switch {
	case longRun():
		rounds = 400
	case testing.Short() || raceEnabled:
		rounds = 15
	}
	srv := MustStartServer(t, server.Options{})
	clients := []*esdb.Client{MustClient(t, srv.Addr()), MustClient(t, srv.Addr()), MustClient(t, srv.Addr())}
	const stream = "race-one-winner"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var winners []uuid.UUID
	for round := range rounds {
		var expected esdb.ExpectedRevision = esdb.NoStream{}
		if round > 0 {
			expected = esdb.Revision(uint64(round - 1))
		}
		ids := make([]uuid.UUID, writers)
		errs := make([]error, writers)
		results := make([]*esdb.WriteResult, writers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for w := range writers {
			ev := newEvent(fmt.Sprintf("w%d", w), round)
			ids[w] = ev.EventID
			wg.Go(func() {
				<-start
				results[w], errs[w] = clients[w%len(clients)].AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, ev)
			})
		}
		close(start)
		wg.Wait()

		won := -1
		for w := range writers {
			switch {
			case errs[w] == nil:
				if won >= 0 {
					t.Fatalf("round %d: writers %d and %d both won with expected %v", round, won, w, expected)
				}
				won = w
				if results[w].NextExpectedVersion != uint64(round) {
					t.Errorf("round %d: winner's next expected version %d, want %d", round, results[w].NextExpectedVersion, round)
				}
			case errorCode(errs[w]) != esdb.ErrorCodeWrongExpectedVersion:
				t.Fatalf("round %d: writer %d lost with %v (code %d), want ErrorCodeWrongExpectedVersion", round, w, errs[w], errorCode(errs[w]))
			}
		}
		if won < 0 {
			t.Fatalf("round %d: nobody won revision %d", round, round)
		}
		winners = append(winners, ids[won])
	}

	got, err := readStream(ctx, clients[0], stream)
	if err != nil {
		t.Fatal(err)
	}
	gotIDs := make([]uuid.UUID, len(got))
	for i, ev := range got {
		gotIDs[i] = ev.ID
		if ev.Revision != uint64(i) {
			t.Errorf("event %d has revision %d", i, ev.Revision)
		}
	}
	if diff := cmp.Diff(winners, gotIDs); diff != "" {
		t.Errorf("stream content is not exactly the winners, in order (-winners +stream):\n%s", diff)
	}
}

// raceWriters appends to a few streams (one of them target) from several
// goroutines until the returned stop is called; they use Any, single and
// multi-event appends, so commits interleave across streams. stop waits for
// them; it is idempotent and also runs at cleanup, so a test that fails early
// leaves no writer behind.
func raceWriters(t *testing.T, c *esdb.Client, n int, target string, appended *atomic.Int64) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			ctx := context.Background()
			for seq := 0; ; seq++ {
				select {
				case <-done:
					return
				default:
				}
				stream := fmt.Sprintf("race-other-%d", w)
				if seq%2 == 0 {
					stream = target
				}
				batch := 1 + seq%5
				events := make([]esdb.EventData, batch)
				for i := range events {
					events[i] = newEvent(fmt.Sprintf("w%d", w), seq*10+i)
				}
				if _, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{}, events...); err != nil {
					t.Errorf("writer %d: append to %s: %v", w, stream, err)
					return
				}
				appended.Add(int64(batch))
			}
		})
	}
	var once sync.Once
	stop = func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// subResult is what one subscription received.
type subResult struct {
	events   []storedEvent
	caughtUp bool
	err      error
}

// collect receives from sub until an event with the until ID arrives (then it
// returns) or the subscription drops.
func collect(sub *esdb.Subscription, until uuid.UUID, caughtUp chan<- struct{}) subResult {
	var r subResult
	for {
		m := sub.Recv()
		switch {
		case m.SubscriptionDropped != nil:
			r.err = m.SubscriptionDropped.Error
			return r
		case m.CaughtUp != nil:
			if !r.caughtUp && caughtUp != nil {
				close(caughtUp)
			}
			r.caughtUp = true
		case m.EventAppeared != nil:
			ev := toStored(m.EventAppeared)
			r.events = append(r.events, ev)
			if ev.ID == until {
				return r
			}
		}
	}
}

// checkSuffix checks that got is exactly the tail of want that starts at its
// first element: every event after the subscription's start, once, in order.
func checkSuffix(t *testing.T, name string, got, want []storedEvent) {
	t.Helper()
	if len(got) == 0 {
		t.Errorf("%s: received nothing", name)
		return
	}
	start := -1
	for i, ev := range want {
		if ev.ID == got[0].ID {
			start = i
			break
		}
	}
	if start < 0 {
		t.Errorf("%s: first event %s is not in the log", name, got[0].ID)
		return
	}
	if diff := eventsDiff(want[start:], got); diff != "" {
		t.Errorf("%s: received events are not the log from index %d on: %s", name, start, diff)
	}
}

// TestSubscriptionsDuringAppendsSeeEveryEventOnce starts subscriptions to
// $all and to a stream, from the end and from a known point, while writers
// append; each must see every event after its start exactly once, in order,
// with no gap, across the catch-up to live switch.
func TestSubscriptionsDuringAppendsSeeEveryEventOnce(t *testing.T) {
	srv := MustStartServer(t, server.Options{})
	wc := MustClient(t, srv.Addr())
	sc := MustClient(t, srv.Addr())
	const target = "race-target"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var appended atomic.Int64
	stopWriters := raceWriters(t, wc, 4, target, &appended)
	waitFor(t, "writers to get going", 20*time.Second, func() bool { return appended.Load() >= 200 || t.Failed() })

	// A known starting point taken from a live ack: subscriptions from it are
	// exclusive, so they must begin exactly after it.
	pivot, err := wc.AppendToStream(ctx, target, esdb.AppendToStreamOptions{}, newEvent("pivot", 0))
	if err != nil {
		t.Fatal(err)
	}

	type sub struct {
		name       string
		stream     string // "" for $all
		from       string // "end" or "pivot"
		ackedFirst uint64 // for "end": position of an event acked before subscribing
		caughtUp   chan struct{}
		marker     *esdb.WriteResult // appended after CaughtUp: must be seen
		result     subResult
	}
	subs := []*sub{
		{name: "$all from end", from: "end"},
		{name: "$all from pivot position", from: "pivot"},
		{name: target + " from end", stream: target, from: "end"},
		{name: target + " from pivot revision", stream: target, from: "pivot"},
	}
	// The end marker is made up front (appended only once the writers have
	// stopped) so that each collector knows the last event it must see.
	endEvent := newEvent("end", 0)
	var subWG sync.WaitGroup
	for _, s := range subs {
		var sb *esdb.Subscription
		var err error
		s.caughtUp = make(chan struct{})
		if s.from == "end" {
			res, err := wc.AppendToStream(ctx, target, esdb.AppendToStreamOptions{}, newEvent("before-"+s.name, 0))
			if err != nil {
				t.Fatal(err)
			}
			s.ackedFirst = res.CommitPosition
		}
		switch {
		case s.stream == "" && s.from == "end":
			sb, err = sc.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.End{}})
		case s.stream == "":
			sb, err = sc.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Position{Commit: pivot.CommitPosition, Prepare: pivot.PreparePosition}})
		case s.from == "end":
			sb, err = sc.SubscribeToStream(ctx, s.stream, esdb.SubscribeToStreamOptions{From: esdb.End{}})
		default:
			sb, err = sc.SubscribeToStream(ctx, s.stream, esdb.SubscribeToStreamOptions{From: esdb.Revision(pivot.NextExpectedVersion)})
		}
		if err != nil {
			t.Fatalf("%s: subscribe: %v", s.name, err)
		}
		t.Cleanup(func() { _ = sb.Close() })
		subWG.Go(func() { s.result = collect(sb, endEvent.EventID, s.caughtUp) })
	}

	// Wait for every subscription to be live, then append a marker each
	// must see, while the writers still run.
	for _, s := range subs {
		select {
		case <-s.caughtUp:
		case <-ctx.Done():
			t.Fatalf("%s: no CaughtUp", s.name)
		}
		res, err := wc.AppendToStream(ctx, target, esdb.AppendToStreamOptions{}, newEvent("live-"+s.name, 0))
		if err != nil {
			t.Fatal(err)
		}
		s.marker = res
	}
	live := appended.Load()
	waitFor(t, "more appends after the subscriptions went live", 20*time.Second, func() bool { return appended.Load() >= live+500 || t.Failed() })
	stopWriters()
	if _, err := wc.AppendToStream(ctx, target, esdb.AppendToStreamOptions{}, endEvent); err != nil {
		t.Fatalf("append end marker: %v", err)
	}
	subWG.Wait()

	all, err := readAll(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := readStream(ctx, sc, target)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.result.err != nil {
			t.Errorf("%s: dropped after %d events: %v", s.name, len(s.result.events), s.result.err)
			continue
		}
		want := all
		if s.stream != "" {
			want = stream
		}
		checkSuffix(t, s.name, s.result.events, want)
		got := s.result.events
		if len(got) == 0 {
			continue
		}
		first := got[0]
		switch {
		case s.from == "pivot" && s.stream == "":
			// Exclusive start: the first event is the one right after the pivot.
			if i := indexOfCommit(all, pivot.CommitPosition); i < 0 || i+1 >= len(all) || first.ID != all[i+1].ID {
				t.Errorf("%s: first event at %d, want the one right after position %d", s.name, first.Commit, pivot.CommitPosition)
			}
		case s.from == "pivot":
			if first.Revision != pivot.NextExpectedVersion+1 {
				t.Errorf("%s: first revision %d, want %d", s.name, first.Revision, pivot.NextExpectedVersion+1)
			}
		default:
			if first.Commit <= s.ackedFirst {
				t.Errorf("%s: from End delivered position %d, acknowledged before it subscribed (%d)", s.name, first.Commit, s.ackedFirst)
			}
			if first.Commit > s.marker.CommitPosition {
				t.Errorf("%s: first event at %d, after the marker appended once it was live (%d): events lost", s.name, first.Commit, s.marker.CommitPosition)
			}
		}
	}
}

func indexOfCommit(evs []storedEvent, commit uint64) int {
	for i, ev := range evs {
		if ev.Commit == commit {
			return i
		}
	}
	return -1
}

// TestFiftySubscribersWhileWritersRun opens 50 $all subscriptions, half from
// the start and half from the end, while writers append; each must receive
// its part of the log exactly.
func TestFiftySubscribersWhileWritersRun(t *testing.T) {
	const subscribers = 50
	target := 3000
	switch {
	case longRun():
		target = 30000
	case testing.Short() || raceEnabled:
		target = 1000
	}
	srv := MustStartServer(t, server.Options{})
	wc := MustClient(t, srv.Addr())
	clients := []*esdb.Client{MustClient(t, srv.Addr()), MustClient(t, srv.Addr()), MustClient(t, srv.Addr())}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var appended atomic.Int64
	stopWriters := raceWriters(t, wc, 4, "race-fifty", &appended)

	endEvent := newEvent("end", 0)
	results := make([]subResult, subscribers)
	var subWG sync.WaitGroup
	for i := range subscribers {
		var from esdb.AllPosition = esdb.Start{}
		if i%2 == 1 {
			from = esdb.End{}
		}
		sb, err := clients[i%len(clients)].SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: from})
		if err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
		t.Cleanup(func() { _ = sb.Close() })
		subWG.Go(func() { results[i] = collect(sb, endEvent.EventID, nil) })
	}
	waitFor(t, fmt.Sprintf("%d events appended", target), 45*time.Second, func() bool { return appended.Load() >= int64(target) || t.Failed() })
	stopWriters()
	if _, err := wc.AppendToStream(ctx, "race-fifty", esdb.AppendToStreamOptions{}, endEvent); err != nil {
		t.Fatal(err)
	}
	subWG.Wait()

	all, err := readAll(ctx, wc)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		name := fmt.Sprintf("subscriber %d", i)
		if r.err != nil {
			t.Errorf("%s: dropped after %d events: %v", name, len(r.events), r.err)
			continue
		}
		if !r.caughtUp {
			t.Errorf("%s: never sent CaughtUp", name)
		}
		if i%2 == 0 {
			if diff := eventsDiff(all, r.events); diff != "" {
				t.Errorf("%s (from start): received events differ from $all: %s", name, diff)
			}
			continue
		}
		checkSuffix(t, name, r.events, all)
	}
}
