package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

func TestStartOnDiskLocksAndReopens(t *testing.T) {
	dir := t.TempDir()
	ts := MustStart(t, server.Options{Dir: dir})
	client := MustClient(t, ts.URL)
	res := MustAppend(t, client, "durable", 3)

	if _, err := server.Start(context.Background(), server.Options{Dir: dir, Listen: "127.0.0.1:0"}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Start on %s: got %v, want ErrLocked", dir, err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}

	again := MustStart(t, server.Options{Dir: dir})
	all := MustReadAll(t, MustClient(t, again.URL))
	if len(all) != 3 {
		t.Fatalf("after reopen: %d events, want 3", len(all))
	}
	if got := all[2].Event.Position.Commit; got != res.CommitPosition {
		t.Fatalf("last position after reopen %d, want %d", got, res.CommitPosition)
	}
}

func TestReadResolvesLinks(t *testing.T) {
	ts := MustStart(t, server.Options{})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)
	MustAppend(t, client, "target", 2)
	link := func(data string) esdb.EventData {
		return esdb.EventData{EventID: uuid.New(), EventType: "$>", ContentType: esdb.ContentTypeBinary, Data: []byte(data)}
	}
	if _, err := client.AppendToStream(ctx, "links", esdb.AppendToStreamOptions{},
		link("1@target"), link("7@target"), link("0@missing"), link("garbage")); err != nil {
		t.Fatal(err)
	}

	req := readAllRequest(10)
	req.Options.ResolveLinks = true
	req.Options.StreamOption = &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("links")},
		RevisionOption:   &streams.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}},
	}}
	msgs, _, err := rawRead(ctx, c, req)
	if err != nil {
		t.Fatal(err)
	}
	type view struct {
		Event      string
		Link       string
		LinkCommit bool
	}
	var got []view
	for _, m := range msgs {
		e := m.GetEvent()
		v := view{Link: string(e.GetLink().GetStreamIdentifier().GetStreamName()),
			LinkCommit: e.GetCommitPosition() == e.GetLink().GetCommitPosition()}
		if e.GetEvent() != nil {
			v.Event = string(e.GetEvent().GetStreamIdentifier().GetStreamName()) + "@" + e.GetEvent().GetMetadata()["type"]
		}
		got = append(got, v)
	}
	want := []view{
		{Event: "target@TestEvent", Link: "links", LinkCommit: true},
		{Link: "links", LinkCommit: true},
		{Link: "links", LinkCommit: true},
		{Link: "links", LinkCommit: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("resolved links (-want +got):\n%s", diff)
	}
}

func TestStartReadOnlyServesTheLogAndRefusesWrites(t *testing.T) {
	dir := t.TempDir()
	ts := MustStart(t, server.Options{Dir: dir})
	MustAppend(t, MustClient(t, ts.URL), "kept", 3)
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}

	// Two read-only stores on one directory at once.
	ro := MustStart(t, server.Options{Dir: dir, ReadOnly: true})
	ro2 := MustStart(t, server.Options{Dir: dir, ReadOnly: true})
	for _, url := range []string{ro.URL, ro2.URL} {
		if all := MustReadAll(t, MustClient(t, url)); len(all) != 3 {
			t.Fatalf("read-only store at %s: %d events, want 3", url, len(all))
		}
	}
	client := MustClient(t, ro.URL)
	ctx := testContext(t)
	_, err := client.AppendToStream(ctx, "kept", esdb.AppendToStreamOptions{},
		esdb.EventData{EventID: uuid.New(), EventType: "E", ContentType: esdb.ContentTypeJson, Data: []byte("{}")})
	if !refusedReadOnly(err) {
		t.Fatalf("append to a read-only store: %v, want FailedPrecondition, read-only", err)
	}
	t.Logf("append refused: %v", err)
	if _, err := client.DeleteStream(ctx, "kept", esdb.DeleteStreamOptions{}); !refusedReadOnly(err) {
		t.Fatalf("delete on a read-only store: %v, want FailedPrecondition, read-only", err)
	}
	if all := MustReadAll(t, client); len(all) != 3 {
		t.Fatalf("after the refused writes: %d events, want 3", len(all))
	}
}

// refusedReadOnly reports whether err is a read-only store's refusal as
// the official client returns it.
func refusedReadOnly(err error) bool {
	return err != nil && strings.Contains(err.Error(), "code = FailedPrecondition") &&
		strings.Contains(err.Error(), "event store is read-only")
}
