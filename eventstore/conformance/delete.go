package conformance

import (
	"fmt"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func deleteBehaviours() []behaviour {
	return []behaviour{
		{"soft delete makes reads not found and answers a position", deleteHidesStream},
		{"appending after a soft delete continues at last+1 and keeps old events hidden", deleteThenAppend},
		{"no stream recreates a soft-deleted stream", deleteThenNoStream},
		{"stream exists on a soft-deleted stream is stream deleted", deleteThenStreamExists},
		{"delete with the right expected revision succeeds", deleteRightRevision},
		{"delete with a wrong expected revision fails and deletes nothing", deleteWrongRevision},
		{"delete of a missing stream with any or no stream succeeds", deleteMissing},
		{"metadata set on a soft-deleted stream makes it read as empty", deleteThenMetadata},
	}
}

// mustDelete soft-deletes stream and checks the result's position.
func mustDelete(t *testing.T, c *esdb.Client, stream string, exp esdb.ExpectedRevision) *esdb.DeleteResult {
	t.Helper()
	res, err := c.DeleteStream(t.Context(), stream, esdb.DeleteStreamOptions{ExpectedRevision: exp})
	if err != nil {
		t.Fatalf("delete %s (expected %s): %v", stream, expectedString(exp), err)
	}
	if res.Position.Commit == 0 || res.Position.Prepare == 0 {
		t.Errorf("delete %s: position %+v, want commit and prepare > 0", stream, res.Position)
	}
	return res
}

// mustTombstone hard-deletes stream and checks the result's position.
func mustTombstone(t *testing.T, c *esdb.Client, stream string, exp esdb.ExpectedRevision) *esdb.DeleteResult {
	t.Helper()
	res, err := c.TombstoneStream(t.Context(), stream, esdb.TombstoneStreamOptions{ExpectedRevision: exp})
	if err != nil {
		t.Fatalf("tombstone %s (expected %s): %v", stream, expectedString(exp), err)
	}
	if res.Position.Commit == 0 || res.Position.Prepare == 0 {
		t.Errorf("tombstone %s: position %+v, want commit and prepare > 0", stream, res.Position)
	}
	return res
}

func deleteHidesStream(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete")
	appendSingles(t, c, stream, "DeleteTested", 3)
	first, last := positionOf(t, c, stream, 0), positionOf(t, c, stream, 2)
	del := mustDelete(t, c, stream, esdb.Any{})
	if comparePositions(del.Position, last) <= 0 {
		t.Errorf("delete position %+v is not after the stream's last event %+v", del.Position, last)
	}
	requireReadError(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, esdb.ErrorCodeResourceNotFound)
	requireReadError(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, esdb.ErrorCodeResourceNotFound)
	// The events stay in $all until a scavenge.
	if got := collectAllOf(t, c, first, stream, 3); len(got) != 3 {
		t.Errorf("$all after soft delete holds %d of the 3 events, want all of them", len(got))
	}
}

func deleteThenAppend(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete-append")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("DeleteTested", 3)...)
	mustDelete(t, c, stream, esdb.Revision(2))
	next := testEvent("DeleteTested", 3)
	if got := mustAppend(t, c, stream, esdb.Any{}, next).NextExpectedVersion; got != 3 {
		t.Errorf("append after delete: NextExpectedVersion = %d, want 3 (numbering continues)", got)
	}
	got := mustReadAllStream(t, c, stream)
	if diff := cmp.Diff([]uint64{3}, revisions(got)); diff != "" {
		t.Errorf("revisions after recreation (-want +got):\n%s", diff)
	}
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 10, []uint64{3})
	_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, testEvent("DeleteTested", 4))
	requireWrongExpectedVersion(t, err, "3", "append with no stream to the recreated stream")
}

func deleteThenNoStream(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete-nostream")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("DeleteTested", 2)...)
	mustDelete(t, c, stream, esdb.Any{})
	next := testEvent("DeleteTested", 2)
	if got := mustAppend(t, c, stream, esdb.NoStream{}, next).NextExpectedVersion; got != 2 {
		t.Errorf("append with no stream after delete: NextExpectedVersion = %d, want 2", got)
	}
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 10, []uint64{2})
}

