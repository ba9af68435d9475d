package server_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
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
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

func TestAppendRefusesBadInput(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true, MaxAppendSize: 1000})
	c := MustConn(t, ts.Addr)

	withMeta := func(meta map[string]string) *streams.AppendReq {
		m := proposed([]byte("x"))
		m.GetProposedMessage().Metadata = meta
		return m
	}
	withID := func(id *shared.UUID) *streams.AppendReq {
		m := proposed([]byte("x"))
		m.GetProposedMessage().Id = id
		return m
	}
	missingMeta := map[string][]string{
		"exception":                    {"missing-required-metadata-property"},
		"required-metadata-properties": {"type,content-type"},
	}
	tooBig := map[string][]string{
		"exception":           {"maximum-append-size-exceeded"},
		"maximum-append-size": {"1000"},
	}
	tests := []struct {
		name     string
		msgs     []*streams.AppendReq
		code     codes.Code
		trailers map[string][]string // expected subset of the trailers
	}{
		{name: "no message at all", code: codes.InvalidArgument},
		{name: "proposed message before options", msgs: []*streams.AppendReq{proposed([]byte("x"))}, code: codes.InvalidArgument},
		{name: "empty content oneof first", msgs: []*streams.AppendReq{{}}, code: codes.InvalidArgument},
		{name: "options sent twice", msgs: []*streams.AppendReq{appendOptions("s"), appendOptions("s")}, code: codes.InvalidArgument},
		{name: "options after an event", msgs: []*streams.AppendReq{appendOptions("s"), proposed([]byte("x")), appendOptions("s")}, code: codes.InvalidArgument},
		{name: "empty stream name", msgs: []*streams.AppendReq{appendOptions(""), proposed([]byte("x"))}, code: codes.InvalidArgument},
		{name: "nil stream identifier", msgs: []*streams.AppendReq{{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			ExpectedStreamRevision: &streams.AppendReq_Options_Any{Any: &shared.Empty{}},
		}}}}, code: codes.InvalidArgument},
		{name: "expected revision missing", msgs: []*streams.AppendReq{{Content: &streams.AppendReq_Options_{Options: &streams.AppendReq_Options{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("s")},
		}}}}, code: codes.InvalidArgument},
		{name: "nil options message", msgs: []*streams.AppendReq{{Content: &streams.AppendReq_Options_{}}}, code: codes.InvalidArgument},
		{name: "$all as a stream name", msgs: []*streams.AppendReq{appendOptions("$all"), proposed([]byte("x"))}, code: codes.InvalidArgument},
		{name: "missing id", msgs: []*streams.AppendReq{appendOptions("s"), withID(nil)}, code: codes.InvalidArgument},
		{name: "empty id oneof", msgs: []*streams.AppendReq{appendOptions("s"), withID(&shared.UUID{})}, code: codes.InvalidArgument},
		{name: "nil structured id", msgs: []*streams.AppendReq{appendOptions("s"), withID(&shared.UUID{Value: &shared.UUID_Structured_{}})}, code: codes.InvalidArgument},
		{name: "nil uuid", msgs: []*streams.AppendReq{appendOptions("s"), withID(structuredID(uuid.Nil))}, code: codes.InvalidArgument},
		{name: "nil uuid as string", msgs: []*streams.AppendReq{appendOptions("s"), withID(&shared.UUID{Value: &shared.UUID_String_{String_: uuid.Nil.String()}})}, code: codes.InvalidArgument},
		{name: "malformed string uuid", msgs: []*streams.AppendReq{appendOptions("s"), withID(&shared.UUID{Value: &shared.UUID_String_{String_: "not-a-uuid"}})}, code: codes.InvalidArgument},
		{name: "missing type", msgs: []*streams.AppendReq{appendOptions("s"), withMeta(map[string]string{"content-type": "application/json"})}, code: codes.InvalidArgument, trailers: missingMeta},
		{name: "missing content type", msgs: []*streams.AppendReq{appendOptions("s"), withMeta(map[string]string{"type": "T"})}, code: codes.InvalidArgument, trailers: missingMeta},
		{name: "no metadata", msgs: []*streams.AppendReq{appendOptions("s"), withMeta(nil)}, code: codes.InvalidArgument, trailers: missingMeta},
		{name: "empty type", msgs: []*streams.AppendReq{appendOptions("s"), withMeta(map[string]string{"type": "", "content-type": "application/json"})}, code: codes.InvalidArgument},
		{name: "empty content type", msgs: []*streams.AppendReq{appendOptions("s"), withMeta(map[string]string{"type": "T", "content-type": ""})}, code: codes.InvalidArgument, trailers: missingMeta},
		{name: "bad event after good ones", msgs: []*streams.AppendReq{appendOptions("s"), proposed([]byte("a")), proposed([]byte("b")), withID(nil)}, code: codes.InvalidArgument},
		{name: "one event over the append size", msgs: []*streams.AppendReq{appendOptions("s"), proposed(make([]byte, 1001))}, code: codes.InvalidArgument, trailers: tooBig},
		{name: "events summing over the append size", msgs: []*streams.AppendReq{appendOptions("s"), proposed(make([]byte, 400)), proposed(make([]byte, 400)), proposed(make([]byte, 400))}, code: codes.InvalidArgument, trailers: tooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, trailers, err := rawAppend(testContext(t), c, tt.msgs)
			if got := status.Code(err); got != tt.code {
				t.Fatalf("append: got %v (%v), want %v", got, err, tt.code)
			}
			for k, want := range tt.trailers {
				if diff := cmp.Diff(want, trailers[k]); diff != "" {
					t.Errorf("trailer %q (-want +got):\n%s", k, diff)
				}
			}
		})
	}
	if n := MustCountAll(t, c); n != 0 {
		t.Fatalf("refused appends wrote %d events", n)
	}
}

