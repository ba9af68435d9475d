package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// fixedNow is the clock the tests give the Client.
func fixedNow() time.Time { return time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC) }

func MustClient(tb testing.TB) *eventstore.Client {
	tb.Helper()
	return eventstoretest.MustStart(tb, eventstore.WithCodec(MustCodec(tb)), eventstore.WithClock(fixedNow))
}

func MustAppend(tb testing.TB, c *eventstore.Client, stream string, exp eventstore.Revision, events ...eventstore.Event) eventstore.AppendResult {
	tb.Helper()
	res, err := c.Append(testContext(tb), stream, exp, events)
	if err != nil {
		tb.Fatalf("append %s: %v", stream, err)
	}
	return res
}

func MustReadAll(tb testing.TB, c *eventstore.Client, stream string, from uint64) []eventstore.Recorded {
	tb.Helper()
	var got []eventstore.Recorded
	err := c.ReadStream(testContext(tb), stream, from, func(r eventstore.Recorded) error {
		got = append(got, r)
		return nil
	})
	if err != nil {
		tb.Fatalf("read %s: %v", stream, err)
	}
	return got
}

func testContext(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// ev builds an event with a deterministic ID.
func ev(n int, data any) eventstore.Event {
	return eventstore.Event{
		ID:       uuid.NewSHA1(uuid.NameSpaceOID, fmt.Appendf(nil, "event-%d", n)),
		Data:     data,
		Metadata: eventstore.Metadata{CommandID: fmt.Sprintf("cmd-%d", n), CorrelationID: "corr", CausationID: "cause", Actor: "tester"},
	}
}

func TestAppendAndReadStream(t *testing.T) {
	c := MustClient(t)
	created := thingCreated{ThingID: "t1", Name: "fan", Tags: []string{"x"}, Props: map[string]string{}, Count: 1}
	renamed := thingRenamed{ThingID: "t1", Name: "big fan"}

	res := MustAppend(t, c, "thing-t1", eventstore.NoStream(), ev(1, created), ev(2, renamed))
	if diff := cmp.Diff(eventstore.Exact(1), res.Next, cmp.AllowUnexported(eventstore.Revision{})); diff != "" {
		t.Errorf("Next (-want +got):\n%s", diff)
	}
	if res.Position.IsZero() {
		t.Error("append returned the zero position")
	}

	got := MustReadAll(t, c, "thing-t1", 0)
	if len(got) != 2 {
		t.Fatalf("read %d events, want 2", len(got))
	}
	wantMeta := eventstore.Metadata{CommandID: "cmd-1", CorrelationID: "corr", CausationID: "cause", Actor: "tester", OccurredAt: fixedNow()}
	want := eventstore.Recorded{
		Stream:   "thing-t1",
		Revision: 0,
		ID:       ev(1, nil).ID,
		Type:     typeThingCreated,
		Metadata: wantMeta,
	}
	if diff := cmp.Diff(want, got[0], cmpopts.IgnoreFields(eventstore.Recorded{}, "Position", "Data", "RawMetadata", "RecordedAt")); diff != "" {
		t.Errorf("first event (-want +got):\n%s", diff)
	}
	if got[1].Position != res.Position {
		t.Errorf("last event at %v, append said %v", got[1].Position, res.Position)
	}
	if got[0].Position.Compare(got[1].Position) >= 0 {
		t.Errorf("positions do not increase: %v then %v", got[0].Position, got[1].Position)
	}
	if got[0].RecordedAt.IsZero() || got[0].RecordedAt.Location() != time.UTC {
		t.Errorf("RecordedAt = %v, want a UTC time", got[0].RecordedAt)
	}
	for i, want := range []any{created, renamed} {
		dec, err := got[i].Decode(c.Codec())
		if err != nil {
			t.Fatalf("decode event %d: %v", i, err)
		}
		if diff := cmp.Diff(want, dec); diff != "" {
			t.Errorf("event %d decoded (-want +got):\n%s", i, diff)
		}
	}

	// From a revision: inclusive.
	if got := MustReadAll(t, c, "thing-t1", 1); len(got) != 1 || got[0].Revision != 1 {
		t.Errorf("read from revision 1: got %d events (%v), want only revision 1", len(got), got)
	}
	// Past the end of an existing stream: nothing, no error.
	if got := MustReadAll(t, c, "thing-t1", 9); len(got) != 0 {
		t.Errorf("read past the end: got %d events", len(got))
	}
}

// TestAppendStoresEachEventsOwnMetadata appends runs of events with the
// same metadata (which Append encodes once) between events with their
// own, stamped and unstamped, and reads every event's metadata back,
// byte for byte as encoding/json would write it.
func TestAppendStoresEachEventsOwnMetadata(t *testing.T) {
	c := MustClient(t)
	at := time.Date(2026, 11, 1, 9, 30, 0, 5, time.FixedZone("X", -7200))
	mds := []eventstore.Metadata{
		{CommandID: "a", Actor: "x"},
		{CommandID: "a", Actor: "x"},
		{CommandID: "a", Actor: "x", OccurredAt: at},
		{CommandID: "a", Actor: "x", OccurredAt: at},
		{CommandID: "b", CorrelationID: "<&>", Actor: "\u2028\"quoted\""},
		{CommandID: "a", Actor: "x"},
		{},
	}
	events := make([]eventstore.Event, len(mds))
	for i, md := range mds {
		events[i] = ev(100+i, thingRenamed{ThingID: "t", Name: fmt.Sprint(i)})
		events[i].Metadata = md
	}
	MustAppend(t, c, "thing-meta", eventstore.NoStream(), events...)
	got := MustReadAll(t, c, "thing-meta", 0)
	if len(got) != len(mds) {
		t.Fatalf("read %d events, want %d", len(got), len(mds))
	}
	for i, md := range mds {
		if md.OccurredAt.IsZero() {
			md.OccurredAt = fixedNow()
		}
		want, err := md.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(got[i].RawMetadata) != string(want) {
			t.Errorf("event %d: metadata %s, want %s", i, got[i].RawMetadata, want)
		}
		md.OccurredAt = md.OccurredAt.UTC()
		if diff := cmp.Diff(md, got[i].Metadata); diff != "" {
			t.Errorf("event %d: parsed metadata (-want +got):\n%s", i, diff)
		}
	}
}

func TestAppendRawJSONNeedsAType(t *testing.T) {
	c := MustClient(t)
	e := ev(1, json.RawMessage(`{"free":"form"}`))
	if _, err := c.Append(testContext(t), "raw-1", eventstore.Any(), []eventstore.Event{e}); err == nil {
		t.Error("append of raw JSON without a type succeeded")
	}
	e.Type = "FreeForm"
	MustAppend(t, c, "raw-1", eventstore.Any(), e)
	got := MustReadAll(t, c, "raw-1", 0)
	if len(got) != 1 || got[0].Type != "FreeForm" || string(got[0].Data) != `{"free":"form"}` {
		t.Errorf("read back %+v", got)
	}

	// The codec's output (Encoded) too: it needs the type the codec named.
	name, data, err := c.Codec().Encode(thingRenamed{ThingID: "t-1", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	enc := eventstore.Event{ID: uuid.New(), Data: eventstore.Encoded(data)}
	if _, err := c.Append(testContext(t), "raw-2", eventstore.Any(), []eventstore.Event{enc}); err == nil {
		t.Error("append of encoded data without a type succeeded")
	}
	enc.Type = name
	MustAppend(t, c, "raw-2", eventstore.Any(), enc)
	got = MustReadAll(t, c, "raw-2", 0)
	if len(got) != 1 || got[0].Type != name || string(got[0].Data) != string(data) {
		t.Errorf("read back %+v, want %s %s", got, name, data)
	}
}

func TestAppendRefusesBadEvents(t *testing.T) {
	c := MustClient(t)
	noID := ev(1, thingRenamed{})
	noID.ID = uuid.Nil
	cases := map[string]eventstore.Event{
		"no ID":             noID,
		"unregistered":      ev(2, struct{ A int }{1}),
		"raw data not JSON": {ID: uuid.New(), Type: "X", Data: []byte("not json")},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := c.Append(testContext(t), "bad-1", eventstore.Any(), []eventstore.Event{e}); err == nil {
				t.Error("append succeeded")
			}
		})
	}
	// Nothing of the refused appends was written.
	err := c.ReadStream(testContext(t), "bad-1", 0, func(eventstore.Recorded) error { return nil })
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("read after refused appends: err = %v, want ErrStreamNotFound", err)
	}
}

