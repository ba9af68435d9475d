package server

// Like wire_internal_test.go, this test lives inside package server: the
// hand-written encoding of appendAnswer is unexported.

import (
	"bytes"
	"math"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// TestAppendAnswerEncoding checks that serverCodec encodes an appendAnswer
// into exactly the bytes proto.Marshal writes for the AppendResp it stands
// for, which the client decodes to the same message.
func TestAppendAnswerEncoding(t *testing.T) {
	success := func(rev, pos uint64) *streams.AppendResp {
		return &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: &streams.AppendResp_Success{
			CurrentRevisionOption: &streams.AppendResp_Success_CurrentRevision{CurrentRevision: rev},
			PositionOption: &streams.AppendResp_Success_Position{Position: &streams.AppendResp_Position{
				CommitPosition: pos, PreparePosition: pos,
			}},
		}}}
	}
	cases := []struct {
		name string
		res  store.AppendResult
		want *streams.AppendResp
	}{
		{"no stream", store.AppendResult{NoStream: true}, &streams.AppendResp{Result: &streams.AppendResp_Success_{Success: &streams.AppendResp_Success{
			CurrentRevisionOption: &streams.AppendResp_Success_NoStream{NoStream: &shared.Empty{}},
			PositionOption:        &streams.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
		}}}},
		{"first event", store.AppendResult{LastRevision: 0, Position: 1}, success(0, 1)},
		{"small", store.AppendResult{LastRevision: 41, Position: 127}, success(41, 127)},
		{"two-byte varints", store.AppendResult{LastRevision: 128, Position: 300}, success(128, 300)},
		{"largest", store.AppendResult{LastRevision: math.MaxUint64, Position: math.MaxUint64}, success(math.MaxUint64, math.MaxUint64)},
		{"zero position", store.AppendResult{LastRevision: 5}, success(5, 0)},
	}
	codec := newServerCodec()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.want)
			if err != nil {
				t.Fatal(err)
			}
			a := appendAnswer(c.res)
			data, err := codec.Marshal(&a)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got := data.Materialize()
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding of %+v:\n got %x\nwant %x", c.res, got, want)
			}
			if len(got) > maxAnswerSize {
				t.Fatalf("encoding of %d bytes, above maxAnswerSize %d", len(got), maxAnswerSize)
			}
			var back streams.AppendResp
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(got)}, &back); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !proto.Equal(&back, c.want) {
				t.Fatalf("decoded %v, want %v", &back, c.want)
			}
		})
	}
}