func TestAppendUnknownOneofFieldsAreRefused(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	c := MustConn(t, ts.Addr)

	// An AppendReq whose content is a field number this protocol version
	// does not know: protobuf keeps it as an unknown field and the oneof
	// stays unset.
	unknown := &streams.AppendReq{}
	unknown.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 9, protowire.BytesType), []byte{}))
	// Options whose expected revision is an unknown oneof member.
	opts := appendOptions("s")
	opts.GetOptions().ExpectedStreamRevision = nil
	opts.GetOptions().ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 6, protowire.VarintType), 1))

	for name, msgs := range map[string][]*streams.AppendReq{
		"unknown content first":         {unknown},
		"unknown content after options": {appendOptions("s"), unknown},
		"unknown expected revision":     {opts, proposed([]byte("x"))},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := rawAppend(testContext(t), c, msgs)
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("got %v, want InvalidArgument", err)
			}
		})
	}
	if n := MustCountAll(t, c); n != 0 {
		t.Fatalf("refused appends wrote %d events", n)
	}
}

func TestOversizedAppendIsRefusedWhileStreaming(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true, MaxAppendSize: 64 << 10})
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)

	st, err := c.Append(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(appendOptions("big")); err != nil {
		t.Fatal(err)
	}
	// 4 GiB in 1 MiB events: a server that buffered the whole append
	// before checking its size would never answer within the test.
	const events = 4096
	chunk := proposed(bytes.Repeat([]byte{'x'}, 1<<20))
	sent := 0
	for ; sent < events; sent++ {
		if err := st.Send(chunk); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("send: %v", err)
			}
			break
		}
	}
	if sent == events {
		t.Fatalf("server accepted all %d MiB without refusing", events)
	}
	_, err = st.CloseAndRecv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
	want := map[string][]string{"exception": {"maximum-append-size-exceeded"}, "maximum-append-size": {strconv.Itoa(64 << 10)}}
	got := st.Trailer()
	for k := range want {
		if diff := cmp.Diff(want[k], got[k]); diff != "" {
			t.Errorf("trailer %q (-want +got):\n%s", k, diff)
		}
	}
	if n := MustCountAll(t, c); n != 0 {
		t.Fatalf("refused append wrote %d events", n)
	}
}

