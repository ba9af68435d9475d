package eventstore

import (
	"strconv"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"
)

// TestReadRespCodecAgreesWithGeneratedCode: every ReadResp, event or not,
// decodes through the process's "proto" codec to what the generated code
// decodes, whether the hand decoder takes it or hands it over.
func TestReadRespCodecAgreesWithGeneratedCode(t *testing.T) {
	codec := encoding.GetCodecV2(grpcproto.Name)
	if _, ok := codec.(readRespCodec); !ok {
		t.Fatalf("the registered proto codec is %T, want readRespCodec", codec)
	}
	bs := rapid.SliceOfN(rapid.Byte(), 0, 40)
	recorded := func(t *rapid.T, label string) *streams.ReadResp_ReadEvent_RecordedEvent {
		r := &streams.ReadResp_ReadEvent_RecordedEvent{
			StreamRevision:  rapid.Uint64().Draw(t, label+"rev"),
			PreparePosition: rapid.Uint64().Draw(t, label+"prep"),
			CommitPosition:  rapid.Uint64().Draw(t, label+"commit"),
			CustomMetadata:  bs.Draw(t, label+"custom"),
			Data:            bs.Draw(t, label+"data"),
		}
		switch rapid.IntRange(0, 2).Draw(t, label+"id") {
		case 1:
			r.Id = &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
				MostSignificantBits: rapid.Int64().Draw(t, label+"most"), LeastSignificantBits: rapid.Int64().Draw(t, label+"least")}}}
		case 2:
			r.Id = &shared.UUID{Value: &shared.UUID_String_{String_: rapid.String().Draw(t, label+"ids")}}
		}
		if rapid.Bool().Draw(t, label+"hasStream") {
			r.StreamIdentifier = &shared.StreamIdentifier{StreamName: bs.Draw(t, label+"stream")}
		}
		if rapid.Bool().Draw(t, label+"hasMeta") {
			r.Metadata = rapid.MapOf(rapid.SampledFrom([]string{"type", "content-type", "created", "other", ""}),
				rapid.SampledFrom([]string{"application/json", "application/octet-stream", "JobStarted", "", "638712345678901234"})).Draw(t, label+"meta")
		}
		return r
	}
	rapid.Check(t, func(t *rapid.T) {
		var msg *streams.ReadResp
		switch rapid.IntRange(0, 3).Draw(t, "kind") {
		case 0, 1:
			ev := &streams.ReadResp_ReadEvent{}
			if rapid.Bool().Draw(t, "hasEvent") {
				ev.Event = recorded(t, "event")
			}
			if rapid.Bool().Draw(t, "hasLink") {
				ev.Link = recorded(t, "link")
			}
			switch rapid.IntRange(0, 2).Draw(t, "pos") {
			case 1:
				ev.Position = &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: rapid.Uint64().Draw(t, "commitPos")}
			case 2:
				ev.Position = &streams.ReadResp_ReadEvent_NoPosition{NoPosition: &shared.Empty{}}
			}
			msg = &streams.ReadResp{Content: &streams.ReadResp_Event{Event: ev}}
		case 2:
			msg = &streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{CommitPosition: 7, PreparePosition: 7}}}
		case 3:
			msg = &streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}
		}
		wire, err := proto.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		var want streams.ReadResp
		if err := proto.Unmarshal(wire, &want); err != nil {
			t.Fatal(err)
		}
		// Split in two buffers sometimes, as grpc-go may hand them over.
		cut := rapid.IntRange(0, len(wire)).Draw(t, "cut")
		data := mem.BufferSlice{mem.SliceBuffer(wire[:cut:cut]), mem.SliceBuffer(wire[cut:])}
		var got streams.ReadResp
		if err := codec.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		clear(wire) // the decoded message must not alias the buffers
		if !proto.Equal(&got, &want) {
			t.Fatalf("decoded\n%v\nwant\n%v", &got, &want)
		}
	})
}

