package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// waitTimeout bounds every wait for something the server should deliver. It
// is a hang guard, not a timing assertion: generous, because test machines
// are shared and slow.
const waitTimeout = 30 * time.Second

// tombstoneRevision is the revision KurrentDB records a "$streamDeleted"
// event at (math.MaxInt64).
const tombstoneRevision uint64 = 9223372036854775807

// newStream returns a stream name no other test (nor an earlier run against
// a shared server) uses.
func newStream(kind string) string {
	return "conformance-" + kind + "-" + uuid.NewString()
}

// testEvent is a JSON event of type typ whose data and user metadata carry i,
// so that a mix-up between events shows in a diff.
func testEvent(typ string, i int) esdb.EventData {
	return esdb.EventData{
		EventID:     uuid.New(),
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        []byte(fmt.Sprintf(`{"i":%d}`, i)),
		Metadata:    []byte(fmt.Sprintf(`{"meta":%d}`, i)),
	}
}

// testEvents returns n testEvents of type typ, numbered from 0.
func testEvents(typ string, n int) []esdb.EventData {
	out := make([]esdb.EventData, n)
	for i := range out {
		out[i] = testEvent(typ, i)
	}
	return out
}

// ids returns the event IDs of events, in order.
func ids(events []esdb.EventData) []uuid.UUID {
	var out []uuid.UUID
	for _, e := range events {
		out = append(out, e.EventID)
	}
	return out
}

// recordedIDs returns the IDs of the original events of events, in order.
func recordedIDs(events []*esdb.ResolvedEvent) []uuid.UUID {
	var out []uuid.UUID
	for _, e := range events {
		out = append(out, e.OriginalEvent().EventID)
	}
	return out
}

// revisions returns the stream revisions of events, in order.
func revisions(events []*esdb.ResolvedEvent) []uint64 {
	var out []uint64
	for _, e := range events {
		out = append(out, e.OriginalEvent().EventNumber)
	}
	return out
}

// revRange returns from, from+1, ..., to (inclusive), or nil when to < from.
func revRange(from, to uint64) []uint64 {
	var out []uint64
	for r := from; r <= to && r >= from; r++ {
		out = append(out, r)
	}
	return out
}

// revDown returns from, from-1, ..., to (inclusive).
func revDown(from, to uint64) []uint64 {
	var out []uint64
	for r := from; r >= to; r-- {
		out = append(out, r)
		if r == 0 {
			break
		}
	}
	return out
}

// comparePositions orders $all positions by commit, then prepare.
func comparePositions(a, b esdb.Position) int {
	switch {
	case a.Commit < b.Commit:
		return -1
	case a.Commit > b.Commit:
		return 1
	case a.Prepare < b.Prepare:
		return -1
	case a.Prepare > b.Prepare:
		return 1
	}
	return 0
}

// esdbCode returns the client error code in err's chain, and whether there
// was one.
func esdbCode(err error) (esdb.ErrorCode, bool) {
	var esdbErr *esdb.Error
	if errors.As(err, &esdbErr) {
		return esdbErr.Code(), true
	}
	return 0, false
}

// codeName is the readable name of a client error code: the client's codes
// are bare ints and print as such.
func codeName(code esdb.ErrorCode) string {
	switch code {
	case esdb.ErrorCodeUnknown:
		return "Unknown"
	case esdb.ErrorCodeUnsupportedFeature:
		return "UnsupportedFeature"
	case esdb.ErrorCodeDeadlineExceeded:
		return "DeadlineExceeded"
	case esdb.ErrorCodeUnauthenticated:
		return "Unauthenticated"
	case esdb.ErrorCodeResourceNotFound:
		return "ResourceNotFound"
	case esdb.ErrorCodeResourceAlreadyExists:
		return "ResourceAlreadyExists"
	case esdb.ErrorCodeConnectionClosed:
		return "ConnectionClosed"
	case esdb.ErrorCodeWrongExpectedVersion:
		return "WrongExpectedVersion"
	case esdb.ErrorCodeAccessDenied:
		return "AccessDenied"
	case esdb.ErrorCodeStreamDeleted:
		return "StreamDeleted"
	case esdb.ErrorCodeParsing:
		return "Parsing"
	case esdb.ErrorCodeInternalClient:
		return "InternalClient"
	case esdb.ErrorCodeInternalServer:
		return "InternalServer"
	case esdb.ErrorCodeNotLeader:
		return "NotLeader"
	case esdb.ErrorAborted:
		return "Aborted"
	case esdb.ErrorUnavailable:
		return "Unavailable"
	}
	return fmt.Sprintf("ErrorCode(%d)", code)
}