func TestAppendExpectedRevisionsThroughClient(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	client := MustClient(t, ts.URL)
	ctx := testContext(t)

	// Zero events to a missing stream: success, stream not created.
	if _, err := client.AppendToStream(ctx, "zero", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}); err != nil {
		t.Fatalf("zero-event append: %v", err)
	}
	res, err := client.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, jsonEvent("A", 0), jsonEvent("A", 1))
	if err != nil {
		t.Fatalf("append NoStream: %v", err)
	}
	if res.NextExpectedVersion != 1 || res.CommitPosition == 0 || res.CommitPosition != res.PreparePosition {
		t.Fatalf("append result = %+v", res)
	}
	for i, exp := range []esdb.ExpectedRevision{esdb.Revision(1), esdb.StreamExists{}, esdb.Any{}} {
		res, err := client.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{ExpectedRevision: exp}, jsonEvent("A", 9))
		if err != nil {
			t.Fatalf("append %T: %v", exp, err)
		}
		if want := uint64(2 + i); res.NextExpectedVersion != want {
			t.Fatalf("append %T: next expected version %d, want %d", exp, res.NextExpectedVersion, want)
		}
	}
	for name, exp := range map[string]esdb.ExpectedRevision{
		"stale revision": esdb.Revision(0),
		"no stream":      esdb.NoStream{},
	} {
		_, err := client.AppendToStream(ctx, "s", esdb.AppendToStreamOptions{ExpectedRevision: exp}, jsonEvent("A", 9))
		var esErr *esdb.Error
		if !errors.As(err, &esErr) || esErr.Code() != esdb.ErrorCodeWrongExpectedVersion {
			t.Fatalf("append %s: got %v, want wrong expected version", name, err)
		}
	}
	_, err = client.AppendToStream(ctx, "missing", esdb.AppendToStreamOptions{ExpectedRevision: esdb.StreamExists{}}, jsonEvent("A", 9))
	var esErr *esdb.Error
	if !errors.As(err, &esErr) || esErr.Code() != esdb.ErrorCodeWrongExpectedVersion {
		t.Fatalf("append StreamExists to a missing stream: got %v", err)
	}
}

func TestWrongExpectedVersionBodyFillsLegacyFields(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)
	if _, _, err := rawAppend(ctx, c, []*streams.AppendReq{appendOptions("w"), proposed([]byte("x"))}); err != nil {
		t.Fatal(err)
	}
	opts := appendOptions("w")
	opts.GetOptions().ExpectedStreamRevision = &streams.AppendReq_Options_NoStream{NoStream: &shared.Empty{}}
	resp, _, err := rawAppend(ctx, c, []*streams.AppendReq{opts, proposed([]byte("y"))})
	if err != nil {
		t.Fatal(err)
	}
	w := resp.GetWrongExpectedVersion()
	if w == nil {
		t.Fatalf("got %v, want a wrong-expected-version body", resp)
	}
	got := []any{w.GetCurrentRevision(), w.GetCurrentRevision_20_6_0(), w.GetExpectedNoStream() != nil, w.GetExpectedRevision_20_6_0()}
	want := []any{uint64(0), uint64(0), true, ^uint64(0)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("wrong expected version body (-want +got):\n%s", diff)
	}
}

func TestAnyContentTypeIsAcceptedAndReadsBackAsJSONOrBinary(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	c := MustConn(t, ts.Addr)
	ctx := testContext(t)

	// KurrentDB keeps only an is-JSON flag: exactly "application/json" is
	// JSON, every other content type reads back as octet-stream.
	sent := []string{"application/json", "application/octet-stream", "text/plain", "application/json; charset=utf-8", "Application/JSON", "x"}
	msgs := []*streams.AppendReq{appendOptions("ct")}
	for _, ct := range sent {
		m := proposed([]byte("{}"))
		m.GetProposedMessage().Metadata = map[string]string{"type": "T", "content-type": ct}
		msgs = append(msgs, m)
	}
	resp, _, err := rawAppend(ctx, c, msgs)
	if err != nil || resp.GetSuccess() == nil {
		t.Fatalf("append: %v, %v", resp, err)
	}
	read, _, err := rawRead(ctx, c, readAllRequest(^uint64(0)))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var got []string
	for _, m := range read {
		got = append(got, m.GetEvent().GetEvent().GetMetadata()["content-type"])
	}
	want := []string{"application/json", "application/octet-stream", "application/octet-stream",
		"application/octet-stream", "application/octet-stream", "application/octet-stream"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("content types read back (-want +got):\n%s", diff)
	}
}

