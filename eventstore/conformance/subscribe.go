package conformance

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func streamSubscriptionBehaviours() []behaviour {
	return []behaviour{
		{"from start delivers existing events, then caught-up, then live events", subStreamFromStart},
		{"from a revision is exclusive", subStreamFromRevision},
		{"from end delivers caught-up first and only new events", subStreamFromEnd},
		{"a missing stream's subscription receives its first event later", subStreamMissing},
		{"catch-up hands over to live with no gap and no duplicate while a writer races it", subStreamRace},
		{"a slow subscriber still gets every event in order", subStreamSlow},
		{"a subscription is dropped with stream deleted when its stream is tombstoned", subStreamTombstoned},
		{"subscribing to a tombstoned stream fails with stream deleted", subStreamToTombstoned},
		{"a soft-deleted stream's subscription continues with the recreated stream", subStreamSoftDeleted},
		{"many subscriptions to one stream on one connection all get every event", subStreamMany},
	}
}

func allSubscriptionBehaviours() []behaviour {
	return []behaviour{
		{"from start begins with the first event of $all", subAllFromStart},
		{"from a position is exclusive and goes live after caught-up", subAllFromPosition},
		{"from end delivers caught-up and then only new events", subAllFromEnd},
		{"catch-up hands over to live with no gap and no duplicate while a writer races it", subAllRace},
		{"a slow subscriber still gets every event in order", subAllSlow},
		{"filter by stream name prefix", filterCase(filterStreamPrefix)},
		{"filter by stream name regex", filterCase(filterStreamRegex)},
		{"filter by event type prefix", filterCase(filterTypePrefix)},
		{"filter by event type regex", filterCase(filterTypeRegex)},
		{"filter excluding system events", filterCase(filterExcludeSystem)},
		{"resuming a filtered subscription from its last checkpoint misses and repeats nothing", subAllResumeFromCheckpoint},
		{"a filter with an invalid regex is refused", subAllInvalidRegex},
	}
}

func subStreamFromStart(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-start")
	old := testEvents("SubTested", 3)
	mustAppend(t, c, stream, esdb.NoStream{}, old...)
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	caught := sub.untilCaughtUp(t, nil)
	if diff := cmp.Diff(ids(old), recordedIDs(caught)); diff != "" {
		t.Fatalf("events before caught-up (-want +got):\n%s", diff)
	}
	live := testEvents("SubTested", 2)
	mustAppend(t, c, stream, esdb.Revision(2), live...)
	got := sub.events(t, 2, nil)
	if diff := cmp.Diff(ids(live), recordedIDs(got)); diff != "" {
		t.Errorf("live events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(revRange(3, 4), revisions(got)); diff != "" {
		t.Errorf("live revisions (-want +got):\n%s", diff)
	}
	all := append(caught, got...)
	for _, ev := range all {
		if ev.OriginalEvent().Position.Commit == 0 || ev.Commit == nil {
			t.Fatalf("subscription event %d has position %+v (commit %v); want its $all position", ev.OriginalEvent().EventNumber, ev.OriginalEvent().Position, ev.Commit)
		}
	}
	requireIncreasingPositions(t, all, "stream subscription")
}

func subStreamFromRevision(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-revision")
	events := testEvents("SubTested", 5)
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Revision(2)})
	caught := sub.untilCaughtUp(t, nil)
	if diff := cmp.Diff(revRange(3, 4), revisions(caught)); diff != "" {
		t.Errorf("from revision 2: revisions before caught-up (-want +got):\n%s", diff)
	}
	// From the last revision: nothing to catch up, the next append is live.
	sub2 := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Revision(4)})
	if caught := sub2.untilCaughtUp(t, nil); len(caught) != 0 {
		t.Errorf("from the last revision 4: got revisions %v before caught-up, want none", revisions(caught))
	}
	next := testEvent("SubTested", 5)
	mustAppend(t, c, stream, esdb.Revision(4), next)
	got := sub2.events(t, 1, nil)
	if got[0].OriginalEvent().EventID != next.EventID || got[0].OriginalEvent().EventNumber != 5 {
		t.Errorf("live event: got %d@%s, want revision 5", got[0].OriginalEvent().EventNumber, got[0].OriginalEvent().StreamID)
	}
}

