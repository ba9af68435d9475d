package server_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// The fuzz inputs are protobuf messages framed as length-delimited
// records (a varint length, then the message), the seed corpus in
// testdata/fuzz was written the same way.

// decodeAppendReqs decodes fuzz bytes into AppendReq messages, skipping
// frames that are not valid protobuf (the typed client cannot send them).
func decodeAppendReqs(data []byte) []*streams.AppendReq {
	var out []*streams.AppendReq
	for len(data) > 0 && len(out) < 64 {
		frame, n := protowire.ConsumeBytes(data)
		if n < 0 {
			break
		}
		data = data[n:]
		m := &streams.AppendReq{}
		if proto.Unmarshal(frame, m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// lastPosition is the commit position of the last event in $all, 0 when
// empty.
func lastPosition(tb testing.TB, c streams.StreamsClient) uint64 {
	tb.Helper()
	req := readAllRequest(1)
	req.Options.ReadDirection = streams.ReadReq_Options_Backwards
	req.Options.StreamOption = &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{
		AllOption: &streams.ReadReq_Options_AllOptions_End{End: &shared.Empty{}},
	}}
	msgs, _, err := rawRead(testContext(tb), c, req)
	if err != nil {
		tb.Fatalf("read last position: %v", err)
	}
	if len(msgs) == 0 {
		return 0
	}
	return msgs[0].GetEvent().GetEvent().GetCommitPosition()
}

// countAfter counts the events of $all after position p.
func countAfter(tb testing.TB, c streams.StreamsClient, p uint64) int {
	tb.Helper()
	req := readAllRequest(^uint64(0))
	req.Options.StreamOption = &streams.ReadReq_Options_All{All: &streams.ReadReq_Options_AllOptions{
		AllOption: &streams.ReadReq_Options_AllOptions_Position{Position: &streams.ReadReq_Options_Position{CommitPosition: p + 1, PreparePosition: p + 1}},
	}}
	msgs, _, err := rawRead(testContext(tb), c, req)
	if err != nil {
		tb.Fatalf("read $all after %d: %v", p, err)
	}
	return len(msgs)
}

// crashCodes are the statuses a robust server never answers to bad input:
// Internal is what the recovery interceptor sends after a handler panic.
func isCrash(err error) bool {
	c := status.Code(err)
	return c == codes.Internal || c == codes.Unknown
}

func FuzzAppendRequest(f *testing.F) {
	ts := MustStart(f, server.Options{InMemory: true, MaxAppendSize: 4096})
	c := MustConn(f, ts.Addr)
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs := decodeAppendReqs(data)
		events := 0
		for _, m := range msgs {
			if m.GetProposedMessage() != nil {
				events++
			}
		}
		before := lastPosition(t, c)
		resp, _, err := rawAppend(testContext(t), c, msgs)
		if isCrash(err) {
			t.Fatalf("append of %d messages: %v", len(msgs), err)
		}
		written := countAfter(t, c, before)
		switch {
		case err != nil || resp.GetWrongExpectedVersion() != nil:
			if written != 0 {
				t.Fatalf("refused append (%v) wrote %d events", err, written)
			}
		case written != 0 && written != events:
			// 0 is an idempotent retry of events already written.
			t.Fatalf("append of %d events wrote %d: partial write", events, written)
		}
	})
}

func FuzzReadRequest(f *testing.F) {
	ts := MustStart(f, server.Options{InMemory: true})
	c := MustConn(f, ts.Addr)
	seed := []*streams.AppendReq{appendOptions("fuzz-a"), proposed([]byte("1")), proposed([]byte("2"))}
	if _, _, err := rawAppend(testContext(f), c, seed); err != nil {
		f.Fatal(err)
	}
	seed[0] = appendOptions("other")
	if _, _, err := rawAppend(testContext(f), c, seed); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, n := protowire.ConsumeBytes(data)
		if n < 0 {
			frame = data
		}
		req := &streams.ReadReq{}
		if proto.Unmarshal(frame, req) != nil {
			return // the typed client cannot send it
		}
		_, isSub := req.GetOptions().GetCountOption().(*streams.ReadReq_Options_Subscription)
		ctx, cancel := context.WithCancel(testContext(t))
		defer cancel()
		st, err := c.Read(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; ; i++ {
			m, err := st.Recv()
			if errors.Is(err, io.EOF) {
				if isSub {
					t.Fatal("subscription ended without an error")
				}
				return
			}
			if err != nil {
				if isCrash(err) {
					t.Fatalf("read: %v", err)
				}
				return
			}
			switch m.GetContent().(type) {
			case *streams.ReadResp_Event:
				e := m.GetEvent()
				for _, rec := range []*streams.ReadResp_ReadEvent_RecordedEvent{e.GetEvent(), e.GetLink()} {
					if rec != nil && (rec.GetStreamIdentifier() == nil || rec.GetMetadata()["created"] == "") {
						t.Fatalf("event without stream or created: %v", rec)
					}
				}
			case *streams.ReadResp_StreamNotFound_:
				if isSub || m.GetStreamNotFound().GetStreamIdentifier() == nil {
					t.Fatalf("bad StreamNotFound: %v", m)
				}
			case *streams.ReadResp_Confirmation:
				if !isSub || i != 0 {
					t.Fatalf("confirmation at message %d of a read (subscription %v)", i, isSub)
				}
			case *streams.ReadResp_CaughtUp_:
				if !isSub {
					t.Fatal("CaughtUp on a count read")
				}
				return // it would wait for live events from here
			case *streams.ReadResp_Checkpoint_:
				if !isSub {
					t.Fatal("Checkpoint on a count read")
				}
			default:
				t.Fatalf("unexpected message %T", m.GetContent())
			}
			if i == 0 && isSub && m.GetConfirmation() == nil {
				t.Fatalf("subscription started with %T", m.GetContent())
			}
		}
	})
}
