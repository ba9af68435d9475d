package server

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// TestEventEncoderWritesTheReadResp: the hand-encoded event message decodes,
// with the generated code, to the ReadResp the protocol defines for the
// record (and link) (§2), in both UUID forms.
func TestEventEncoderWritesTheReadResp(t *testing.T) {
	record := func(t *rapid.T, label string) *store.Record {
		var id [16]byte
		binary.BigEndian.PutUint64(id[:8], rapid.Uint64().Draw(t, label+"hi"))
		binary.BigEndian.PutUint64(id[8:], rapid.Uint64().Draw(t, label+"lo"))
		return &store.Record{
			Stream:   rapid.StringMatching(`[a-z$-]{1,20}`).Draw(t, label+"stream"),
			Revision: rapid.Uint64().Draw(t, label+"rev"),
			Position: rapid.Uint64().Draw(t, label+"pos"),
			ID:       id,
			Type:     rapid.StringMatching(`[A-Za-z$>]{1,20}`).Draw(t, label+"type"),
			JSON:     rapid.Bool().Draw(t, label+"json"),
			Created:  time.Unix(0, rapid.Int64Range(0, 1<<62).Draw(t, label+"created")).UTC(),
			Data:     rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, label+"data"),
			Metadata: rapid.SliceOfN(rapid.Byte(), 0, 64).Draw(t, label+"meta"),
		}
	}
	want := func(r *store.Record, asString bool) *streams.ReadResp_ReadEvent_RecordedEvent {
		ct := contentTypeBinary
		if r.JSON {
			ct = contentTypeJSON
		}
		id := &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
			MostSignificantBits: int64(binary.BigEndian.Uint64(r.ID[:8])), LeastSignificantBits: int64(binary.BigEndian.Uint64(r.ID[8:]))}}}
		if asString {
			id = &shared.UUID{Value: &shared.UUID_String_{String_: uuid.UUID(r.ID).String()}}
		}
		return &streams.ReadResp_ReadEvent_RecordedEvent{
			Id: id, StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.Stream)},
			StreamRevision: r.Revision, PreparePosition: r.Position, CommitPosition: r.Position,
			Metadata: map[string]string{metaType: r.Type, metaContentType: ct,
				metaCreated: strconv.FormatInt(r.Created.UnixNano()/nanosPerTick, 10)},
			CustomMetadata: r.Metadata, Data: r.Data,
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		enc := &eventEncoder{uuidString: rapid.Bool().Draw(t, "uuidString")}
		for range rapid.IntRange(1, 4).Draw(t, "messages") {
			event := record(t, "event")
			var link *store.Record
			if rapid.Bool().Draw(t, "hasLink") {
				link = record(t, "link")
				if rapid.Bool().Draw(t, "unresolved") {
					event = nil
				}
			}
			ev := &streams.ReadResp_ReadEvent{}
			original := event
			if event != nil {
				ev.Event = want(event, enc.uuidString)
			}
			if link != nil {
				ev.Link, original = want(link, enc.uuidString), link
			}
			ev.Position = &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: original.Position}
			expected := &streams.ReadResp{Content: &streams.ReadResp_Event{Event: ev}}

			var got streams.ReadResp
			if err := proto.Unmarshal(enc.message(event, link).wire, &got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(&got, expected) {
				t.Fatalf("decoded\n%v\nwant\n%v", &got, expected)
			}
		}
	})
}

// BenchmarkEventEncode encodes the ReadResp of one ~250-byte event: "encoder"
// is what reads send, "generated" builds the same message with the
// generated code and marshals it with proto.Marshal (what grpc-go's codec
// does), the baseline.
//
//	go test -run '^$' -bench EventEncode ./eventstore/server/
func BenchmarkEventEncode(b *testing.B) {
	rec := &store.Record{Stream: "job-bench-0001", Revision: 12345, Position: 987654321, ID: uuid.New(),
		Type: "DeviceOperationSucceeded", JSON: true, Created: time.Now(),
		Data:     []byte(`{"jobId":"bench-0001","deviceId":"dev-0001234"}`),
		Metadata: []byte(`{"commandId":"cmd-job-bench-0001","correlationId":"corr-job-bench-0001","causationId":"cmd-job-bench-0001","actor":"dispatcher","occurredAt":"2026-11-01T00:12:34.567Z"}`)}
	b.Run("encoder", func(b *testing.B) {
		enc := &eventEncoder{}
		for range b.N {
			enc.message(rec, nil)
		}
	})
	b.Run("generated", func(b *testing.B) {
		for range b.N {
			msg := &streams.ReadResp{Content: &streams.ReadResp_Event{Event: &streams.ReadResp_ReadEvent{
				Event: &streams.ReadResp_ReadEvent_RecordedEvent{
					Id: &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
						MostSignificantBits: int64(binary.BigEndian.Uint64(rec.ID[:8])), LeastSignificantBits: int64(binary.BigEndian.Uint64(rec.ID[8:]))}}},
					StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(rec.Stream)},
					StreamRevision:   rec.Revision, PreparePosition: rec.Position, CommitPosition: rec.Position,
					Metadata: map[string]string{metaType: rec.Type, metaContentType: contentTypeJSON,
						metaCreated: strconv.FormatInt(rec.Created.UnixNano()/nanosPerTick, 10)},
					CustomMetadata: rec.Metadata, Data: rec.Data},
				Position: &streams.ReadResp_ReadEvent_CommitPosition{CommitPosition: rec.Position}}}}
			if _, err := proto.Marshal(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}
