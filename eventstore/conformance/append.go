package conformance

import (
	"bytes"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func appendBehaviours() []behaviour {
	return []behaviour{
		{"any creates a missing stream and extends an existing one", appendAny},
		{"results carry next revision and equal commit and prepare positions that increase", appendResultsPositions},
		{"a batch gets consecutive revisions and lands contiguously in $all", appendBatch},
		{"no stream on a missing stream succeeds", appendNoStreamMissing},
		{"no stream on an existing stream is a wrong expected version with the current revision", appendNoStreamExisting},
		{"stream exists on a missing stream is a wrong expected version with no stream", appendStreamExistsMissing},
		{"stream exists on an existing stream succeeds", appendStreamExistsExisting},
		{"stream exists succeeds when only the metadata stream exists", appendStreamExistsMetadataOnly},
		{"exact revision that matches succeeds", appendRevisionRight},
		{"exact revision that does not match is a wrong expected version with the current revision", appendRevisionWrong},
		{"exact revision on a missing stream is a wrong expected version with no stream", appendRevisionMissing},
		{"a failed append writes nothing", appendFailedWritesNothing},
		{"retrying the same events at the same exact revision is idempotent", appendIdempotentRevision},
		{"retrying the same events with no stream is idempotent", appendIdempotentNoStream},
		{"retrying the same events with any is idempotent when nothing else was written", appendIdempotentAny},
		{"zero events with any or no stream to a missing stream succeed and create nothing", appendZeroEvents},
		{"binary and json events with empty data and metadata round trip", appendContentTypes},
		{"an append above the max append size fails and writes nothing", appendTooLarge},
		{"a batch above the max append size fails atomically", appendBatchTooLarge},
		{"an append just under the max append size succeeds", appendJustUnderMax},
	}
}

func appendAny(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-any")
	first := testEvent("AnyTested", 0)
	if got := mustAppend(t, c, stream, esdb.Any{}, first).NextExpectedVersion; got != 0 {
		t.Errorf("first append with any: NextExpectedVersion = %d, want 0", got)
	}
	more := testEvents("AnyTested", 2)
	if got := mustAppend(t, c, stream, esdb.Any{}, more...).NextExpectedVersion; got != 2 {
		t.Errorf("second append with any: NextExpectedVersion = %d, want 2", got)
	}
	requireStreamIDs(t, c, stream, append([]uuid.UUID{first.EventID}, ids(more)...))
}

func appendResultsPositions(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-positions")
	var prev esdb.Position
	for i := range 5 {
		var exp esdb.ExpectedRevision = esdb.Revision(uint64(i - 1))
		if i == 0 {
			exp = esdb.NoStream{}
		}
		res := mustAppend(t, c, stream, exp, testEvent("PositionTested", i))
		if res.NextExpectedVersion != uint64(i) {
			t.Errorf("append %d: NextExpectedVersion = %d, want %d", i, res.NextExpectedVersion, i)
		}
		pos := esdb.Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}
		if pos.Commit == 0 || pos.Prepare == 0 {
			t.Fatalf("append %d: position %+v, want commit and prepare > 0", i, pos)
		}
		if pos.Commit != pos.Prepare {
			t.Errorf("append %d of a single event: commit %d != prepare %d", i, pos.Commit, pos.Prepare)
		}
		if comparePositions(pos, prev) <= 0 {
			t.Errorf("append %d: position %+v is not after the previous append's %+v", i, pos, prev)
		}
		// A single event's append result is that event's position.
		if got := positionOf(t, c, stream, uint64(i)); got != pos {
			t.Errorf("append %d: result position %+v, but the event reads back at %+v", i, pos, got)
		}
		prev = pos
	}
}

func appendBatch(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-batch")
	events := testEvents("BatchTested", 5)
	res := mustAppend(t, c, stream, esdb.NoStream{}, events...)
	if res.NextExpectedVersion != 4 {
		t.Errorf("append of 5 events: NextExpectedVersion = %d, want 4", res.NextExpectedVersion)
	}
	got := mustReadAllStream(t, c, stream)
	if diff := cmp.Diff(revRange(0, 4), revisions(got)); diff != "" {
		t.Errorf("revisions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids(events), recordedIDs(got)); diff != "" {
		t.Errorf("event IDs (-want +got):\n%s", diff)
	}
	requireIncreasingPositions(t, got, "stream read of a batch")

	// The batch is one atomic write: in $all nothing else sits between its
	// events, even on a busy server.
	var inAll []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: got[0].OriginalEvent().Position}, 5, func(ev *esdb.ResolvedEvent) bool {
		inAll = append(inAll, ev)
		return true
	})
	if diff := cmp.Diff(ids(events), recordedIDs(inAll)); diff != "" {
		t.Errorf("the 5 $all events from the batch's first position are not the batch (-want +got):\n%s", diff)
	}
}