func subStreamFromEnd(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-end")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("SubTested", 3)...)
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.End{}})
	if caught := sub.untilCaughtUp(t, nil); len(caught) != 0 {
		t.Fatalf("from end: got revisions %v before caught-up, want none", revisions(caught))
	}
	next := testEvent("SubTested", 3)
	mustAppend(t, c, stream, esdb.Revision(2), next)
	got := sub.events(t, 1, nil)
	if got[0].OriginalEvent().EventID != next.EventID || got[0].OriginalEvent().EventNumber != 3 {
		t.Errorf("from end: first event is revision %d, want the new event at revision 3", got[0].OriginalEvent().EventNumber)
	}
}

func subStreamMissing(t *testing.T, _ *suite, c *esdb.Client) {
	for _, from := range []esdb.StreamPosition{esdb.Start{}, esdb.End{}} {
		stream := newStream("sub-missing")
		sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: from})
		if caught := sub.untilCaughtUp(t, nil); len(caught) != 0 {
			t.Fatalf("missing stream from %#v: got %d events before caught-up", from, len(caught))
		}
		first := testEvent("SubTested", 0)
		mustAppend(t, c, stream, esdb.NoStream{}, first)
		got := sub.events(t, 1, nil)
		if got[0].OriginalEvent().EventID != first.EventID || got[0].OriginalEvent().EventNumber != 0 {
			t.Errorf("missing stream from %#v: first event %d@%s, want the new event at revision 0", from, got[0].OriginalEvent().EventNumber, got[0].OriginalEvent().StreamID)
		}
	}
}

// raceSize is how many events the catch-up/live race test writes.
func raceSize() int {
	if testing.Short() {
		return 500
	}
	return 2000
}

// raceWriter appends events to stream in small batches with exact expected
// revisions. After a quarter of them it closes started and waits for
// subscribed to close, so that the rest is written while the subscription
// is catching up: the switch from catch-up to live happens under writes,
// however fast the server is. It reports its outcome on the returned channel.
func raceWriter(t *testing.T, c *esdb.Client, stream string, events []esdb.EventData, started chan<- struct{}, subscribed <-chan struct{}) <-chan error {
	done := make(chan error, 1)
	go func() {
		const batch = 5
		paused := false
		for i := 0; i < len(events); i += batch {
			var exp esdb.ExpectedRevision = esdb.Revision(uint64(i - 1))
			if i == 0 {
				exp = esdb.NoStream{}
			}
			end := min(i+batch, len(events))
			if _, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events[i:end]...); err != nil {
				if !paused {
					close(started)
				}
				done <- fmt.Errorf("writer: append events %d..%d: %w", i, end-1, err)
				return
			}
			if !paused && end >= len(events)/4 {
				paused = true
				close(started)
				select {
				case <-subscribed:
				case <-t.Context().Done():
					done <- t.Context().Err()
					return
				}
			}
		}
		done <- nil
	}()
	return done
}

func subStreamRace(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("sub-race")
	events := testEvents("RaceTested", raceSize())
	started, subscribed := make(chan struct{}), make(chan struct{})
	writerDone := raceWriter(t, s.connect(t), stream, events, started, subscribed)
	<-started
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	close(subscribed)
	got := sub.events(t, len(events), nil)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	requireExactlyOnceInOrder(t, events, got)
}

// requireExactlyOnceInOrder fails t unless got is events, in order, each
// once, at revisions 0.. .
func requireExactlyOnceInOrder(t *testing.T, events []esdb.EventData, got []*esdb.ResolvedEvent) {
	t.Helper()
	for i, ev := range got {
		r := ev.OriginalEvent()
		if r.EventNumber != uint64(i) || r.EventID != events[i].EventID {
			t.Fatalf("event %d of %d received is revision %d (ID %v), want revision %d (ID %v): gap, duplicate or reordering (previous: %v)",
				i, len(events), r.EventNumber, r.EventID, i, events[i].EventID, revisions(got[max(0, i-3):i]))
		}
	}
}

// slowSize is how many events the slow-subscriber tests write while their
// subscriber does not read.
func slowSize() int {
	if testing.Short() {
		return 1000
	}
	return 5000
}

