package conformance

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// clockSkew is how far an event's created time may be from the test's
// clock: the server may run elsewhere (a container), so allow some skew.
const clockSkew = time.Minute

func readStreamBehaviours() []behaviour {
	return []behaviour{
		{"forwards from start reads every event in order", readForwardsFromStart},
		{"forwards with a count stops after count events", readForwardsCount},
		{"forwards from a revision is inclusive", readForwardsFromRevision},
		{"backwards from end reads the newest events first", readBackwardsFromEnd},
		{"backwards from a revision is inclusive", readBackwardsFromRevision},
		{"forwards from end reads nothing", readForwardsFromEnd},
		{"forwards past the end is empty, not not-found", readPastEnd},
		{"a count of MaxUint64 reads everything both ways", readMaxCount},
		{"a missing stream is not found in both directions", readMissing},
		{"events carry every recorded field", readRecordedFields},
		{"stream reads carry $all positions that increase with revision", readPositions},
	}
}

// readFixture appends n numbered events in one batch to a fresh stream.
func readFixture(t *testing.T, c *esdb.Client, n int) (string, []esdb.EventData) {
	t.Helper()
	stream := newStream("read")
	events := testEvents("ReadTested", n)
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	return stream, events
}

// requireRevisions fails t unless a read of stream returns want.
func requireRevisions(t *testing.T, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64, want []uint64) {
	t.Helper()
	got := revisions(mustReadStream(t, c, stream, opts, count))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read %s (direction %d, from %#v, count %d): revisions (-want +got):\n%s", stream, opts.Direction, opts.From, count, diff)
	}
}

func readForwardsFromStart(t *testing.T, _ *suite, c *esdb.Client) {
	stream, events := readFixture(t, c, 10)
	got := mustReadStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 100)
	if diff := cmp.Diff(ids(events), recordedIDs(got)); diff != "" {
		t.Errorf("event IDs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(revRange(0, 9), revisions(got)); diff != "" {
		t.Errorf("revisions (-want +got):\n%s", diff)
	}
	for i, ev := range got {
		if !bytes.Equal(ev.OriginalEvent().Data, events[i].Data) {
			t.Errorf("event %d: data %q, want %q", i, ev.OriginalEvent().Data, events[i].Data)
		}
	}
}

func readForwardsCount(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 10)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 3, revRange(0, 2))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 1, revRange(0, 0))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 10, revRange(0, 9))
}

func readForwardsFromRevision(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 10)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(4)}, 3, revRange(4, 6))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(8)}, 5, revRange(8, 9))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(9)}, 5, revRange(9, 9))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(0)}, 2, revRange(0, 1))
}

func readBackwardsFromEnd(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 10)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 3, revDown(9, 7))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1, revDown(9, 9))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 100, revDown(9, 0))
}

func readBackwardsFromRevision(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 10)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(5)}, 3, revDown(5, 3))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(1)}, 5, revDown(1, 0))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(0)}, 5, revDown(0, 0))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(9)}, 2, revDown(9, 8))
}

func readForwardsFromEnd(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 3)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.End{}}, 10, nil)
}

func readPastEnd(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 3)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(3)}, 10, nil)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(100)}, 10, nil)
}

func readMaxCount(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := readFixture(t, c, 7)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, math.MaxUint64, revRange(0, 6))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, math.MaxUint64, revDown(6, 0))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(5)}, math.MaxUint64, revRange(5, 6))
}

func readMissing(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("read-missing")
	requireReadError(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, esdb.ErrorCodeResourceNotFound)
	requireReadError(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, esdb.ErrorCodeResourceNotFound)
	requireReadError(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(3)}, esdb.ErrorCodeResourceNotFound)
}

