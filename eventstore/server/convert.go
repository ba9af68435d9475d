package server

import (
	"encoding/binary"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// System metadata keys of a recorded event (§2).
const (
	metaType        = "type"
	metaContentType = "content-type"
	metaCreated     = "created"

	contentTypeJSON   = "application/json"
	contentTypeBinary = "application/octet-stream"
)

// nanosPerTick converts Unix nanoseconds to .NET ticks (100 ns), the unit of
// the "created" key; the client calls log.Fatalf without it (§2).
const nanosPerTick = 100

// uuidFromProto decodes an event ID in either wire form (§2). It refuses a
// missing, malformed or nil UUID: the client would read the nil UUID back
// for an event sent without an ID (§14).
func uuidFromProto(id *shared.UUID) ([16]byte, error) {
	var out [16]byte
	switch v := id.GetValue().(type) {
	case *shared.UUID_Structured_:
		if v.Structured == nil {
			return out, invalidArgument("event id: empty structured UUID")
		}
		binary.BigEndian.PutUint64(out[:8], uint64(v.Structured.MostSignificantBits))
		binary.BigEndian.PutUint64(out[8:], uint64(v.Structured.LeastSignificantBits))
	case *shared.UUID_String_:
		u, err := uuid.Parse(v.String_)
		if err != nil {
			return out, invalidArgument("event id: malformed UUID %q", v.String_)
		}
		out = u
	default:
		return out, invalidArgument("event id: missing")
	}
	if out == ([16]byte{}) {
		return out, invalidArgument("event id: the nil UUID is not a valid event id")
	}
	return out, nil
}

// uuidToProto encodes id in the form the read request asked for.
func uuidToProto(id [16]byte, asString bool) *shared.UUID {
	if asString {
		return &shared.UUID{Value: &shared.UUID_String_{String_: uuid.UUID(id).String()}}
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits:  int64(binary.BigEndian.Uint64(id[:8])),
		LeastSignificantBits: int64(binary.BigEndian.Uint64(id[8:])),
	}}}
}

// streamName extracts a stream name; an empty one is refused here, since
// no Log operation accepts it.
func streamName(id *shared.StreamIdentifier) (string, error) {
	name := id.GetStreamName()
	if len(name) == 0 {
		return "", invalidArgument("stream name is empty")
	}
	return string(name), nil
}

// recordedEvent builds the wire form of a stored record. Every field the
// client dereferences or parses is always set (§2, §13).
func recordedEvent(r *store.Record, uuidString bool) *streams.ReadResp_ReadEvent_RecordedEvent {
	ct := contentTypeBinary
	if r.JSON {
		ct = contentTypeJSON
	}
	return &streams.ReadResp_ReadEvent_RecordedEvent{
		Id:               uuidToProto(r.ID, uuidString),
		StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.Stream)},
		StreamRevision:   r.Revision,
		PreparePosition:  r.Position,
		CommitPosition:   r.Position,
		Metadata: map[string]string{
			metaType:        r.Type,
			metaContentType: ct,
			metaCreated:     strconv.FormatInt(r.Created.UnixNano()/nanosPerTick, 10),
		},
		CustomMetadata: r.Metadata,
		Data:           r.Data,
	}
}

// expectedFromAppend decodes an append's expected revision. An unset oneof
// (or one set to a field this version does not know) is refused rather than
// guessed.
func expectedFromAppend(o *streams.AppendReq_Options) (store.Expected, error) {
	switch v := o.GetExpectedStreamRevision().(type) {
	case *streams.AppendReq_Options_Any:
		return store.Expected{Kind: store.ExpectAny}, nil
	case *streams.AppendReq_Options_NoStream:
		return store.Expected{Kind: store.ExpectNoStream}, nil
	case *streams.AppendReq_Options_StreamExists:
		return store.Expected{Kind: store.ExpectStreamExists}, nil
	case *streams.AppendReq_Options_Revision:
		return store.Expected{Kind: store.ExpectRevision, Revision: v.Revision}, nil
	default:
		return store.Expected{}, invalidArgument("append: expected stream revision is missing")
	}
}

// expectedFromDelete decodes the expected revision of a delete.
func expectedFromDelete(o *streams.DeleteReq_Options) (store.Expected, error) {
	switch v := o.GetExpectedStreamRevision().(type) {
	case *streams.DeleteReq_Options_Any:
		return store.Expected{Kind: store.ExpectAny}, nil
	case *streams.DeleteReq_Options_NoStream:
		return store.Expected{Kind: store.ExpectNoStream}, nil
	case *streams.DeleteReq_Options_StreamExists:
		return store.Expected{Kind: store.ExpectStreamExists}, nil
	case *streams.DeleteReq_Options_Revision:
		return store.Expected{Kind: store.ExpectRevision, Revision: v.Revision}, nil
	default:
		return store.Expected{}, invalidArgument("delete: expected stream revision is missing")
	}
}

// expectedFromTombstone decodes the expected revision of a tombstone.
func expectedFromTombstone(o *streams.TombstoneReq_Options) (store.Expected, error) {
	switch v := o.GetExpectedStreamRevision().(type) {
	case *streams.TombstoneReq_Options_Any:
		return store.Expected{Kind: store.ExpectAny}, nil
	case *streams.TombstoneReq_Options_NoStream:
		return store.Expected{Kind: store.ExpectNoStream}, nil
	case *streams.TombstoneReq_Options_StreamExists:
		return store.Expected{Kind: store.ExpectStreamExists}, nil
	case *streams.TombstoneReq_Options_Revision:
		return store.Expected{Kind: store.ExpectRevision, Revision: v.Revision}, nil
	default:
		return store.Expected{}, invalidArgument("tombstone: expected stream revision is missing")
	}
}