// appendInBatches appends events to stream 100 at a time (exact revisions),
// starting at revision first.
func appendInBatches(t *testing.T, c *esdb.Client, stream string, first uint64, events []esdb.EventData) {
	t.Helper()
	const batch = 100
	for i := 0; i < len(events); i += batch {
		var exp esdb.ExpectedRevision = esdb.Revision(first + uint64(i) - 1)
		if first+uint64(i) == 0 {
			exp = esdb.NoStream{}
		}
		mustAppend(t, c, stream, exp, events[i:min(i+batch, len(events))]...)
	}
}

// slowEvents returns n events with 1 KiB of data each, so that the backlog
// exceeds gRPC's flow-control windows and the server really has to wait.
func slowEvents(n int) []esdb.EventData {
	events := testEvents("SlowTested", n)
	pad := strings.Repeat("x", 1024)
	for i := range events {
		events[i].Data = []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad))
	}
	return events
}

func subStreamSlow(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-slow")
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	sub.untilCaughtUp(t, nil)
	events := slowEvents(slowSize())
	// The subscriber reads nothing while all of this is written.
	appendInBatches(t, c, stream, 0, events)
	got := sub.events(t, len(events), nil)
	requireExactlyOnceInOrder(t, events, got)
}

// requireStreamDeletedDrop receives from sub until it is dropped, allowing
// the "$streamDeleted" event before the drop, and fails t unless the drop
// carries the stream-deleted status (FailedPrecondition; the client passes
// the raw gRPC error through and does not map it).
func requireStreamDeletedDrop(t *testing.T, sub *subscription, stream string) {
	t.Helper()
	for {
		m := sub.next(t)
		switch {
		case m.SubscriptionDropped != nil:
			err := m.SubscriptionDropped.Error
			if code := status.Code(err); code != codes.FailedPrecondition {
				t.Fatalf("subscription to tombstoned %s dropped with %v (gRPC code %v), want the stream-deleted status FailedPrecondition", stream, err, code)
			}
			return
		case m.EventAppeared != nil:
			if r := m.EventAppeared.OriginalEvent(); r.EventType != "$streamDeleted" {
				t.Fatalf("subscription to tombstoned %s: got %s, want only the $streamDeleted event and then the drop", stream, kind(m))
			}
		}
	}
}

func subStreamTombstoned(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-tombstoned")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("SubTested", 2)...)
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if caught := sub.untilCaughtUp(t, nil); len(caught) != 2 {
		t.Fatalf("got %d events before caught-up, want 2", len(caught))
	}
	if _, err := c.TombstoneStream(t.Context(), stream, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatalf("tombstone %s: %v", stream, err)
	}
	requireStreamDeletedDrop(t, sub, stream)
}

func subStreamToTombstoned(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-to-tombstoned")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("SubTested", 2)...)
	if _, err := c.TombstoneStream(t.Context(), stream, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatalf("tombstone %s: %v", stream, err)
	}
	for _, from := range []esdb.StreamPosition{esdb.Start{}, esdb.End{}} {
		raw, err := c.SubscribeToStream(t.Context(), stream, esdb.SubscribeToStreamOptions{From: from})
		if err != nil {
			// Failing before confirmation goes through the client's error
			// mapping: it must say stream deleted.
			requireCode(t, err, esdb.ErrorCodeStreamDeleted, fmt.Sprintf("subscribe to tombstoned %s from %#v", stream, from))
			continue
		}
		requireStreamDeletedDrop(t, pump(t, raw), stream)
	}
}

func subStreamSoftDeleted(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("sub-soft-deleted")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("SubTested", 2)...)
	if _, err := c.DeleteStream(t.Context(), stream, esdb.DeleteStreamOptions{}); err != nil {
		t.Fatalf("delete %s: %v", stream, err)
	}
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.End{}})
	sub.untilCaughtUp(t, nil)
	next := testEvent("SubTested", 2)
	mustAppend(t, c, stream, esdb.Any{}, next)
	got := sub.events(t, 1, nil)
	if r := got[0].OriginalEvent(); r.EventID != next.EventID || r.EventNumber != 2 {
		t.Errorf("after recreation: got event %d (ID %v), want the new event at revision 2", r.EventNumber, r.EventID)
	}
}

