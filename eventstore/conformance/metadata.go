package conformance

import (
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
)

func metadataBehaviours() []behaviour {
	return []behaviour{
		{"set and get round trip every field with an ACL object", metadataRoundTripACLObject},
		{"set and get round trip a user stream ACL string", metadataRoundTripACLString},
		{"get returns the latest of several metadata writes", metadataLatestWins},
		{"metadata writes are appends to the $$ stream", metadataWriteResults},
		{"get with no metadata set is not found", metadataNone},
		{"$maxCount keeps only the last N in stream reads, not in $all", metadataMaxCount},
		{"$tb hides revisions below it in stream reads, not in $all", metadataTruncateBefore},
		{"$maxAge hides old events in stream reads, not in $all", metadataMaxAge},
	}
}

// metaView is StreamMetadata with exported fields, so that cmp can diff it
// (the client's type hides its fields).
type metaView struct {
	MaxCount       *uint64
	MaxAge         *time.Duration
	TruncateBefore *uint64
	CacheControl   *time.Duration
	ACLString      string
	ACLRead        []string
	ACLWrite       []string
	ACLDelete      []string
	ACLMetaRead    []string
	ACLMetaWrite   []string
	Custom         map[string]any
}

func viewOf(m *esdb.StreamMetadata) metaView {
	v := metaView{
		MaxCount:       m.MaxCount(),
		MaxAge:         m.MaxAge(),
		TruncateBefore: m.TruncateBefore(),
		CacheControl:   m.CacheControl(),
		Custom:         m.CustomProperties(),
	}
	if s, ok := m.Acl().(string); ok {
		v.ACLString = s
	}
	if acl := m.StreamAcl(); acl != nil {
		v.ACLRead, v.ACLWrite, v.ACLDelete = acl.ReadRoles(), acl.WriteRoles(), acl.DeleteRoles()
		v.ACLMetaRead, v.ACLMetaWrite = acl.MetaReadRoles(), acl.MetaWriteRoles()
	}
	return v
}

// mustSetMetadata sets stream's metadata and fails t on error.
func mustSetMetadata(t *testing.T, c *esdb.Client, stream string, meta esdb.StreamMetadata) *esdb.WriteResult {
	t.Helper()
	res, err := c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{}, meta)
	if err != nil {
		t.Fatalf("set metadata of %s: %v", stream, err)
	}
	return res
}

// mustGetMetadata gets stream's metadata and fails t on error.
func mustGetMetadata(t *testing.T, c *esdb.Client, stream string) *esdb.StreamMetadata {
	t.Helper()
	meta, err := c.GetStreamMetadata(t.Context(), stream, esdb.ReadStreamOptions{})
	if err != nil {
		t.Fatalf("get metadata of %s: %v", stream, err)
	}
	return meta
}

// requireMetadata fails t unless stream's metadata reads back as want.
func requireMetadata(t *testing.T, c *esdb.Client, stream string, want esdb.StreamMetadata) {
	t.Helper()
	got := mustGetMetadata(t, c, stream)
	if diff := cmp.Diff(viewOf(&want), viewOf(got)); diff != "" {
		t.Errorf("metadata of %s (-set +got):\n%s", stream, diff)
	}
}

func metadataRoundTripACLObject(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("meta-roundtrip")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvent("MetaTested", 0))
	var meta esdb.StreamMetadata
	meta.SetMaxCount(17)
	meta.SetMaxAge(3 * time.Hour)
	meta.SetTruncateBefore(5)
	meta.SetCacheControl(42 * time.Second)
	// One role per list: the client reads a JSON array of roles back as an
	// error (it expects []string, JSON gives []any), whatever the server.
	var acl esdb.Acl
	acl.AddReadRoles("$all")
	acl.AddWriteRoles("writer")
	acl.AddDeleteRoles("$admins")
	acl.AddMetaReadRoles("reader")
	acl.AddMetaWriteRoles("$admins")
	meta.SetAcl(acl)
	// JSON numbers come back as float64.
	meta.AddCustomProperty("owner", "fleetjobs")
	meta.AddCustomProperty("weight", 1.5)
	meta.AddCustomProperty("enabled", true)
	meta.AddCustomProperty("nested", map[string]any{"a": "b"})
	mustSetMetadata(t, c, stream, meta)
	requireMetadata(t, c, stream, meta)
}

func metadataRoundTripACLString(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("meta-acl-string")
	var meta esdb.StreamMetadata
	meta.SetAcl(esdb.UserStreamAcl)
	meta.SetMaxAge(2 * time.Second)
	mustSetMetadata(t, c, stream, meta)
	requireMetadata(t, c, stream, meta)
	if got := mustGetMetadata(t, c, stream); !got.IsUserStreamAcl() {
		t.Errorf("IsUserStreamAcl() = false after setting $userStreamAcl")
	}
}

func metadataLatestWins(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("meta-latest")
	for i := range uint64(3) {
		var meta esdb.StreamMetadata
		meta.SetMaxCount(10 + i)
		meta.AddCustomProperty("version", float64(i))
		mustSetMetadata(t, c, stream, meta)
		// GetStreamMetadata reads $$X forwards from start, count 1: the
		// metastream must behave as if $maxCount were 1.
		requireMetadata(t, c, stream, meta)
	}
}