func TestAppendConflictCarriesTheActualRevision(t *testing.T) {
	c := MustClient(t)
	ctx := testContext(t)
	MustAppend(t, c, "thing-c", eventstore.NoStream(), ev(1, thingRenamed{Name: "a"}), ev(2, thingRenamed{Name: "b"}))

	cases := []struct {
		name     string
		stream   string
		expected eventstore.Revision
		actual   eventstore.Revision
	}{
		{"stale revision", "thing-c", eventstore.Exact(0), eventstore.Exact(1)},
		{"no stream on an existing stream", "thing-c", eventstore.NoStream(), eventstore.Exact(1)},
		{"revision on a missing stream", "thing-missing", eventstore.Exact(3), eventstore.NoStream()},
		{"stream exists on a missing stream", "thing-missing", eventstore.StreamExists(), eventstore.NoStream()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Append(ctx, tc.stream, tc.expected, []eventstore.Event{ev(10, thingRenamed{Name: "late"})})
			var conflict *eventstore.ConflictError
			if !errors.As(err, &conflict) {
				t.Fatalf("err = %v, want a *ConflictError", err)
			}
			if conflict.Stream != tc.stream || conflict.Actual != tc.actual || conflict.Expected != tc.expected {
				t.Errorf("conflict = {%s, expected %s, actual %s}, want {%s, expected %s, actual %s}",
					conflict.Stream, conflict.Expected, conflict.Actual, tc.stream, tc.expected, tc.actual)
			}
		})
	}
	// The right revision succeeds.
	res := MustAppend(t, c, "thing-c", eventstore.Exact(1), ev(3, thingRenamed{Name: "c"}))
	if n, ok := res.Next.Value(); !ok || n != 2 {
		t.Errorf("Next = %v, want 2", res.Next)
	}
}