// requireCode fails tb unless err carries the client error code want.
func requireCode(tb testing.TB, err error, want esdb.ErrorCode, what string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s: got no error, want %s", what, codeName(want))
	}
	got, ok := esdbCode(err)
	if !ok {
		tb.Fatalf("%s: got error %q (%T) without an *esdb.Error in its chain, want %s", what, err, err, codeName(want))
	}
	if got != want {
		tb.Fatalf("%s: got %s (%v), want %s", what, codeName(got), err, codeName(want))
	}
}

// requireWrongExpectedVersion fails tb unless err is a wrong-expected-version
// error that names current as the stream's actual revision ("no_stream" or a
// number), as the client formats the server's answer.
func requireWrongExpectedVersion(tb testing.TB, err error, current string, what string) {
	tb.Helper()
	requireCode(tb, err, esdb.ErrorCodeWrongExpectedVersion, what)
	if want := "but got '" + current + "'"; !strings.Contains(err.Error(), want) {
		tb.Fatalf("%s: error %q does not report the current revision (want it to contain %q)", what, err, want)
	}
}

// mustAppend appends events to stream and fails tb on any error.
func mustAppend(tb testing.TB, c *esdb.Client, stream string, exp esdb.ExpectedRevision, events ...esdb.EventData) *esdb.WriteResult {
	tb.Helper()
	res, err := c.AppendToStream(ctxOf(tb), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events...)
	if err != nil {
		tb.Fatalf("append %d event(s) to %s (expected %s): %v", len(events), stream, expectedString(exp), err)
	}
	return res
}

// expectedString renders an expected revision for failure messages.
func expectedString(exp esdb.ExpectedRevision) string {
	switch e := exp.(type) {
	case esdb.Any:
		return "Any"
	case esdb.NoStream:
		return "NoStream"
	case esdb.StreamExists:
		return "StreamExists"
	case esdb.StreamRevision:
		return fmt.Sprintf("Revision(%d)", e.Value)
	}
	return fmt.Sprintf("%T", exp)
}

// ctxOf returns tb's context when tb has one (Go 1.24+ tests and
// benchmarks), so that a failing test cancels its calls.
func ctxOf(tb testing.TB) context.Context {
	return tb.Context()
}

// readStream reads stream to the end (or count events) and returns what it
// got before the first error; the error is whatever the client reported,
// whether ReadStream itself or a Recv failed (the client reports
// not-found and deleted on Recv).
func readStream(ctx context.Context, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) ([]*esdb.ResolvedEvent, error) {
	rs, err := c.ReadStream(ctx, stream, opts, count)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*esdb.ResolvedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// mustReadStream is readStream that fails tb on error.
func mustReadStream(tb testing.TB, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, count uint64) []*esdb.ResolvedEvent {
	tb.Helper()
	events, err := readStream(ctxOf(tb), c, stream, opts, count)
	if err != nil {
		tb.Fatalf("read %s (direction %d, from %#v, count %d): %v", stream, opts.Direction, opts.From, count, err)
	}
	return events
}

// mustReadAllStream reads every event of stream forwards from Start.
func mustReadAllStream(tb testing.TB, c *esdb.Client, stream string) []*esdb.ResolvedEvent {
	tb.Helper()
	return mustReadStream(tb, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, ^uint64(0))
}

// requireStreamIDs fails tb unless reading stream forwards yields exactly want.
func requireStreamIDs(tb testing.TB, c *esdb.Client, stream string, want []uuid.UUID) {
	tb.Helper()
	got := recordedIDs(mustReadAllStream(tb, c, stream))
	if diff := cmp.Diff(want, got); diff != "" {
		tb.Fatalf("event IDs of %s (-want +got):\n%s", stream, diff)
	}
}

// requireReadError fails tb unless reading stream fails with code want.
func requireReadError(tb testing.TB, c *esdb.Client, stream string, opts esdb.ReadStreamOptions, want esdb.ErrorCode) {
	tb.Helper()
	events, err := readStream(ctxOf(tb), c, stream, opts, ^uint64(0))
	if len(events) > 0 {
		tb.Fatalf("read %s (direction %d): got %d event(s) (first type %q), want none and %s", stream, opts.Direction, len(events), events[0].OriginalEvent().EventType, codeName(want))
	}
	requireCode(tb, err, want, fmt.Sprintf("read %s (direction %d)", stream, opts.Direction))
}

// readAll reads $all from opts, calling fn for each event until fn returns
// false or the read ends. It fails tb on error.
func readAll(tb testing.TB, c *esdb.Client, opts esdb.ReadAllOptions, count uint64, fn func(ev *esdb.ResolvedEvent) bool) {
	tb.Helper()
	rs, err := c.ReadAll(ctxOf(tb), opts, count)
	if err != nil {
		tb.Fatalf("read $all (direction %d, from %#v): %v", opts.Direction, opts.From, err)
	}
	defer rs.Close()
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			tb.Fatalf("read $all (direction %d, from %#v): %v", opts.Direction, opts.From, err)
		}
		if !fn(ev) {
			return
		}
	}
}