func subAllFromStart(t *testing.T, _ *suite, c *esdb.Client) {
	mustAppend(t, c, newStream("suball-start"), esdb.NoStream{}, testEvent("SubTested", 0))
	var first *esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 1, func(ev *esdb.ResolvedEvent) bool {
		first = ev
		return false
	})
	if first == nil {
		t.Fatal("$all is empty after an append")
	}
	sub := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: esdb.Start{}})
	got := sub.events(t, 1, nil)
	if got[0].OriginalEvent().EventID != first.OriginalEvent().EventID {
		t.Errorf("$all subscription from start: first event %s@%s, want the first event of $all %s@%s",
			got[0].OriginalEvent().EventType, got[0].OriginalEvent().StreamID, first.OriginalEvent().EventType, first.OriginalEvent().StreamID)
	}
}

func subAllFromPosition(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("suball-position")
	events := appendSingles(t, c, stream, "SubTested", 3)
	from := positionOf(t, c, stream, 0)
	sub := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: from})
	first := sub.events(t, 1, nil)[0]
	if p := first.OriginalEvent().Position; comparePositions(p, from) <= 0 {
		t.Fatalf("$all subscription from %+v: first event at %+v (%s@%s), want strictly after (exclusive)", from, p, first.OriginalEvent().EventType, first.OriginalEvent().StreamID)
	}
	var ours []*esdb.ResolvedEvent
	if first.OriginalEvent().StreamID == stream {
		ours = append(ours, first)
	}
	ours = append(ours, sub.untilCaughtUp(t, ofStream(stream))...)
	if diff := cmp.Diff(ids(events[1:]), recordedIDs(ours)); diff != "" {
		t.Fatalf("our events before caught-up (-want +got):\n%s", diff)
	}
	live := testEvent("SubTested", 3)
	mustAppend(t, c, stream, esdb.Revision(2), live)
	if got := sub.events(t, 1, ofStream(stream)); got[0].OriginalEvent().EventID != live.EventID {
		t.Errorf("live event: got revision %d, want the new event", got[0].OriginalEvent().EventNumber)
	}
}

func subAllFromEnd(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("suball-end")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("SubTested", 2)...)
	sub := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: esdb.End{}})
	if caught := sub.untilCaughtUp(t, ofStream(stream)); len(caught) != 0 {
		t.Fatalf("$all from end: got %d of our old events before caught-up", len(caught))
	}
	next := testEvent("SubTested", 2)
	mustAppend(t, c, stream, esdb.Revision(1), next)
	got := sub.events(t, 1, ofStream(stream))
	if got[0].OriginalEvent().EventID != next.EventID {
		t.Errorf("$all from end: first event of ours is revision %d, want the new event at 2", got[0].OriginalEvent().EventNumber)
	}
}

func subAllRace(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("suball-race")
	marker := newStream("suball-race-marker")
	mustAppend(t, c, marker, esdb.NoStream{}, testEvent("MarkerTested", 0))
	from := positionOf(t, c, marker, 0)
	events := testEvents("RaceTested", raceSize())
	started, subscribed := make(chan struct{}), make(chan struct{})
	writerDone := raceWriter(t, s.connect(t), stream, events, started, subscribed)
	<-started
	sub := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: from})
	close(subscribed)
	got := sub.events(t, len(events), ofStream(stream))
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	requireExactlyOnceInOrder(t, events, got)
	requireIncreasingPositions(t, got, "$all subscription")
}

func subAllSlow(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("suball-slow")
	sub := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: esdb.End{}})
	sub.untilCaughtUp(t, ofStream(stream))
	events := slowEvents(slowSize())
	appendInBatches(t, c, stream, 0, events)
	got := sub.events(t, len(events), ofStream(stream))
	requireExactlyOnceInOrder(t, events, got)
}

// filterFixture is the data a filter test writes, with what each event is
// (so that a case can compute what its filter must let through).
type filterFixture struct {
	id      string // unique to the test; part of every stream name and type
	streamA string
	streamB string
	noise   string
	typeX   string
	typeY   string
	written []writtenEvent // in $all order
}

// writtenEvent is one event a filter test wrote.
type writtenEvent struct {
	stream string
	typ    string
	id     uuid.UUID
}

// ours reports whether e belongs to the fixture (including the metadata
// stream of streamA).
func (f *filterFixture) ours(e *esdb.RecordedEvent) bool {
	return strings.Contains(e.StreamID, f.id)
}

