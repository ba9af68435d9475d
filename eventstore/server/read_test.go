package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

func TestReadRefusesBadInput(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	c := MustConn(t, ts.Addr)

	edit := func(f func(o *streams.ReadReq_Options)) *streams.ReadReq {
		req := readAllRequest(10)
		f(req.Options)
		return req
	}
	subscribeFiltered := func(f func(fo *streams.ReadReq_Options_FilterOptions)) *streams.ReadReq {
		return edit(func(o *streams.ReadReq_Options) {
			o.CountOption = &streams.ReadReq_Options_Subscription{Subscription: &streams.ReadReq_Options_SubscriptionOptions{}}
			fo := &streams.ReadReq_Options_FilterOptions{
				Filter: &streams.ReadReq_Options_FilterOptions_StreamIdentifier{StreamIdentifier: &streams.ReadReq_Options_FilterOptions_Expression{
					Prefix: []string{"a"},
				}},
				Window:                       &streams.ReadReq_Options_FilterOptions_Max{Max: 32},
				CheckpointIntervalMultiplier: 1,
			}
			f(fo)
			o.FilterOption = &streams.ReadReq_Options_Filter{Filter: fo}
		})
	}
	unknownDirection := readAllRequest(10)
	unknownDirection.Options.ReadDirection = streams.ReadReq_Options_ReadDirection(7)
	unknownStreamOption := readAllRequest(10)
	unknownStreamOption.Options.StreamOption = nil
	unknownStreamOption.Options.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 11, protowire.BytesType), nil))

	tests := []struct {
		name string
		req  *streams.ReadReq
	}{
		{"no options", &streams.ReadReq{}},
		{"no uuid option", edit(func(o *streams.ReadReq_Options) { o.UuidOption = nil })},
		{"empty uuid option", edit(func(o *streams.ReadReq_Options) { o.UuidOption = &streams.ReadReq_Options_UUIDOption{} })},
		{"unknown read direction", unknownDirection},
		{"unknown stream option", unknownStreamOption},
		{"no count option", edit(func(o *streams.ReadReq_Options) { o.CountOption = nil })},
		{"nil stream options", edit(func(o *streams.ReadReq_Options) { o.StreamOption = &streams.ReadReq_Options_Stream{} })},
		{"empty stream name", edit(func(o *streams.ReadReq_Options) {
			o.StreamOption = &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
				StreamIdentifier: &shared.StreamIdentifier{},
				RevisionOption:   &streams.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}},
			}}
		})},
		{"stream without revision option", edit(func(o *streams.ReadReq_Options) {
			o.StreamOption = &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
				StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("s")},
			}}
		})},
		{"$all without position option", edit(func(o *streams.ReadReq_Options) {
			o.StreamOption = &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{}}
		})},
		{"backwards subscription", edit(func(o *streams.ReadReq_Options) {
			o.ReadDirection = streams.ReadReq_Options_Backwards
			o.CountOption = &streams.ReadReq_Options_Subscription{Subscription: &streams.ReadReq_Options_SubscriptionOptions{}}
		})},
		{"filter without expression", subscribeFiltered(func(fo *streams.ReadReq_Options_FilterOptions) { fo.Filter = nil })},
		{"filter with empty expression", subscribeFiltered(func(fo *streams.ReadReq_Options_FilterOptions) {
			fo.Filter = &streams.ReadReq_Options_FilterOptions_EventType{EventType: &streams.ReadReq_Options_FilterOptions_Expression{}}
		})},
		{"invalid regex", subscribeFiltered(func(fo *streams.ReadReq_Options_FilterOptions) {
			fo.Filter = &streams.ReadReq_Options_FilterOptions_EventType{EventType: &streams.ReadReq_Options_FilterOptions_Expression{Regex: "(["}}
		})},
		{"checkpoint multiplier 0", subscribeFiltered(func(fo *streams.ReadReq_Options_FilterOptions) { fo.CheckpointIntervalMultiplier = 0 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, _, err := rawRead(testContext(t), c, tt.req)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v after %d messages, want InvalidArgument", err, len(msgs))
			}
			if len(msgs) != 0 {
				t.Fatalf("got %d messages before the error, want none", len(msgs))
			}
		})
	}
}