// collectAllOf reads $all forwards from the position from (inclusive) and
// returns the events of stream until want of them are found. On a shared
// server other streams' events interleave; they are skipped.
func collectAllOf(tb testing.TB, c *esdb.Client, from esdb.Position, stream string, want int) []*esdb.ResolvedEvent {
	tb.Helper()
	var got []*esdb.ResolvedEvent
	readAll(tb, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: from}, ^uint64(0), func(ev *esdb.ResolvedEvent) bool {
		if ev.OriginalEvent().StreamID == stream {
			got = append(got, ev)
		}
		return len(got) < want
	})
	return got
}

// positionOf returns the $all position of the event at revision rev of
// stream, as a stream read reports it.
func positionOf(tb testing.TB, c *esdb.Client, stream string, rev uint64) esdb.Position {
	tb.Helper()
	events := mustReadStream(tb, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(rev)}, 1)
	if len(events) != 1 || events[0].OriginalEvent().EventNumber != rev {
		tb.Fatalf("read %s at revision %d: got revisions %v", stream, rev, revisions(events))
	}
	pos := events[0].OriginalEvent().Position
	if pos.Commit == 0 {
		tb.Fatalf("event %d@%s read with position %+v; stream reads must carry the $all position", rev, stream, pos)
	}
	return pos
}

// appendSingles appends n events to stream one append each (so that every
// event has a $all position of its own, even on servers that give a batch
// one commit position) and returns them.
func appendSingles(tb testing.TB, c *esdb.Client, stream, typ string, n int) []esdb.EventData {
	tb.Helper()
	events := testEvents(typ, n)
	for i, e := range events {
		exp := esdb.ExpectedRevision(esdb.Revision(uint64(i - 1)))
		if i == 0 {
			exp = esdb.NoStream{}
		}
		mustAppend(tb, c, stream, exp, e)
	}
	return events
}

// subscription pumps an *esdb.Subscription into a channel so that tests can
// wait for its messages with a deadline (Recv itself blocks forever). The
// channel is unbuffered: the pump holds at most one message, so a test that
// does not receive really does leave the server's messages unread.
type subscription struct {
	sub    *esdb.Subscription
	msgs   chan *esdb.SubscriptionEvent
	done   chan struct{}
	exited chan struct{}
}