// write appends n events of type typ to stream and records them.
func (f *filterFixture) write(t *testing.T, c *esdb.Client, stream, typ string, n int) {
	t.Helper()
	events := testEvents(typ, n)
	mustAppend(t, c, stream, esdb.Any{}, events...)
	for _, e := range events {
		f.written = append(f.written, writtenEvent{stream, typ, e.EventID})
	}
}

// writeMetadata sets metadata on streamA (a "$metadata" event in
// "$$"+streamA) and records it.
func (f *filterFixture) writeMetadata(t *testing.T, c *esdb.Client) {
	t.Helper()
	var meta esdb.StreamMetadata
	meta.SetMaxCount(1000)
	if _, err := c.SetStreamMetadata(t.Context(), f.streamA, esdb.AppendToStreamOptions{}, meta); err != nil {
		t.Fatalf("set metadata of %s: %v", f.streamA, err)
	}
	// The client does not tell the metadata event's ID: read it back.
	got := mustReadStream(t, c, "$$"+f.streamA, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if len(got) != 1 {
		t.Fatalf("read $$%s: got %d events, want 1", f.streamA, len(got))
	}
	f.written = append(f.written, writtenEvent{"$$" + f.streamA, "$metadata", got[0].OriginalEvent().EventID})
}

// expect returns the IDs of the written events match accepts, from index from.
func (f *filterFixture) expect(from int, match func(writtenEvent) bool) []uuid.UUID {
	var out []uuid.UUID
	for _, w := range f.written[from:] {
		if match(w) {
			out = append(out, w.id)
		}
	}
	return out
}

// filterSpec is one filter case: the filter to send and the predicate it
// must behave like.
type filterSpec func(f *filterFixture) (*esdb.SubscriptionFilter, func(writtenEvent) bool)

func filterStreamPrefix(f *filterFixture) (*esdb.SubscriptionFilter, func(writtenEvent) bool) {
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{f.streamA, "never-a-stream-" + f.id}},
		func(w writtenEvent) bool { return strings.HasPrefix(w.stream, f.streamA) }
}

func filterStreamRegex(f *filterFixture) (*esdb.SubscriptionFilter, func(writtenEvent) bool) {
	// Unanchored at the end on purpose: .NET Regex.Match is a search.
	re := "^" + regexp.QuoteMeta(f.streamB)
	return &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: re},
		func(w writtenEvent) bool { return strings.HasPrefix(w.stream, f.streamB) }
}

func filterTypePrefix(f *filterFixture) (*esdb.SubscriptionFilter, func(writtenEvent) bool) {
	return &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: []string{f.typeX}},
		func(w writtenEvent) bool { return w.typ == f.typeX }
}

func filterTypeRegex(f *filterFixture) (*esdb.SubscriptionFilter, func(writtenEvent) bool) {
	// A search, not a full match: the pattern matches inside the type.
	re := regexp.QuoteMeta(strings.TrimPrefix(f.typeY, "Filter")) + "$"
	return &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Regex: re},
		func(w writtenEvent) bool { return w.typ == f.typeY }
}

func filterExcludeSystem(*filterFixture) (*esdb.SubscriptionFilter, func(writtenEvent) bool) {
	return esdb.ExcludeSystemEventsFilter(), func(w writtenEvent) bool { return !strings.HasPrefix(w.typ, "$") }
}

// filterNoise is how many non-matching events a filter test writes in each
// phase: more than the client's default search window (32), so that the
// server must send checkpoints while nothing matches.
const filterNoise = 40