func TestReadThroughClient(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	ctx := testContext(t)
	before := time.Now()
	MustAppend(t, client, "a", 3)
	MustAppend(t, client, "b", 2)
	if _, err := client.AppendToStream(ctx, "bin", esdb.AppendToStreamOptions{}, esdb.EventData{
		EventType: "Bin", ContentType: esdb.ContentTypeBinary, Data: []byte{0, 1, 2},
	}); err != nil {
		t.Fatal(err)
	}

	all := MustReadAll(t, client)
	if len(all) != 6 {
		t.Fatalf("read $all: %d events, want 6", len(all))
	}
	var prev uint64
	for _, ev := range all {
		e := ev.Event
		if e.Position.Commit <= prev || e.Position.Commit != e.Position.Prepare {
			t.Fatalf("positions not strictly increasing: %d after %d", e.Position.Commit, prev)
		}
		prev = e.Position.Commit
		if e.CreatedDate.Before(before.Add(-time.Minute)) || e.CreatedDate.After(time.Now().Add(time.Minute)) {
			t.Errorf("created %v is not around now", e.CreatedDate)
		}
	}
	if got := all[5].Event.ContentType; got != "application/octet-stream" {
		t.Errorf("binary event content type %q", got)
	}
	if got := all[0].Event.ContentType; got != "application/json" {
		t.Errorf("json event content type %q", got)
	}

	// Backwards from End, huge count, stream read with positions set.
	rs, err := client.ReadStream(ctx, "a", esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, ^uint64(0))
	if err != nil {
		t.Fatal(err)
	}
	var revs []uint64
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.Event.Position.Commit == 0 || ev.Event.StreamID != "a" {
			t.Fatalf("stream read event %+v lacks a position or stream", ev.Event)
		}
		revs = append(revs, ev.Event.EventNumber)
	}
	rs.Close()
	if diff := cmp.Diff([]uint64{2, 1, 0}, revs); diff != "" {
		t.Fatalf("backwards revisions (-want +got):\n%s", diff)
	}

	// A missing stream is ResourceNotFound.
	rs, err = client.ReadStream(ctx, "missing", esdb.ReadStreamOptions{}, 10)
	if err == nil {
		_, err = rs.Recv()
		rs.Close()
	}
	var esErr *esdb.Error
	if !errors.As(err, &esErr) || esErr.Code() != esdb.ErrorCodeResourceNotFound {
		t.Fatalf("read missing stream: got %v, want ResourceNotFound", err)
	}
}