func appendNoStreamMissing(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-nostream")
	e := testEvent("NoStreamTested", 0)
	if got := mustAppend(t, c, stream, esdb.NoStream{}, e).NextExpectedVersion; got != 0 {
		t.Errorf("NextExpectedVersion = %d, want 0", got)
	}
	requireStreamIDs(t, c, stream, []uuid.UUID{e.EventID})
}

func appendNoStreamExisting(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-nostream-existing")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("NoStreamTested", 2)...)
	_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, testEvent("NoStreamTested", 9))
	requireWrongExpectedVersion(t, err, "1", "append with no stream to a stream at revision 1")
}

func appendStreamExistsMissing(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-exists-missing")
	_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, testEvent("ExistsTested", 0))
	requireWrongExpectedVersion(t, err, "no_stream", "append with stream exists to a missing stream")
	requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
}

func appendStreamExistsExisting(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-exists")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("ExistsTested", 3)...)
	if got := mustAppend(t, c, stream, esdb.StreamExists{}, testEvent("ExistsTested", 3)).NextExpectedVersion; got != 3 {
		t.Errorf("NextExpectedVersion = %d, want 3", got)
	}
}

func appendStreamExistsMetadataOnly(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-exists-meta")
	var meta esdb.StreamMetadata
	meta.SetMaxCount(100)
	if _, err := c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{}, meta); err != nil {
		t.Fatalf("set metadata of %s: %v", stream, err)
	}
	if got := mustAppend(t, c, stream, esdb.StreamExists{}, testEvent("ExistsTested", 0)).NextExpectedVersion; got != 0 {
		t.Errorf("NextExpectedVersion = %d, want 0", got)
	}
}

func appendRevisionRight(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-revision")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("RevisionTested", 3)...)
	if got := mustAppend(t, c, stream, esdb.Revision(2), testEvents("RevisionTested", 2)...).NextExpectedVersion; got != 4 {
		t.Errorf("NextExpectedVersion = %d, want 4", got)
	}
	if got := mustAppend(t, c, stream, esdb.Revision(4), testEvent("RevisionTested", 5)).NextExpectedVersion; got != 5 {
		t.Errorf("NextExpectedVersion = %d, want 5", got)
	}
}

func appendRevisionWrong(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-revision-wrong")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("RevisionTested", 3)...)
	for _, rev := range []uint64{0, 1, 3, 10} {
		_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(rev)}, testEvent("RevisionTested", 9))
		requireWrongExpectedVersion(t, err, "2", "append expecting revision "+uitoa(rev)+" to a stream at revision 2")
	}
}

func appendRevisionMissing(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-revision-missing")
	_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, testEvent("RevisionTested", 0))
	requireWrongExpectedVersion(t, err, "no_stream", "append expecting revision 0 to a missing stream")
}

func appendFailedWritesNothing(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-failed")
	events := testEvents("FailedTested", 2)
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	for _, exp := range []esdb.ExpectedRevision{esdb.NoStream{}, esdb.Revision(0), esdb.Revision(5)} {
		_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, testEvents("FailedTested", 3)...)
		requireCode(t, err, esdb.ErrorCodeWrongExpectedVersion, "append expecting "+expectedString(exp))
	}
	requireStreamIDs(t, c, stream, ids(events))
}

func appendIdempotentRevision(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("append-idem-revision")
	first := testEvents("IdempotentTested", 2)
	mustAppend(t, c, stream, esdb.NoStream{}, first...)
	second := testEvents("IdempotentTested", 3)
	want := mustAppend(t, c, stream, esdb.Revision(1), second...)
	got, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(1)}, second...)
	if err != nil {
		t.Fatalf("retry of the same 3 events at revision 1: %v", err)
	}
	requireSameResult(t, s, want, got)
	requireStreamIDs(t, c, stream, append(ids(first), ids(second)...))
}

func appendIdempotentNoStream(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("append-idem-nostream")
	events := testEvents("IdempotentTested", 3)
	want := mustAppend(t, c, stream, esdb.NoStream{}, events...)
	got, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, events...)
	if err != nil {
		t.Fatalf("retry of the same 3 events with no stream: %v", err)
	}
	requireSameResult(t, s, want, got)
	requireStreamIDs(t, c, stream, ids(events))
}

func appendIdempotentAny(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("append-idem-any")
	events := testEvents("IdempotentTested", 2)
	want := mustAppend(t, c, stream, esdb.Any{}, events...)
	got, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, events...)
	if err != nil {
		t.Fatalf("retry of the same 2 events with any: %v", err)
	}
	requireSameResult(t, s, want, got)
	requireStreamIDs(t, c, stream, ids(events))
}

