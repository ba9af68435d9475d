package conformance_test

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// These tests pin what only our embedded server promises, through the
// official client too, but outside the shared suite: they restart or
// reconfigure the server.

// TestEmbeddedRestartKeepsEverything checks that events, revisions,
// positions, metadata and tombstones survive a restart on the same
// directory: subscribers resume from positions they stored, so positions
// must be stable.
func TestEmbeddedRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	stream, gone := "restart-"+uuid.NewString(), "restart-gone-"+uuid.NewString()
	events := []esdb.EventData{NewEvent(0), NewEvent(1), NewEvent(2)}

	srv := MustStart(t, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	c := Connector(srv.URL())(t)
	MustAppend(t, c, stream, esdb.NoStream{}, events...)
	var meta esdb.StreamMetadata
	meta.SetMaxCount(100)
	meta.AddCustomProperty("owner", "restart")
	if _, err := c.SetStreamMetadata(t.Context(), stream, esdb.AppendToStreamOptions{}, meta); err != nil {
		t.Fatalf("set metadata: %v", err)
	}
	MustAppend(t, c, gone, esdb.NoStream{}, NewEvent(0))
	if _, err := c.TombstoneStream(t.Context(), gone, esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatalf("tombstone: %v", err)
	}
	before := MustRead(t, c, stream)
	if err := srv.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = c.Close()

	srv = MustStart(t, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	c = Connector(srv.URL())(t)
	after := MustRead(t, c, stream)
	type view struct {
		ID       uuid.UUID
		Revision uint64
		Position esdb.Position
		Data     string
	}
	views := func(evs []*esdb.RecordedEvent) []view {
		var out []view
		for _, e := range evs {
			out = append(out, view{e.EventID, e.EventNumber, e.Position, string(e.Data)})
		}
		return out
	}
	if diff := cmp.Diff(views(before), views(after)); diff != "" {
		t.Errorf("stream after restart (-before +after):\n%s", diff)
	}
	got, err := c.GetStreamMetadata(t.Context(), stream, esdb.ReadStreamOptions{})
	if err != nil || got.MaxCount() == nil || *got.MaxCount() != 100 || got.CustomProperty("owner") != "restart" {
		t.Errorf("metadata after restart: %+v, %v; want $maxCount 100 and owner restart", got, err)
	}
	_, err = c.AppendToStream(t.Context(), gone, esdb.AppendToStreamOptions{}, NewEvent(1))
	var esdbErr *esdb.Error
	if !errors.As(err, &esdbErr) || esdbErr.Code() != esdb.ErrorCodeStreamDeleted {
		t.Errorf("append to a stream tombstoned before the restart: %v, want stream deleted", err)
	}
	res := MustAppend(t, c, stream, esdb.Revision(2), NewEvent(3))
	if res.NextExpectedVersion != 3 {
		t.Errorf("first append after restart: NextExpectedVersion %d, want 3", res.NextExpectedVersion)
	}
	if last := before[len(before)-1].Position; res.CommitPosition <= last.Commit {
		t.Errorf("first append after restart at position %d, not after the last one before (%d)", res.CommitPosition, last.Commit)
	}
}

// TestEmbeddedLargeEvents checks that, with the append limit raised, an
// event far above grpc-go's default 4 MiB message limit goes in and comes
// back out (the server must raise its receive limit, and keep each read
// response under the client's 17 MiB).
func TestEmbeddedLargeEvents(t *testing.T) {
	srv := MustStart(t, server.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0", MaxAppendSize: 16 << 20})
	c := Connector(srv.URL())(t)
	stream := "large-" + uuid.NewString()
	big := esdb.EventData{EventID: uuid.New(), EventType: "LargeTested", ContentType: esdb.ContentTypeBinary, Data: bytes.Repeat([]byte("0123456789abcdef"), 5<<20/16)}
	// Two of them: a read response must not bundle them past the limit.
	big2 := big
	big2.EventID = uuid.New()
	MustAppend(t, c, stream, esdb.NoStream{}, big)
	MustAppend(t, c, stream, esdb.Revision(0), big2)
	got := MustRead(t, c, stream)
	if len(got) != 2 || !bytes.Equal(got[0].Data, big.Data) || !bytes.Equal(got[1].Data, big2.Data) {
		t.Fatalf("read back %d events; want both 5 MiB events intact", len(got))
	}
}

// NewEvent is a small JSON test event numbered i.
func NewEvent(i int) esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: "EmbeddedTested", ContentType: esdb.ContentTypeJson, Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
}

// MustAppend appends events and fails tb on error.
func MustAppend(tb testing.TB, c *esdb.Client, stream string, exp esdb.ExpectedRevision, events ...esdb.EventData) *esdb.WriteResult {
	tb.Helper()
	res, err := c.AppendToStream(tb.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, events...)
	if err != nil {
		tb.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

// MustRead reads all of stream forwards and fails tb on error.
func MustRead(tb testing.TB, c *esdb.Client, stream string) []*esdb.RecordedEvent {
	tb.Helper()
	rs, err := c.ReadStream(tb.Context(), stream, esdb.ReadStreamOptions{}, ^uint64(0))
	if err != nil {
		tb.Fatalf("read %s: %v", stream, err)
	}
	defer rs.Close()
	var out []*esdb.RecordedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("read %s: %v", stream, err)
		}
		out = append(out, ev.OriginalEvent())
	}
}