func TestAppendRetryWithSameIDsIsIdempotent(t *testing.T) {
	c := MustClient(t)
	e := ev(1, thingRenamed{Name: "once"})
	first := MustAppend(t, c, "thing-i", eventstore.NoStream(), e)
	second := MustAppend(t, c, "thing-i", eventstore.NoStream(), e)
	if first.Position != second.Position {
		t.Errorf("retry answered position %v, first append %v", second.Position, first.Position)
	}
	if got := MustReadAll(t, c, "thing-i", 0); len(got) != 1 {
		t.Errorf("stream holds %d events after a retry, want 1", len(got))
	}
}

func TestAppendNothingToAMissingStream(t *testing.T) {
	c := MustClient(t)
	res := MustAppend(t, c, "thing-empty", eventstore.NoStream())
	if !res.Next.IsNoStream() || !res.Position.IsZero() {
		t.Errorf("result = %+v, want NoStream and the zero position", res)
	}
}

func TestReadStreamNotFound(t *testing.T) {
	c := MustClient(t)
	calls := 0
	err := c.ReadStream(testContext(t), "never-written", 0, func(eventstore.Recorded) error { calls++; return nil })
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("err = %v, want ErrStreamNotFound", err)
	}
	if calls != 0 {
		t.Errorf("handler called %d times", calls)
	}
}