func readRecordedFields(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("read-fields")
	e := esdb.EventData{
		EventID:     uuid.New(),
		EventType:   "FieldsTested",
		ContentType: esdb.ContentTypeJson,
		Data:        []byte(`{"hello":"world"}`),
		Metadata:    []byte(`{"correlation":"abc"}`),
	}
	before := time.Now()
	res := mustAppend(t, c, stream, esdb.NoStream{}, e)
	after := time.Now()

	check := func(what string, ev *esdb.ResolvedEvent) {
		t.Helper()
		if ev.Link != nil {
			t.Errorf("%s: Link = %+v, want nil for a plain event", what, ev.Link)
		}
		if ev.Event == nil {
			t.Fatalf("%s: Event is nil", what)
		}
		r := ev.Event
		got := struct {
			ID           uuid.UUID
			Type         string
			ContentType  string
			StreamID     string
			Revision     uint64
			Data         string
			UserMetadata string
			Position     esdb.Position
		}{r.EventID, r.EventType, r.ContentType, r.StreamID, r.EventNumber, string(r.Data), string(r.UserMetadata), r.Position}
		want := got
		want.ID, want.Type, want.ContentType, want.StreamID, want.Revision = e.EventID, e.EventType, "application/json", stream, 0
		want.Data, want.UserMetadata = string(e.Data), string(e.Metadata)
		want.Position = esdb.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: recorded event (-want +got):\n%s", what, diff)
		}
		if r.CreatedDate.Before(before.Add(-clockSkew)) || r.CreatedDate.After(after.Add(clockSkew)) {
			t.Errorf("%s: created %v, want close to the append (%v .. %v)", what, r.CreatedDate, before, after)
		}
		if ev.Commit == nil || *ev.Commit != r.Position.Commit {
			t.Errorf("%s: ResolvedEvent.Commit = %v, want the event's commit position %d", what, ev.Commit, r.Position.Commit)
		}
		for _, key := range []string{"type", "content-type", "created"} {
			if r.SystemMetadata[key] == "" {
				t.Errorf("%s: system metadata lacks %q: %v", what, key, r.SystemMetadata)
			}
		}
	}

	fwd := mustReadStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 10)
	bwd := mustReadStream(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10)
	if len(fwd) != 1 || len(bwd) != 1 {
		t.Fatalf("read %d event(s) forwards and %d backwards, want 1 each", len(fwd), len(bwd))
	}
	check("stream read forwards", fwd[0])
	check("stream read backwards", bwd[0])
	inAll := collectAllOf(t, c, esdb.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}, stream, 1)
	if len(inAll) != 1 {
		t.Fatalf("$all from the append's position: found %d event(s) of %s, want 1", len(inAll), stream)
	}
	check("$all read", inAll[0])
}

func readPositions(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("read-positions")
	appendSingles(t, c, stream, "PositionTested", 3)
	mustAppend(t, c, stream, esdb.Revision(2), testEvents("PositionTested", 4)...)
	got := mustReadAllStream(t, c, stream)
	if len(got) != 7 {
		t.Fatalf("read %d events, want 7", len(got))
	}
	for _, ev := range got {
		if p := ev.OriginalEvent().Position; p.Commit == 0 || p.Prepare == 0 {
			t.Fatalf("event %d read from the stream with position %+v; want the $all position (real servers send it since 22.6)", ev.OriginalEvent().EventNumber, p)
		}
	}
	requireIncreasingPositions(t, got, "stream read forwards")
}

func readAllBehaviours() []behaviour {
	return []behaviour{
		{"forwards from a position is inclusive", readAllForwardsInclusive},
		{"backwards from a position is exclusive", readAllBackwardsExclusive},
		{"forwards from start begins at the first event", readAllFromStart},
		{"forwards from end reads nothing", readAllForwardsFromEnd},
		{"backwards from end begins at the newest event", readAllBackwardsFromEnd},
		{"$all includes metadata events", readAllIncludesMetadata},
	}
}

func readAllForwardsInclusive(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("readall-fwd")
	events := appendSingles(t, c, stream, "AllTested", 5)
	from := positionOf(t, c, stream, 2)
	var first *esdb.ResolvedEvent
	var ours []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: from}, math.MaxUint64, func(ev *esdb.ResolvedEvent) bool {
		if first == nil {
			first = ev
		}
		if ev.OriginalEvent().StreamID == stream {
			ours = append(ours, ev)
		}
		return len(ours) < 3
	})
	if first == nil || first.OriginalEvent().EventID != events[2].EventID {
		t.Fatalf("$all forwards from %+v (the position of event 2@%s): first event %+v, want that event itself (inclusive)", from, stream, first)
	}
	if diff := cmp.Diff(ids(events[2:]), recordedIDs(ours)); diff != "" {
		t.Errorf("our events in $all forwards from event 2 (-want +got):\n%s", diff)
	}
	requireIncreasingPositions(t, ours, "$all forwards")

	// A count bounds an $all read like a stream read.
	var n int
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: from}, 2, func(*esdb.ResolvedEvent) bool { n++; return true })
	if n != 2 {
		t.Errorf("$all forwards with count 2: got %d events", n)
	}
}