func TestReadPagesAndUUIDForms(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	const n = 600 // more than one page
	MustAppend(t, client, "p", n)

	req := readAllRequest(^uint64(0))
	req.Options.UuidOption.Content = &streams.ReadReq_Options_UUIDOption_String_{String_: &shared.Empty{}}
	msgs, _, err := rawRead(testContext(t), c, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != n {
		t.Fatalf("got %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		ev := m.GetEvent().GetEvent()
		if ev == nil || ev.GetId().GetString_() == "" || ev.GetStreamRevision() != uint64(i) {
			t.Fatalf("message %d = %v, want event %d with a string id", i, m, i)
		}
		for _, k := range []string{"type", "content-type", "created"} {
			if ev.GetMetadata()[k] == "" {
				t.Fatalf("message %d lacks metadata %q", i, k)
			}
		}
	}

	// $all backwards from a position is exclusive; forwards inclusive.
	mid := msgs[300].GetEvent().GetEvent().GetCommitPosition()
	for _, tc := range []struct {
		dir  streams.ReadReq_Options_ReadDirection
		want uint64
	}{{streams.ReadReq_Options_Forwards, mid}, {streams.ReadReq_Options_Backwards, msgs[299].GetEvent().GetEvent().GetCommitPosition()}} {
		req := readAllRequest(1)
		req.Options.ReadDirection = tc.dir
		req.Options.StreamOption = &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{
			AllOption: &streams.ReadReq_Options_AllOptions_Position{Position: &streams.ReadReq_Options_Position{CommitPosition: mid, PreparePosition: mid}},
		}}
		got, _, err := rawRead(testContext(t), c, req)
		if err != nil || len(got) != 1 {
			t.Fatalf("read %v from %d: %v, %d messages", tc.dir, mid, err, len(got))
		}
		if p := got[0].GetEvent().GetEvent().GetCommitPosition(); p != tc.want {
			t.Fatalf("read %v from %d starts at %d, want %d", tc.dir, mid, p, tc.want)
		}
	}
}

func TestTombstonedStreamErrors(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)
	MustAppend(t, client, "t", 2)
	if _, err := client.TombstoneStream(ctx, "t", esdb.TombstoneStreamOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := client.AppendToStream(ctx, "t", esdb.AppendToStreamOptions{}, jsonEvent("A", 0))
	var esErr *esdb.Error
	if !errors.As(err, &esErr) || esErr.Code() != esdb.ErrorCodeStreamDeleted {
		t.Fatalf("append to tombstoned: got %v", err)
	}
	req := readAllRequest(10)
	req.Options.StreamOption = &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("t")},
		RevisionOption:   &streams.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}},
	}}
	_, trailers, err := rawRead(ctx, c, req)
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("read tombstoned: got %v", err)
	}
	want := map[string][]string{"exception": {"stream-deleted"}, "stream-name": {"t"}}
	for k := range want {
		if diff := cmp.Diff(want[k], trailers[k]); diff != "" {
			t.Errorf("trailer %q (-want +got):\n%s", k, diff)
		}
	}

	// A stream subscription gets the tombstone, then the error.
	sub, err := client.SubscribeToStream(ctx, "t", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var types []string
	for {
		ev := sub.Recv()
		if ev.EventAppeared != nil {
			types = append(types, ev.EventAppeared.Event.EventType)
		}
		if ev.SubscriptionDropped != nil {
			if status.Code(ev.SubscriptionDropped.Error) != codes.FailedPrecondition {
				t.Fatalf("dropped with %v", ev.SubscriptionDropped.Error)
			}
			break
		}
	}
	if diff := cmp.Diff([]string{"$streamDeleted"}, types); diff != "" {
		t.Fatalf("subscription events (-want +got):\n%s", diff)
	}
}

func TestDeleteAndTombstoneWrongExpectedVersion(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)
	MustAppend(t, client, "d", 2)

	res, err := client.DeleteStream(ctx, "missing", esdb.DeleteStreamOptions{ExpectedRevision: esdb.NoStream{}})
	if err != nil || res.Position.Commit == 0 {
		t.Fatalf("delete missing stream: %+v, %v", res, err)
	}
	req := &streams.DeleteReq{Options: &streams.DeleteReq_Options{
		StreamIdentifier:       &shared.StreamIdentifier{StreamName: []byte("d")},
		ExpectedStreamRevision: &streams.DeleteReq_Options_NoStream{NoStream: &shared.Empty{}},
	}}
	var trailers map[string][]string
	_, err = c.Delete(ctx, req, grpcTrailer(&trailers))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("delete with stale expectation: got %v", err)
	}
	want := map[string][]string{
		"exception": {"wrong-expected-version"}, "stream-name": {"d"},
		"expected-version": {"-1"}, "actual-version": {"1"},
	}
	for k := range want {
		if diff := cmp.Diff(want[k], trailers[k]); diff != "" {
			t.Errorf("trailer %q (-want +got):\n%s", k, diff)
		}
	}
	for name, call := range map[string]func() error{
		"delete without options": func() error { _, err := c.Delete(ctx, &streams.DeleteReq{}); return err },
		"tombstone without options": func() error {
			_, err := c.Tombstone(ctx, &streams.TombstoneReq{})
			return err
		},
		"tombstone without expectation": func() error {
			_, err := c.Tombstone(ctx, &streams.TombstoneReq{Options: &streams.TombstoneReq_Options{
				StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("d")},
			}})
			return err
		},
		"delete of an empty name": func() error {
			_, err := c.Delete(ctx, &streams.DeleteReq{Options: &streams.DeleteReq_Options{
				StreamIdentifier:       &shared.StreamIdentifier{},
				ExpectedStreamRevision: &streams.DeleteReq_Options_Any{Any: &shared.Empty{}},
			}})
			return err
		},
	} {
		if status.Code(call()) != codes.InvalidArgument {
			t.Errorf("%s: want InvalidArgument", name)
		}
	}
	tres, err := client.TombstoneStream(ctx, "d", esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Revision(1)})
	if err != nil || tres.Position.Commit == 0 {
		t.Fatalf("tombstone: %+v, %v", tres, err)
	}
}