func TestReadStreamStopsAtTheHandlersError(t *testing.T) {
	c := MustClient(t)
	for i := range 5 {
		MustAppend(t, c, "thing-s", eventstore.Any(), ev(i, thingRenamed{Name: fmt.Sprint(i)}))
	}
	stop := errors.New("enough")
	var seen []uint64
	err := c.ReadStream(testContext(t), "thing-s", 0, func(r eventstore.Recorded) error {
		seen = append(seen, r.Revision)
		if r.Revision == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("err = %v, want the handler's error", err)
	}
	if diff := cmp.Diff([]uint64{0, 1, 2}, seen); diff != "" {
		t.Errorf("revisions seen (-want +got):\n%s", diff)
	}
}

func TestReadStreamManyEvents(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	c := MustClient(t)
	batch := make([]eventstore.Event, 0, 100)
	for i := range n {
		batch = append(batch, ev(i, thingRenamed{Name: fmt.Sprint(i)}))
		if len(batch) == cap(batch) {
			MustAppend(t, c, "thing-big", eventstore.Any(), batch...)
			batch = batch[:0]
		}
	}
	next := uint64(0)
	err := c.ReadStream(testContext(t), "thing-big", 0, func(r eventstore.Recorded) error {
		if r.Revision != next {
			return fmt.Errorf("revision %d, want %d", r.Revision, next)
		}
		next++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next != uint64(n) {
		t.Errorf("read %d events, want %d", next, n)
	}
}

func TestHeadAndPing(t *testing.T) {
	c := MustClient(t)
	ctx := testContext(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	MustAppend(t, c, "thing-h", eventstore.Any(), ev(1, thingRenamed{Name: "a"}))
	res := MustAppend(t, c, "thing-h2", eventstore.Any(), ev(2, thingRenamed{Name: "b"}))
	head, err := c.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != res.Position {
		t.Errorf("head = %v, want the last append's position %v", head, res.Position)
	}
}

func TestClosedClientRefusesWork(t *testing.T) {
	srv := eventstoretest.MustStartServer(t)
	c, err := eventstore.Dial(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(testContext(t)); !errors.Is(err, eventstore.ErrClosed) {
		t.Errorf("ping after close: err = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestPingFailsWhenNothingListens(t *testing.T) {
	c := eventstoretest.MustDial(t, "esdb://127.0.0.1:1?tls=false")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err == nil {
		t.Error("ping succeeded with no server")
	}
}

func TestDialRefusesABadURL(t *testing.T) {
	if _, err := eventstore.Dial("http://nope"); err == nil {
		t.Error("dial of a non-esdb URL succeeded")
	}
}

func TestDialledClientSurvivesAStoreRestart(t *testing.T) {
	// The official client closes itself for good when discovery fails while
	// the store is down; a Dial'ed Client must come back with the store.
	dir := t.TempDir()
	ctx := testContext(t)
	first, err := server.Start(ctx, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addr()
	c := eventstoretest.MustDial(t, first.URL(), eventstore.WithCodec(MustCodec(t)))
	MustAppend(t, c, "thing-r", eventstore.NoStream(), ev(1, thingRenamed{Name: "before"}))
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// With the store down every call fails; an append's Unavailable makes
	// the official client rediscover, fail, and give up for good.
	for i := range 3 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := c.Append(pctx, "thing-r", eventstore.Any(), []eventstore.Event{ev(100+i, thingRenamed{Name: "lost"})}); err == nil {
			t.Fatal("append succeeded with the store down")
		}
		cancel()
	}

	second, err := server.Start(ctx, server.Options{Dir: dir, Listen: addr})
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	defer second.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Ping(pctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping still fails 15s after the store came back: %v", err)
		}
	}
	if got := MustReadAll(t, c, "thing-r", 0); len(got) != 1 {
		t.Errorf("after restart: %d events, want 1", len(got))
	}
}

func TestUnavailableTellsADownStoreFromARefusal(t *testing.T) {
	down := eventstoretest.MustDial(t, "esdb://127.0.0.1:1?tls=false")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := down.Head(ctx)
	if !eventstore.Unavailable(err) {
		t.Errorf("head of a store that is down: Unavailable(%v) = false", err)
	}
	c := eventstoretest.MustDial(t, eventstoretest.MustStartServer(t).URL())
	err = c.ReadStream(testContext(t), "thing-none", 0, func(eventstore.Recorded) error { return nil })
	if !errors.Is(err, eventstore.ErrStreamNotFound) || eventstore.Unavailable(err) {
		t.Errorf("read of a missing stream: %v, Unavailable %v; want ErrStreamNotFound, not unavailable", err, eventstore.Unavailable(err))
	}
	if eventstore.Unavailable(nil) {
		t.Error("Unavailable(nil)")
	}
}