func deleteThenStreamExists(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete-exists")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("DeleteTested", 2)...)
	mustDelete(t, c, stream, esdb.Any{})
	_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, testEvent("DeleteTested", 2))
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "append with stream exists to a soft-deleted stream")
}

func deleteRightRevision(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete-revision")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("DeleteTested", 3)...)
	mustDelete(t, c, stream, esdb.Revision(2))
	requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
	other := newStream("delete-exists-ok")
	mustAppend(t, c, other, esdb.NoStream{}, testEvents("DeleteTested", 1)...)
	mustDelete(t, c, other, esdb.StreamExists{})
	requireReadError(t, c, other, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
}

// requireWrongExpectedVersionStatus fails t unless err is the status a
// delete or tombstone answers a wrong expected version with:
// FailedPrecondition (the client has no mapping for its trailers and reports
// ErrorCodeUnknown).
func requireWrongExpectedVersionStatus(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want a wrong expected version", what)
	}
	if code := status.Code(err); code != codes.FailedPrecondition {
		t.Fatalf("%s: %v (gRPC code %v), want FailedPrecondition (wrong expected version)", what, err, code)
	}
	if code, ok := esdbCode(err); ok && code == esdb.ErrorCodeStreamDeleted {
		t.Fatalf("%s: got stream deleted, want a wrong expected version", what)
	}
}

func deleteWrongRevision(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete-wrong")
	events := testEvents("DeleteTested", 3)
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	for _, exp := range []esdb.ExpectedRevision{esdb.Revision(1), esdb.Revision(7), esdb.NoStream{}} {
		_, err := c.DeleteStream(t.Context(), stream, esdb.DeleteStreamOptions{ExpectedRevision: exp})
		requireWrongExpectedVersionStatus(t, err, fmt.Sprintf("delete expecting %s a stream at revision 2", expectedString(exp)))
	}
	missing := newStream("delete-wrong-missing")
	for _, exp := range []esdb.ExpectedRevision{esdb.Revision(0), esdb.StreamExists{}} {
		_, err := c.DeleteStream(t.Context(), missing, esdb.DeleteStreamOptions{ExpectedRevision: exp})
		requireWrongExpectedVersionStatus(t, err, fmt.Sprintf("delete expecting %s a missing stream", expectedString(exp)))
	}
	requireStreamIDs(t, c, stream, ids(events))
}

func deleteMissing(t *testing.T, _ *suite, c *esdb.Client) {
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}} {
		stream := newStream("delete-missing")
		if _, err := c.DeleteStream(t.Context(), stream, esdb.DeleteStreamOptions{ExpectedRevision: exp}); err != nil {
			t.Fatalf("delete of a missing stream expecting %s: %v", expectedString(exp), err)
		}
		requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeResourceNotFound)
		if got := mustAppend(t, c, stream, esdb.NoStream{}, testEvent("DeleteTested", 0)).NextExpectedVersion; got != 0 {
			t.Errorf("first append after deleting a missing stream: NextExpectedVersion = %d, want 0", got)
		}
	}
}

func deleteThenMetadata(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("delete-meta")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("DeleteTested", 3)...)
	mustDelete(t, c, stream, esdb.Any{})
	var meta esdb.StreamMetadata
	meta.SetMaxCount(10)
	if _, err := c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{}, meta); err != nil {
		t.Fatalf("set metadata on a soft-deleted stream: %v", err)
	}
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 10, nil)
	if got := mustAppend(t, c, stream, esdb.Any{}, testEvent("DeleteTested", 3)).NextExpectedVersion; got != 3 {
		t.Errorf("append after delete and metadata: NextExpectedVersion = %d, want 3", got)
	}
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 10, []uint64{3})
}

func tombstoneBehaviours() []behaviour {
	return []behaviour{
		{"reads of a tombstoned stream are stream deleted", tombstoneReads},
		{"appends to a tombstoned stream are stream deleted whatever the expected revision", tombstoneAppends},
		{"metadata reads and writes of a tombstoned stream are stream deleted", tombstoneMetadata},
		{"tombstone twice and delete after tombstone are stream deleted", tombstoneTwice},
		{"tombstone of a missing stream succeeds", tombstoneMissing},
		{"tombstone with a wrong expected revision fails and deletes nothing", tombstoneWrongRevision},
		{"the tombstone is a $streamDeleted event in $all", tombstoneInAll},
	}
}