// TestReadRespCodecKeepsEventsApart: events decoded one after the other,
// as a long read does (their messages and bytes cut from shared blocks,
// their metadata maps shared when equal), each stay what the generated
// code decodes, however many follow, whatever their sizes.
func TestReadRespCodecKeepsEventsApart(t *testing.T) {
	codec := encoding.GetCodecV2(grpcproto.Name)
	types := []string{"JobStarted", "DeviceOperationSucceeded", "Other"}
	created := []string{"638712345678901234", "638712345678905678"}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 300).Draw(t, "events")
		wants := make([]*streams.ReadResp, n)
		gots := make([]*streams.ReadResp, n)
		for i := range n {
			md := map[string]string{
				"type":         rapid.SampledFrom(types).Draw(t, "type"),
				"content-type": "application/json",
				"created":      rapid.SampledFrom(created).Draw(t, "created"),
			}
			if rapid.IntRange(0, 9).Draw(t, "extraKey") == 0 {
				md["other"] = "x"
			}
			size := rapid.SampledFrom([]int{0, 1, 40, 300, 5000, 9000, 40000}).Draw(t, "size")
			data := make([]byte, size)
			for j := range data {
				data[j] = byte(i + j)
			}
			msg := &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
				Event: &streams.ReadResp_ReadEvent_RecordedEvent{
					Id:               &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{MostSignificantBits: int64(i + 1)}}},
					StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("stream-" + strconv.Itoa(i))},
					StreamRevision:   uint64(i), PreparePosition: uint64(i), CommitPosition: uint64(i),
					Metadata:       md,
					CustomMetadata: []byte(`{"n":` + strconv.Itoa(i) + `}`),
					Data:           data,
				},
				Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: uint64(i)},
			}}}
			wire, err := proto.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			wants[i] = msg
			gots[i] = new(streams.ReadResp)
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, gots[i]); err != nil {
				t.Fatal(err)
			}
			clear(wire)
		}
		for i := range n {
			if !proto.Equal(gots[i], wants[i]) {
				t.Fatalf("event %d of %d decoded\n%v\nwant\n%v", i, n, gots[i], wants[i])
			}
			if got := gots[i].GetEvent().GetEvent(); cap(got.Data) != len(got.Data) || cap(got.CustomMetadata) != len(got.CustomMetadata) {
				t.Fatalf("event %d: its bytes can grow into another event's", i)
			}
		}
	})
}

// BenchmarkReadRespDecode decodes the event message of one ~250-byte
// event: "codec" through the process's codec (the hand decoder),
// "generated" with proto.Unmarshal, the baseline.
//
//	go test -run '^$' -bench ReadRespDecode ./eventstore/
func BenchmarkReadRespDecode(b *testing.B) {
	msg := &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
		Event: &streams.ReadResp_ReadEvent_RecordedEvent{
			Id:               &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{MostSignificantBits: -12345678901, LeastSignificantBits: 98765432101}}},
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte("job-bench-0001")},
			StreamRevision:   12345, PreparePosition: 987654321, CommitPosition: 987654321,
			Metadata:       map[string]string{"type": "DeviceOperationSucceeded", "content-type": "application/json", "created": "638999999999999999"},
			CustomMetadata: []byte(`{"commandId":"cmd-job-bench-0001","correlationId":"corr-job-bench-0001","causationId":"cmd-job-bench-0001","actor":"dispatcher","occurredAt":"2026-11-01T00:12:34.567Z"}`),
			Data:           []byte(`{"jobId":"bench-0001","deviceId":"dev-0001234"}`)},
		Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: 987654321}}}}
	wire, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	data := mem.BufferSlice{mem.SliceBuffer(wire)}
	b.Run("codec", func(b *testing.B) {
		codec := encoding.GetCodecV2(grpcproto.Name)
		for range b.N {
			if err := codec.Unmarshal(data, new(streams.ReadResp)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("generated", func(b *testing.B) {
		for range b.N {
			if err := proto.Unmarshal(wire, new(streams.ReadResp)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