// filterCase builds the test for one filter: catch-up from a position the
// test observed, checkpoints (monotonic, one right before caught-up, at
// least one while live), and exactly the matching events of the test's own
// streams, in order.
func filterCase(spec filterSpec) func(t *testing.T, s *suite, c *esdb.Client) {
	return func(t *testing.T, _ *suite, c *esdb.Client) {
		id := uuid.NewString()
		f := &filterFixture{
			id:      id,
			streamA: "filterA-" + id,
			streamB: "filterB-" + id,
			noise:   "filterN-" + id,
			typeX:   "FilterX-" + id,
			typeY:   "FilterY-" + id,
		}
		filter, match := spec(f)

		marker := "filterM-" + id
		mustAppend(t, c, marker, esdb.NoStream{}, testEvent("FilterM-"+id, 0))
		from := positionOf(t, c, marker, 0)

		f.write(t, c, f.streamA, f.typeX, 2)
		f.write(t, c, f.streamB, f.typeY, 2)
		f.write(t, c, f.noise, "FilterN-"+id, filterNoise)
		f.write(t, c, f.streamA, f.typeY, 1)
		f.write(t, c, f.streamB, f.typeX, 1)
		f.writeMetadata(t, c)

		sub := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: from, Filter: filter})

		// Catch-up: our matching events, checkpoints in between, and a
		// checkpoint right before caught-up.
		var got []*esdb.ResolvedEvent
		var last esdb.Position // newest checkpoint
		var prevWasCheckpoint bool
		checkpoints := 0
		for caughtUp := false; !caughtUp; {
			m := sub.next(t)
			switch {
			case m.SubscriptionDropped != nil:
				t.Fatalf("filtered subscription dropped during catch-up: %v", m.SubscriptionDropped.Error)
			case m.CheckPointReached != nil:
				if comparePositions(*m.CheckPointReached, last) < 0 {
					t.Fatalf("checkpoint %+v goes back from %+v", *m.CheckPointReached, last)
				}
				last = *m.CheckPointReached
				checkpoints++
			case m.CaughtUp != nil:
				if !prevWasCheckpoint {
					t.Fatalf("caught-up not preceded by a checkpoint (the server must always send one at the end of catch-up); %d checkpoint(s) before", checkpoints)
				}
				caughtUp = true
			case m.EventAppeared != nil:
				requireFilterAdmits(t, filter, m.EventAppeared.OriginalEvent())
				if f.ours(m.EventAppeared.OriginalEvent()) {
					got = append(got, m.EventAppeared)
				}
			}
			prevWasCheckpoint = m.CheckPointReached != nil
		}
		if diff := cmp.Diff(f.expect(0, match), recordedIDs(got)); diff != "" {
			t.Fatalf("our events before caught-up (-want +got):\n%s", diff)
		}
		if len(got) > 0 {
			if p := got[len(got)-1].OriginalEvent().Position; comparePositions(last, p) < 0 {
				t.Errorf("the caught-up checkpoint %+v is before the last event delivered (%+v)", last, p)
			}
		}
		if checkpoints < 2 {
			t.Errorf("catch-up over %d events sent %d checkpoint(s); want one per 32 considered events plus the final one", len(f.written)+1, checkpoints)
		}
		requireIncreasingPositions(t, got, "filtered catch-up")

		// Live: the same rules, and checkpoints keep coming while nothing
		// matches.
		caughtUpAt, liveFrom := last, len(f.written)
		f.write(t, c, f.noise, "FilterN-"+id, filterNoise)
		f.write(t, c, f.streamA, f.typeX, 1)
		f.write(t, c, f.streamB, f.typeY, 1)
		want := f.expect(liveFrom, match)
		var live []*esdb.ResolvedEvent
		liveCheckpoint := false
		for len(live) < len(want) || !liveCheckpoint {
			m := sub.next(t)
			switch {
			case m.SubscriptionDropped != nil:
				t.Fatalf("filtered subscription dropped while live: %v", m.SubscriptionDropped.Error)
			case m.CheckPointReached != nil:
				if comparePositions(*m.CheckPointReached, last) < 0 {
					t.Fatalf("live checkpoint %+v goes back from %+v", *m.CheckPointReached, last)
				}
				last = *m.CheckPointReached
				if comparePositions(last, caughtUpAt) > 0 {
					liveCheckpoint = true
				}
			case m.CaughtUp != nil, m.FellBehind != nil:
				// Tolerated: a server may fall back to catch-up and report it.
			case m.EventAppeared != nil:
				requireFilterAdmits(t, filter, m.EventAppeared.OriginalEvent())
				if f.ours(m.EventAppeared.OriginalEvent()) {
					live = append(live, m.EventAppeared)
				}
			}
		}
		if diff := cmp.Diff(want, recordedIDs(live)); diff != "" {
			t.Errorf("our live events (-want +got):\n%s", diff)
		}
	}
}