func metadataWriteResults(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("meta-results")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvents("MetaTested", 5)...)
	var meta esdb.StreamMetadata
	meta.SetMaxCount(3)
	if got := mustSetMetadata(t, c, stream, meta).NextExpectedVersion; got != 0 {
		t.Errorf("first metadata write: NextExpectedVersion = %d, want 0 (a revision of $$%s)", got, stream)
	}
	res, err := c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, meta)
	if err != nil {
		t.Fatalf("second metadata write expecting $$ revision 0: %v", err)
	}
	if res.NextExpectedVersion != 1 {
		t.Errorf("second metadata write: NextExpectedVersion = %d, want 1", res.NextExpectedVersion)
	}
	_, err = c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Revision(0)}, meta)
	requireWrongExpectedVersion(t, err, "1", "metadata write expecting a stale $$ revision")
	if res.CommitPosition == 0 {
		t.Errorf("metadata write: position %d, want > 0", res.CommitPosition)
	}
}

func metadataNone(t *testing.T, _ *suite, c *esdb.Client) {
	stream := newStream("meta-none")
	_, err := c.GetStreamMetadata(t.Context(), stream, esdb.ReadStreamOptions{})
	requireCode(t, err, esdb.ErrorCodeResourceNotFound, "get metadata of a missing stream")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvent("MetaTested", 0))
	_, err = c.GetStreamMetadata(t.Context(), stream, esdb.ReadStreamOptions{})
	requireCode(t, err, esdb.ErrorCodeResourceNotFound, "get metadata of a stream without metadata")
}

// truncationFixture appends n events one by one (each with a position of
// its own) and returns the stream, the events and the first event's position.
func truncationFixture(t *testing.T, c *esdb.Client, n int) (string, []esdb.EventData, esdb.Position) {
	t.Helper()
	stream := newStream("meta-truncate")
	events := appendSingles(t, c, stream, "TruncateTested", n)
	return stream, events, positionOf(t, c, stream, 0)
}

// requireAllStillHas fails t unless $all still holds all n events of stream.
func requireAllStillHas(t *testing.T, c *esdb.Client, from esdb.Position, stream string, n int) {
	t.Helper()
	if got := collectAllOf(t, c, from, stream, n); len(got) != n {
		t.Errorf("$all holds %d of the %d events of %s; truncation must not hide events from $all", len(got), n, stream)
	}
}

func metadataMaxCount(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _, from := truncationFixture(t, c, 10)
	var meta esdb.StreamMetadata
	meta.SetMaxCount(3)
	mustSetMetadata(t, c, stream, meta)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 100, revRange(7, 9))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 100, revDown(9, 7))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(2)}, 2, revRange(7, 8))
	requireAllStillHas(t, c, from, stream, 10)

	// The window moves with new appends.
	mustAppend(t, c, stream, esdb.Revision(9), testEvent("TruncateTested", 10))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 100, revRange(8, 10))
}

func metadataTruncateBefore(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _, from := truncationFixture(t, c, 10)
	var meta esdb.StreamMetadata
	meta.SetTruncateBefore(4)
	mustSetMetadata(t, c, stream, meta)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 100, revRange(4, 9))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(2)}, 3, revRange(4, 6))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 100, revDown(9, 4))
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.Revision(3)}, 100, nil)
	requireAllStillHas(t, c, from, stream, 10)

	// Truncating everything leaves an existing, empty stream.
	meta.SetTruncateBefore(100)
	mustSetMetadata(t, c, stream, meta)
	requireRevisions(t, c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 100, nil)
}

func metadataMaxAge(t *testing.T, _ *suite, c *esdb.Client) {
	stream, _, from := truncationFixture(t, c, 3)
	var meta esdb.StreamMetadata
	meta.SetMaxAge(time.Second)
	mustSetMetadata(t, c, stream, meta)

	// Poll until the events are older than a second: hidden, but the stream
	// still exists (an empty read, not not-found).
	deadline := time.Now().Add(waitTimeout)
	for {
		events, err := readStream(t.Context(), c, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 100)
		if err != nil {
			t.Fatalf("read %s with $maxAge 1s: %v (hidden events must leave the stream existing)", stream, err)
		}
		if len(events) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events of %s still visible %v after setting $maxAge 1s: revisions %v", stream, waitTimeout, revisions(events))
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	requireAllStillHas(t, c, from, stream, 3)

	// A new event is young enough to be seen.
	next := testEvent("TruncateTested", 3)
	mustAppend(t, c, stream, esdb.Revision(2), next)
	got := mustReadAllStream(t, c, stream)
	if len(got) == 0 {
		// It may already have aged out on a very slow machine; that is
		// not a failure of $maxAge.
		t.Logf("the new event aged out before it could be read")
		return
	}
	if r := got[len(got)-1].OriginalEvent(); r.EventID != next.EventID || r.EventNumber != 3 {
		t.Errorf("after $maxAge: newest visible event is revision %d, want the new event at 3", r.EventNumber)
	}
}