func TestUnimplementedMethodsAnswerCleanly(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	c := MustConn(t, ts.Addr)
	st, err := c.BatchAppend(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("BatchAppend: got %v, want Unimplemented", err)
	}
}

func TestServerFeaturesAndGossip(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	v, err := client.GetServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&esdb.ServerVersion{Major: 24, Minor: 10, Patch: 0}, v); diff != "" {
		t.Fatalf("server version (-want +got):\n%s", diff)
	}

	// Discovery through gossip, with the node listed twice.
	for _, url := range []string{
		"esdb+discover://" + ts.Addr + "?tls=false",
		"esdb://" + ts.Addr + "," + ts.Addr + "?tls=false",
	} {
		t.Run(url, func(t *testing.T) {
			c := MustClient(t, url)
			MustAppend(t, c, "gossip", 1)
		})
	}
}

// TestSubscriptionNoGapNoDuplicate races appenders against the switch from
// catch-up to live: every event must arrive exactly once, in order.
func TestSubscriptionNoGapNoDuplicate(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	const writers, perWriter = 4, 150
	MustAppend(t, client, "pre", 300)

	ctx := testContext(t)
	sub, err := client.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				_, err := client.AppendToStream(ctx, fmt.Sprintf("w%d", w), esdb.AppendToStreamOptions{}, jsonEvent("W", i))
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	total := 300 + writers*perWriter
	var prev uint64
	seen, caughtUps := 0, 0
	for seen < total {
		ev := sub.Recv()
		switch {
		case ev.SubscriptionDropped != nil:
			t.Fatalf("dropped after %d events: %v", seen, ev.SubscriptionDropped.Error)
		case ev.CaughtUp != nil:
			caughtUps++
		case ev.EventAppeared != nil:
			p := ev.EventAppeared.OriginalEvent().Position.Commit
			if p <= prev {
				t.Fatalf("event at %d after %d: duplicate or out of order", p, prev)
			}
			prev = p
			seen++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if caughtUps > 1 {
		t.Fatalf("%d CaughtUp messages, want at most one", caughtUps)
	}
	n := len(MustReadAll(t, client))
	if n != total || prev != MustReadAll(t, client)[n-1].Event.Position.Commit {
		t.Fatalf("subscription saw %d events up to %d; $all has %d", seen, prev, n)
	}
}

// TestFilteredSubscriptionCheckpoints checks §6: checkpoints every
// multiplier × window considered events, one right before CaughtUp, strictly
// increasing, and live checkpoints after it.
func TestFilteredSubscriptionCheckpoints(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	MustAppend(t, client, "other", 25)
	MustAppend(t, client, "match", 3)

	req := readAllRequest(0)
	req.Options.CountOption = &streams.ReadReq_Options_Subscription{Subscription: &streams.ReadReq_Options_SubscriptionOptions{}}
	req.Options.FilterOption = &streams.ReadReq_Options_Filter{Filter: &streams.ReadReq_Options_FilterOptions{
		Filter: &streams.ReadReq_Options_FilterOptions_StreamIdentifier{StreamIdentifier: &streams.ReadReq_Options_FilterOptions_Expression{
			Prefix: []string{"match"},
		}},
		Window:                       &streams.ReadReq_Options_FilterOptions_Max{Max: 5},
		CheckpointIntervalMultiplier: 2,
	}}
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	st, err := c.Read(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	recv := func() *streams.ReadResp {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("recv after %v: %v", got, err)
		}
		switch {
		case m.GetConfirmation() != nil:
			got = append(got, "confirm")
		case m.GetCheckpoint() != nil:
			got = append(got, fmt.Sprintf("cp%d", m.GetCheckpoint().GetCommitPosition()))
		case m.GetCaughtUp() != nil:
			got = append(got, "caughtup")
		case m.GetEvent() != nil:
			got = append(got, fmt.Sprintf("ev%d", m.GetEvent().GetEvent().GetCommitPosition()))
		default:
			got = append(got, fmt.Sprintf("%T", m.GetContent()))
		}
		return m
	}
	for got == nil || got[len(got)-1] != "caughtup" {
		recv()
	}
	want := []string{"confirm", "cp10", "cp20", "ev26", "ev27", "ev28", "cp28", "caughtup"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("catch-up (-want +got):\n%s", diff)
	}
	// Live: 10 unmatched events make one checkpoint at the 10th.
	got = nil
	MustAppend(t, client, "other", 9)
	MustAppend(t, client, "match", 1)
	for len(got) < 2 {
		recv()
	}
	if diff := cmp.Diff([]string{"ev38", "cp38"}, got); diff != "" {
		t.Fatalf("live (-want +got):\n%s", diff)
	}
}

func TestShutdownEndsSubscriptions(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	MustAppend(t, client, "x", 1)
	sub, err := client.SubscribeToStream(testContext(t), "x", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for ev := sub.Recv(); ev.CaughtUp == nil; ev = sub.Recv() {
		if ev.SubscriptionDropped != nil {
			t.Fatalf("dropped: %v", ev.SubscriptionDropped.Error)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- ts.Close() }()
	for {
		ev := sub.Recv()
		if ev.SubscriptionDropped != nil {
			break
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := ts.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestFilteredCountReadOfAll(t *testing.T) {
	ts := MustStart(t, server.Options{})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	MustAppend(t, client, "skip", 3)
	MustAppend(t, client, "keep-1", 2)
	MustAppend(t, client, "keep-2", 2)

	req := readAllRequest(3)
	req.Options.FilterOption = &streams.ReadReq_Options_Filter{Filter: &streams.ReadReq_Options_FilterOptions{
		Filter: &streams.ReadReq_Options_FilterOptions_StreamIdentifier{StreamIdentifier: &streams.ReadReq_Options_FilterOptions_Expression{
			Regex: "eep-",
		}},
		Window: &streams.ReadReq_Options_FilterOptions_Count{Count: &shared.Empty{}},
	}}
	msgs, _, err := rawRead(testContext(t), c, req)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.GetEvent().GetEvent().GetStreamIdentifier().GetStreamName()))
	}
	if diff := cmp.Diff([]string{"keep-1", "keep-1", "keep-2"}, got); diff != "" {
		t.Fatalf("filtered read (-want +got):\n%s", diff)
	}
}

func TestSubscriptionToTombstonedStreamFindsTheTombstoneFarBack(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	ctx := testContext(t)
	MustAppend(t, client, "gone", 1)
	tomb, err := client.TombstoneStream(ctx, "gone", esdb.TombstoneStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// More records after the tombstone than a bounded backward scan of
	// $all would have looked at.
	for i := 0; i < 11; i++ {
		MustAppend(t, client, "after", 1000)
	}
	sub, err := client.SubscribeToStream(ctx, "gone", esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got []uint64
	for {
		ev := sub.Recv()
		if ev.EventAppeared != nil {
			e := ev.EventAppeared.Event
			if e.EventType != "$streamDeleted" {
				t.Fatalf("unexpected event %s@%d", e.EventType, e.EventNumber)
			}
			got = append(got, e.Position.Commit)
		}
		if ev.SubscriptionDropped != nil {
			if status.Code(ev.SubscriptionDropped.Error) != codes.FailedPrecondition {
				t.Fatalf("dropped with %v", ev.SubscriptionDropped.Error)
			}
			break
		}
	}
	if diff := cmp.Diff([]uint64{tomb.Position.Commit}, got); diff != "" {
		t.Fatalf("tombstone positions delivered (-want +got):\n%s", diff)
	}
}

// TestStalledSubscriberBlocksNobody checks §6's memory rule from the
// outside: a subscriber that never reads holds only its own stream (HTTP/2
// flow control stops its sends) while appends go on and other subscribers,
// on the same connection or another, receive everything.
func TestStalledSubscriberBlocksNobody(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	raw := MustConn(t, ts.Addr)
	ctx := testContext(t)

	subscribe := func() streams.Streams_ReadClient {
		req := readAllRequest(0)
		req.Options.CountOption = &streams.ReadReq_Options_Subscription{Subscription: &streams.ReadReq_Options_SubscriptionOptions{}}
		sub, err := raw.Read(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := sub.Recv(); err != nil || m.GetConfirmation() == nil {
			t.Fatalf("subscription confirmation: %v, %v", m, err)
		}
		return sub
	}
	_ = subscribe()       // stalled: never read again
	reader := subscribe() // same connection, reads everything
	other, err := client.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	// Far more than every HTTP/2 window of the stalled stream can hold.
	appends, perAppend := 24, 15
	if testing.Short() {
		appends = 8
	}
	data := bytes.Repeat([]byte{'d'}, 64<<10)
	for i := range appends {
		events := make([]esdb.EventData, perAppend)
		for j := range events {
			events[j] = esdb.EventData{EventID: uuid.New(), EventType: "Big", ContentType: esdb.ContentTypeBinary, Data: data}
		}
		if _, err := client.AppendToStream(ctx, "big", esdb.AppendToStreamOptions{}, events...); err != nil {
			t.Fatalf("append %d with a stalled subscriber: %v", i, err)
		}
	}
	total := appends * perAppend

	seen := 0
	for seen < total {
		m, err := reader.Recv()
		if err != nil {
			t.Fatalf("same-connection subscriber after %d events: %v", seen, err)
		}
		if m.GetEvent() != nil {
			seen++
		}
	}
	seen = 0
	for seen < total {
		ev := other.Recv()
		if ev.SubscriptionDropped != nil {
			t.Fatalf("other subscriber dropped after %d events: %v", seen, ev.SubscriptionDropped.Error)
		}
		if ev.EventAppeared != nil {
			seen++
		}
	}
}

func TestStreamDeletedTrailerSurvivesControlCharactersInTheName(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)
	for name, shown := range map[string]string{
		"line\nbreak": "line%0Abreak",
		"nul\x00byte": "nul%00byte",
		"tab\tand-é%": "tab\tand-é%",
	} {
		if _, err := client.TombstoneStream(ctx, name, esdb.TombstoneStreamOptions{}); err != nil {
			t.Fatalf("tombstone %q: %v", name, err)
		}
		// Through the client: stream deleted, not an unknown error.
		_, err := client.TombstoneStream(ctx, name, esdb.TombstoneStreamOptions{})
		var esErr *esdb.Error
		if !errors.As(err, &esErr) || esErr.Code() != esdb.ErrorCodeStreamDeleted {
			t.Errorf("tombstone %q twice: got %v, want stream deleted", name, err)
		}
		req := readAllRequest(10)
		req.Options.StreamOption = &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
			RevisionOption:   &streams.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}},
		}}
		_, trailers, err := rawRead(ctx, c, req)
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("read %q: got %v, want FailedPrecondition", name, err)
		}
		if diff := cmp.Diff([]string{shown}, trailers["stream-name"]); diff != "" {
			t.Errorf("stream-name trailer of %q (-want +got):\n%s", name, diff)
		}
	}
}