// requireSameResult compares an idempotent retry's result with the
// original's: always the revision, the positions only when the server
// promises them (KurrentDB may answer a retry without a position).
func requireSameResult(t *testing.T, s *suite, want, got *esdb.WriteResult) {
	t.Helper()
	if got.NextExpectedVersion != want.NextExpectedVersion {
		t.Errorf("retry: NextExpectedVersion = %d, want the original %d", got.NextExpectedVersion, want.NextExpectedVersion)
	}
	if s.cfg.idempotentPositions {
		if diff := cmp.Diff(*want, *got); diff != "" {
			t.Errorf("retry result differs from the original (-original +retry):\n%s", diff)
		}
	}
}

func appendZeroEvents(t *testing.T, _ *suite, c *esdb.Client) {
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}} {
		stream := newStream("append-zero")
		if _, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}); err != nil {
			t.Fatalf("append of zero events with %s to a missing stream: %v", expectedString(exp), err)
		}
		requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
		// The stream was not created: no stream still holds.
		mustAppend(t, c, stream, esdb.NoStream{}, testEvent("ZeroTested", 0))
	}
}

func appendContentTypes(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("append-content")
	events := []esdb.EventData{
		{EventID: uuid.New(), EventType: "BinaryTested", ContentType: esdb.ContentTypeBinary, Data: []byte{0, 1, 2, 0xff}, Metadata: []byte{9, 8}},
		{EventID: uuid.New(), EventType: "JSONTested", ContentType: esdb.ContentTypeJson, Data: []byte(`{"a":[1,2]}`)},
		{EventID: uuid.New(), EventType: "EmptyTested", ContentType: esdb.ContentTypeBinary},
	}
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	got := mustReadAllStream(t, c, stream)
	if len(got) != len(events) {
		t.Fatalf("read %d events, want %d", len(got), len(events))
	}
	wantTypes := []string{"application/octet-stream", "application/json", "application/octet-stream"}
	for i, e := range events {
		r := got[i].OriginalEvent()
		if r.EventType != e.EventType || r.ContentType != wantTypes[i] || !bytes.Equal(r.Data, e.Data) || !bytes.Equal(r.UserMetadata, e.Metadata) {
			t.Errorf("event %d read back as type %q, content type %q, data %q, metadata %q; want %q, %q, %q, %q",
				i, r.EventType, r.ContentType, r.Data, r.UserMetadata, e.EventType, wantTypes[i], e.Data, e.Metadata)
		}
	}
}

// bigEvent is a binary event whose data makes it exactly size bytes by the
// max-append-size measure (type + data + metadata).
func bigEvent(size int) esdb.EventData {
	const typ = "BigTested"
	return esdb.EventData{EventID: uuid.New(), EventType: typ, ContentType: esdb.ContentTypeBinary, Data: bytes.Repeat([]byte{'x'}, size-len(typ))}
}

func appendTooLarge(t *testing.T, s *suite, c *esdb.Client) {
	// Just above the limit, and far above it: 5 MiB is beyond grpc-go's
	// default 4 MiB receive limit, which a server must raise so that the
	// client hears about the append size, not a transport error.
	for _, size := range []int{s.cfg.maxAppendSize + 1, max(s.cfg.maxAppendSize+1, 5<<20)} {
		stream := newStream("append-too-large")
		_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{}, bigEvent(size))
		if err == nil {
			t.Fatalf("append of one event of %d bytes (limit %d): no error", size, s.cfg.maxAppendSize)
		}
		if code := status.Code(err); code != codes.InvalidArgument {
			t.Errorf("append of one event of %d bytes (limit %d): %v (gRPC code %v), want InvalidArgument (maximum append size exceeded)", size, s.cfg.maxAppendSize, err, code)
		}
		requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
	}
}

func appendBatchTooLarge(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("append-batch-too-large")
	part := s.cfg.maxAppendSize/3 + 16
	_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{}, bigEvent(part), bigEvent(part), bigEvent(part))
	if err == nil {
		t.Fatalf("append of 3 events of %d bytes each (limit %d in total): no error", part, s.cfg.maxAppendSize)
	}
	if code := status.Code(err); code != codes.InvalidArgument {
		t.Errorf("append of 3 events of %d bytes each (limit %d in total): %v (gRPC code %v), want InvalidArgument", part, s.cfg.maxAppendSize, err, code)
	}
	requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
}

func appendJustUnderMax(t *testing.T, s *suite, c *esdb.Client) {
	stream := newStream("append-under-max")
	e := bigEvent(s.cfg.maxAppendSize - 1024)
	mustAppend(t, c, stream, esdb.NoStream{}, e)
	got := mustReadAllStream(t, c, stream)
	if len(got) != 1 || !bytes.Equal(got[0].OriginalEvent().Data, e.Data) {
		t.Fatalf("read back %d event(s); want the one %d-byte event intact", len(got), len(e.Data))
	}
}