// requireFilterAdmits fails t when the server delivered an event the filter
// rejects (any event, ours or not).
func requireFilterAdmits(t *testing.T, filter *esdb.SubscriptionFilter, e *esdb.RecordedEvent) {
	t.Helper()
	subject := e.EventType
	if filter.Type == esdb.StreamFilterType {
		subject = e.StreamID
	}
	var ok bool
	if filter.Regex != "" {
		ok = regexp.MustCompile(filter.Regex).MatchString(subject)
	} else {
		for _, p := range filter.Prefixes {
			ok = ok || strings.HasPrefix(subject, p)
		}
	}
	if !ok {
		t.Fatalf("filter %+v delivered %s@%s (type %s), which it does not match", *filter, uitoa(e.EventNumber), e.StreamID, e.EventType)
	}
}

func subAllResumeFromCheckpoint(t *testing.T, _ *suite, c *esdb.Client) {
	id := uuid.NewString()
	stream, noise := "resumeA-"+id, "resumeN-"+id
	filter := &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: []string{stream}}
	marker := "resumeM-" + id
	mustAppend(t, c, marker, esdb.NoStream{}, testEvent("ResumeTested", 0))
	from := positionOf(t, c, marker, 0)

	var want []uuid.UUID
	write := func(n int) {
		events := testEvents("ResumeTested", n)
		mustAppend(t, c, stream, esdb.Any{}, events...)
		mustAppend(t, c, noise, esdb.Any{}, testEvents("ResumeNoise", filterNoise)...)
		want = append(want, ids(events)...)
	}
	write(3)

	// First run: until caught-up, remembering the last checkpoint, as a
	// projection would before it stops.
	first := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: from, Filter: filter})
	var got []uuid.UUID
	var checkpoint *esdb.Position
	for caughtUp := false; !caughtUp; {
		m := first.next(t)
		switch {
		case m.SubscriptionDropped != nil:
			t.Fatalf("first run dropped: %v", m.SubscriptionDropped.Error)
		case m.CheckPointReached != nil:
			checkpoint = m.CheckPointReached
		case m.EventAppeared != nil:
			got = append(got, m.EventAppeared.OriginalEvent().EventID)
		case m.CaughtUp != nil:
			caughtUp = true
		}
	}
	if checkpoint == nil {
		t.Fatal("first run: no checkpoint before caught-up")
	}
	_ = first.sub.Close()

	// Second run from the checkpoint (exclusive): everything after it, and
	// nothing the first run already had.
	write(2)
	second := mustSubscribeToAll(t, c, esdb.SubscribeToAllOptions{From: *checkpoint, Filter: filter})
	got = append(got, recordedIDs(second.events(t, len(want)-len(got), nil))...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events over two runs resumed at checkpoint %+v (-want +got):\n%s", *checkpoint, diff)
	}
}

func subAllInvalidRegex(t *testing.T, _ *suite, c *esdb.Client) {
	filter := &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Regex: "(unclosed"}
	raw, err := c.SubscribeToAll(t.Context(), esdb.SubscribeToAllOptions{From: esdb.End{}, Filter: filter})
	if err != nil {
		t.Logf("subscription with an invalid regex refused: %v", err)
		return
	}
	sub := pump(t, raw)
	for {
		m := sub.next(t)
		if m.SubscriptionDropped != nil {
			t.Logf("subscription with an invalid regex dropped: %v", m.SubscriptionDropped.Error)
			return
		}
		if m.EventAppeared != nil {
			t.Fatalf("subscription with an invalid regex delivered %s; want it refused", kind(m))
		}
		if m.CaughtUp != nil {
			t.Fatalf("subscription with an invalid regex was accepted and caught up; want it refused")
		}
	}
}

func subStreamMany(t *testing.T, _ *suite, c *esdb.Client) {
	const n = 50
	stream := newStream("sub-many")
	subs := make([]*subscription, n)
	for i := range subs {
		subs[i] = mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	}
	for _, s := range subs {
		s.untilCaughtUp(t, nil)
	}
	events := testEvents("ManyTested", 3)
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	for i, s := range subs {
		if diff := cmp.Diff(ids(events), recordedIDs(s.events(t, len(events), nil))); diff != "" {
			t.Fatalf("subscription %d of %d (-want +got):\n%s", i, n, diff)
		}
	}
}