func TestStringEventIDForms(t *testing.T) {
	ts := MustStart(t, server.Options{InMemory: true})
	c := MustConn(t, ts.Addr)
	id := uuid.MustParse("0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d")
	tests := []struct {
		form string
		ok   bool
	}{
		{"0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d", true},
		{"0B1E9C5A-7D3F-4A2B-9C8D-1E2F3A4B5C6D", true},
		{"0b1e9c5a7d3f4a2b9c8d1e2f3a4b5c6d", true},
		{"{0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d}", true},
		{"(0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d)", true},
		{"x0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6dx", false}, // uuid.Parse alone accepts this
		{"{0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d)", false},
		{"urn:uuid:0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d", false},
		{"0b1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6", false},
		{"0b1e9c5a+7d3f-4a2b-9c8d-1e2f3a4b5c6d", false},
		{"0g1e9c5a-7d3f-4a2b-9c8d-1e2f3a4b5c6d", false},
		{"", false},
	}
	for i, tt := range tests {
		t.Run(tt.form, func(t *testing.T) {
			m := proposed([]byte("x"))
			m.GetProposedMessage().Id = &shared.UUID{Value: &shared.UUID_String_{String_: tt.form}}
			stream := "uuid-" + strconv.Itoa(i)
			_, _, err := rawAppend(testContext(t), c, []*streams.AppendReq{appendOptions(stream), m})
			if !tt.ok {
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("append: got %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			req := readAllRequest(1)
			req.Options.StreamOption = &streams.ReadReq_Options_Stream{Stream: &streams.ReadReq_Options_StreamOptions{
				StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(stream)},
				RevisionOption:   &streams.ReadReq_Options_StreamOptions_Start{Start: &shared.Empty{}},
			}}
			req.Options.UuidOption = &streams.ReadReq_Options_UUIDOption{Content: &streams.ReadReq_Options_UUIDOption_String_{String_: &shared.Empty{}}}
			msgs, _, err := rawRead(testContext(t), c, req)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("read back: %v, %v", msgs, err)
			}
			if got := msgs[0].GetEvent().GetEvent().GetId().GetString_(); got != id.String() {
				t.Fatalf("id read back as %q, want %q", got, id)
			}
		})
	}
}

func TestAppendsBeyondTheSlotLimitWaitForASlot(t *testing.T) {
	st, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(st, server.Config{MaxConcurrentAppends: 2})
	var lc net.ListenConfig
	lis, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Shutdown()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	c := MustConn(t, lis.Addr().String())
	ctx := testContext(t)

	// Two appends take both slots: their first event is sent, and they
	// never end on their own.
	stalled := make([]streams.Streams_AppendClient, 2)
	for i := range stalled {
		a, err := c.Append(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []*streams.AppendReq{appendOptions("stalled"), proposed([]byte("s"))} {
			if err := a.Send(m); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		stalled[i] = a
	}

	// Probe until an append cannot get a slot. Probes that ran before the
	// stalled appends took their slots succeed; a probe refused for lack of
	// a slot must have written nothing.
	written := 2
	blocked := false
	for try := 0; try < 50 && !blocked; try++ {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, _, err := rawAppend(pctx, c, []*streams.AppendReq{appendOptions("probe"), proposed([]byte("p"))})
		cancel()
		switch status.Code(err) {
		case codes.OK:
			written++
		case codes.DeadlineExceeded:
			blocked = true
		default:
			t.Fatalf("probe append: %v", err)
		}
	}
	if !blocked {
		t.Fatal("every probe append went through while all append slots were taken")
	}

	// One stalled append finishes: its slot goes to the next append.
	if _, err := stalled[0].CloseAndRecv(); err != nil {
		t.Fatalf("finish stalled append: %v", err)
	}
	if _, _, err := rawAppend(ctx, c, []*streams.AppendReq{appendOptions("after"), proposed([]byte("a"))}); err != nil {
		t.Fatalf("append after a slot freed: %v", err)
	}
	if _, err := stalled[1].CloseAndRecv(); err != nil {
		t.Fatalf("finish stalled append: %v", err)
	}
	written++
	if n := MustCountAll(t, c); n != written {
		t.Fatalf("$all holds %d events, want %d", n, written)
	}
}