// tombstoned returns a fresh stream with three events, tombstoned.
func tombstoned(t *testing.T, c *esdb.Client) (string, *esdb.DeleteResult) {
	t.Helper()
	stream := newStream("tombstone")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("TombstoneTested", 3)...)
	return stream, mustTombstone(t, c, stream, esdb.Any{})
}

func tombstoneReads(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := tombstoned(t, c)
	for _, opts := range []esdb.ReadStreamOptions{
		{Direction: esdb.Forwards, From: esdb.Start{}},
		{Direction: esdb.Backwards, From: esdb.End{}},
		{Direction: esdb.Forwards, From: esdb.Revision(1)},
	} {
		requireReadError(t, c, stream, opts, esdb.ErrorCodeStreamDeleted)
	}
}

func tombstoneAppends(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := tombstoned(t, c)
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}, esdb.StreamExists{}, esdb.Revision(2), esdb.Revision(5)} {
		_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, testEvent("TombstoneTested", 3))
		requireCode(t, err, esdb.ErrorCodeStreamDeleted, "append expecting "+expectedString(exp)+" to a tombstoned stream")
	}
}

func tombstoneMetadata(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := tombstoned(t, c)
	_, err := c.GetStreamMetadata(t.Context(), stream, esdb.ReadStreamOptions{})
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "get metadata of a tombstoned stream")
	var meta esdb.StreamMetadata
	meta.SetMaxCount(3)
	_, err = c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{}, meta)
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "set metadata of a tombstoned stream")
}

func tombstoneTwice(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _ := tombstoned(t, c)
	_, err := c.TombstoneStream(t.Context(), stream, esdb.TombstoneStreamOptions{})
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "second tombstone")
	_, err = c.DeleteStream(t.Context(), stream, esdb.DeleteStreamOptions{})
	requireCode(t, err, esdb.ErrorCodeStreamDeleted, "soft delete after tombstone")
}

func tombstoneMissing(t *testing.T, _ *suite, c *esdb.Client) {
	for _, exp := range []esdb.ExpectedRevision{esdb.Any{}, esdb.NoStream{}} {
		stream := newStream("tombstone-missing")
		mustTombstone(t, c, stream, exp)
		requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeStreamDeleted)
		_, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{}, testEvent("TombstoneTested", 0))
		requireCode(t, err, esdb.ErrorCodeStreamDeleted, "append to a stream tombstoned while missing")
	}
}

func tombstoneWrongRevision(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("tombstone-wrong")
	events := testEvents("TombstoneTested", 3)
	mustAppend(t, c, stream, esdb.NoStream{}, events...)
	for _, exp := range []esdb.ExpectedRevision{esdb.Revision(0), esdb.NoStream{}} {
		_, err := c.TombstoneStream(t.Context(), stream, esdb.TombstoneStreamOptions{ExpectedRevision: exp})
		requireWrongExpectedVersionStatus(t, err, "tombstone expecting "+expectedString(exp)+" a stream at revision 2")
	}
	requireStreamIDs(t, c, stream, ids(events))
	mustTombstone(t, c, stream, esdb.Revision(2))
	requireReadError(t, c, stream, esdb.ReadStreamOptions{}, esdb.ErrorCodeStreamDeleted)
}

func tombstoneInAll(t *testing.T, _ *suite, c *esdb.Client) {
	stream, res := tombstoned(t, c)
	var got []*esdb.ResolvedEvent
	readAll(t, c, esdb.ReadAllOptions{Direction: esdb.Forwards, From: res.Position}, 1, func(ev *esdb.ResolvedEvent) bool {
		got = append(got, ev)
		return true
	})
	if len(got) != 1 {
		t.Fatalf("$all from the tombstone's position %+v: got %d events, want the tombstone", res.Position, len(got))
	}
	r := got[0].OriginalEvent()
	if r.StreamID != stream || r.EventType != "$streamDeleted" || r.EventNumber != tombstoneRevision {
		t.Errorf("$all at the tombstone's position: %s@%s type %q, want %d@%s type $streamDeleted", uitoa(r.EventNumber), r.StreamID, r.EventType, tombstoneRevision, stream)
	}
	if r.Position != res.Position {
		t.Errorf("tombstone event at %+v, but TombstoneStream answered %+v", r.Position, res.Position)
	}
}