func readAllBackwardsExclusive(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("readall-bwd")
	events := appendSingles(t, c, stream, "AllTested", 5)
	from := positionOf(t, c, stream, 3)
	var first *esdb.ResolvedEvent
	var ours []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: from}, math.MaxUint64, func(ev *esdb.ResolvedEvent) bool {
		if first == nil {
			first = ev
		}
		if ev.OriginalEvent().StreamID == stream {
			ours = append(ours, ev)
		}
		return len(ours) < 3
	})
	if first == nil {
		t.Fatalf("$all backwards from %+v: no events", from)
	}
	if p := first.OriginalEvent().Position; comparePositions(p, from) >= 0 {
		t.Errorf("$all backwards from %+v (event 3@%s): first event at %+v, want strictly before (exclusive)", from, stream, p)
	}
	want := []uuid.UUID{events[2].EventID, events[1].EventID, events[0].EventID}
	if diff := cmp.Diff(want, recordedIDs(ours)); diff != "" {
		t.Errorf("our events in $all backwards from event 3 (-want +got):\n%s", diff)
	}
}

func readAllFromStart(t *testing.T, _ *suite, c *esdb.Client) {
	// Make sure $all is not empty, whatever server this is.
	mustAppend(t, c, newStream("readall-start"), esdb.NoStream{}, testEvent("AllTested", 0))
	var first []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 1, func(ev *esdb.ResolvedEvent) bool {
		first = append(first, ev)
		return true
	})
	if len(first) != 1 {
		t.Fatalf("$all forwards from start with count 1: got %d events", len(first))
	}
	pos := first[0].OriginalEvent().Position
	var again []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: pos}, 1, func(ev *esdb.ResolvedEvent) bool {
		again = append(again, ev)
		return true
	})
	if len(again) != 1 || again[0].OriginalEvent().EventID != first[0].OriginalEvent().EventID {
		t.Errorf("$all forwards from the first event's position %+v does not start with that event", pos)
	}
	var before int
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: pos}, 10, func(*esdb.ResolvedEvent) bool { before++; return true })
	if before != 0 {
		t.Errorf("$all backwards from the first event's position %+v: got %d events, want none", pos, before)
	}
}

func readAllForwardsFromEnd(t *testing.T, _ *suite, c *esdb.Client) {
	mustAppend(t, c, newStream("readall-end"), esdb.NoStream{}, testEvent("AllTested", 0))
	var n int
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: esdb.End{}}, 10, func(*esdb.ResolvedEvent) bool { n++; return true })
	if n != 0 {
		t.Errorf("$all forwards from end: got %d events, want none", n)
	}
}

func readAllBackwardsFromEnd(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("readall-bwd-end")
	appendSingles(t, c, stream, "AllTested", 2)
	last := positionOf(t, c, stream, 1)
	var got []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1, func(ev *esdb.ResolvedEvent) bool {
		got = append(got, ev)
		return true
	})
	if len(got) != 1 {
		t.Fatalf("$all backwards from end with count 1: got %d events", len(got))
	}
	// Other writers may have appended since; the newest event is at least ours.
	if p := got[0].OriginalEvent().Position; comparePositions(p, last) < 0 {
		t.Errorf("$all backwards from end starts at %+v, before our last append at %+v", p, last)
	}
}

func readAllIncludesMetadata(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("readall-meta")
	appendSingles(t, c, stream, "AllTested", 1)
	from := positionOf(t, c, stream, 0)
	var meta esdb.StreamMetadata
	meta.SetMaxCount(5)
	if _, err := c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{}, meta); err != nil {
		t.Fatalf("set metadata: %v", err)
	}
	got := collectAllOf(t, c, from, "$$"+stream, 1)
	if len(got) != 1 || got[0].OriginalEvent().EventType != "$metadata" {
		t.Fatalf("$all from our event: found %d event(s) of $$%s, want its $metadata event", len(got), stream)
	}
}