// pump starts pumping sub; the subscription is closed when tb ends.
func pump(tb testing.TB, sub *esdb.Subscription) *subscription {
	s := &subscription{
		sub:    sub,
		msgs:   make(chan *esdb.SubscriptionEvent),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	go func() {
		defer close(s.exited)
		for {
			ev := sub.Recv()
			select {
			case s.msgs <- ev:
			case <-s.done:
				return
			}
			if ev.SubscriptionDropped != nil {
				return
			}
		}
	}()
	tb.Cleanup(func() {
		close(s.done)
		_ = sub.Close()
		<-s.exited
	})
	return s
}

// mustSubscribeToStream subscribes to stream and fails tb on error.
func mustSubscribeToStream(tb testing.TB, c *esdb.Client, stream string, opts esdb.SubscribeToStreamOptions) *subscription {
	tb.Helper()
	sub, err := c.SubscribeToStream(ctxOf(tb), stream, opts)
	if err != nil {
		tb.Fatalf("subscribe to %s from %#v: %v", stream, opts.From, err)
	}
	return pump(tb, sub)
}

// mustSubscribeToAll subscribes to $all and fails tb on error.
func mustSubscribeToAll(tb testing.TB, c *esdb.Client, opts esdb.SubscribeToAllOptions) *subscription {
	tb.Helper()
	sub, err := c.SubscribeToAll(ctxOf(tb), opts)
	if err != nil {
		tb.Fatalf("subscribe to $all from %#v (filter %+v): %v", opts.From, opts.Filter, err)
	}
	return pump(tb, sub)
}

// next returns the subscription's next message, failing tb when none comes
// within waitTimeout.
func (s *subscription) next(tb testing.TB) *esdb.SubscriptionEvent {
	tb.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case m := <-s.msgs:
		return m
	case <-s.exited:
		tb.Fatalf("subscription: no more messages (it was dropped earlier)")
	case <-timer.C:
		tb.Fatalf("subscription: no message within %v", waitTimeout)
	}
	return nil
}

// kind names a subscription message for failure messages.
func kind(m *esdb.SubscriptionEvent) string {
	switch {
	case m.EventAppeared != nil:
		e := m.EventAppeared.OriginalEvent()
		return fmt.Sprintf("event %d@%s (%s)", e.EventNumber, e.StreamID, e.EventType)
	case m.CheckPointReached != nil:
		return fmt.Sprintf("checkpoint %+v", *m.CheckPointReached)
	case m.CaughtUp != nil:
		return "caught-up"
	case m.FellBehind != nil:
		return "fell-behind"
	case m.SubscriptionDropped != nil:
		return fmt.Sprintf("dropped (%v)", m.SubscriptionDropped.Error)
	}
	return "empty message"
}

// events receives until n events that keep accepts have arrived and returns
// them in order. Checkpoints, caught-up and events keep rejects are skipped;
// a drop fails tb. The positions of all events received must increase.
func (s *subscription) events(tb testing.TB, n int, keep func(*esdb.RecordedEvent) bool) []*esdb.ResolvedEvent {
	tb.Helper()
	var out []*esdb.ResolvedEvent
	for len(out) < n {
		m := s.next(tb)
		switch {
		case m.SubscriptionDropped != nil:
			tb.Fatalf("subscription dropped after %d of %d events: %v", len(out), n, m.SubscriptionDropped.Error)
		case m.EventAppeared != nil:
			if keep == nil || keep(m.EventAppeared.OriginalEvent()) {
				out = append(out, m.EventAppeared)
			}
		}
	}
	return out
}

// untilCaughtUp receives until CaughtUp and returns the events that came
// before it (those keep accepts), failing tb on a drop.
func (s *subscription) untilCaughtUp(tb testing.TB, keep func(*esdb.RecordedEvent) bool) []*esdb.ResolvedEvent {
	tb.Helper()
	var out []*esdb.ResolvedEvent
	for {
		m := s.next(tb)
		switch {
		case m.SubscriptionDropped != nil:
			tb.Fatalf("subscription dropped before caught-up, after %d events: %v", len(out), m.SubscriptionDropped.Error)
		case m.CaughtUp != nil:
			return out
		case m.EventAppeared != nil:
			if keep == nil || keep(m.EventAppeared.OriginalEvent()) {
				out = append(out, m.EventAppeared)
			}
		}
	}
}

// ofStream is a keep function accepting the events of stream only.
func ofStream(stream string) func(*esdb.RecordedEvent) bool {
	return func(e *esdb.RecordedEvent) bool { return e.StreamID == stream }
}

// requireIncreasingPositions fails tb unless the $all positions of events
// strictly increase.
func requireIncreasingPositions(tb testing.TB, events []*esdb.ResolvedEvent, what string) {
	tb.Helper()
	for i := 1; i < len(events); i++ {
		a, b := events[i-1].OriginalEvent().Position, events[i].OriginalEvent().Position
		if comparePositions(a, b) >= 0 {
			tb.Fatalf("%s: position of event %d (%+v) is not after that of event %d (%+v)", what, i, b, i-1, a)
		}
	}
}

// uitoa formats v in decimal.
func uitoa(v uint64) string {
	return strconv.FormatUint(v, 10)
}
