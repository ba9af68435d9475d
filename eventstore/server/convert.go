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
		u, ok := parseUUIDString(v.String_)
		if !ok {
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

// parseUUIDString accepts the string forms KurrentDB's Guid.Parse does:
// "D" (8-4-4-4-12 hex digits), "N" (32 hex digits), and "D" enclosed in
// braces ("B") or parentheses ("P"). uuid.Parse alone is too lenient: for
// 38 characters it ignores what encloses the UUID, and it also takes a
// "urn:uuid:" prefix, which no client sends.
func parseUUIDString(s string) ([16]byte, bool) {
	switch len(s) {
	case 32, 36:
	case 38:
		if (s[0] != '{' || s[37] != '}') && (s[0] != '(' || s[37] != ')') {
			return [16]byte{}, false
		}
	default:
		return [16]byte{}, false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return [16]byte{}, false
	}
	return u, true
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

// eventMessage is the wire form of one event (§2), built into messages it
// reuses from event to event. grpc-go serializes a message inside SendMsg
// before returning, and this server configures no stats handler that could
// keep a reference, so each message can be refilled for the next event: a
// read then allocates next to nothing per event besides the encoding
// itself (PERFORMANCE.md). Not safe for concurrent use; one per Read call.
type eventMessage struct {
	resp    streams.ReadResp
	content streams.ReadResp_Event
	ev      streams.ReadResp_ReadEvent
	pos     streams.ReadResp_ReadEvent_CommitPosition
	event   recordedMessage // ReadEvent.Event
	link    recordedMessage // ReadEvent.Link
}

// newEventMessage returns an eventMessage encoding IDs in the form the read
// asked for.
func newEventMessage(uuidString bool) *eventMessage {
	m := &eventMessage{}
	m.resp.Content = &m.content
	m.content.Event = &m.ev
	m.ev.Position = &m.pos
	m.event.init(uuidString)
	m.link.init(uuidString)
	return m
}

// fill sets the message to event (and link, when not nil: the record that
// led to event). A nil event with a link is an unresolved link (§2).
func (m *eventMessage) fill(event, link *store.Record) *streams.ReadResp {
	m.ev.Event, m.ev.Link = nil, nil
	if event != nil {
		m.ev.Event = m.event.fill(event)
	}
	original := event
	if link != nil {
		m.ev.Link = m.link.fill(link)
		original = link
	}
	m.pos.CommitPosition = original.Position
	return &m.resp
}

// recordedMessage is one reusable RecordedEvent. Every field the client
// dereferences or parses is always set (§2, §13).
type recordedMessage struct {
	uuidString  bool
	msg         streams.ReadResp_ReadEvent_RecordedEvent
	id          shared.UUID
	structured  shared.UUID_Structured_
	structValue shared.UUID_Structured
	str         shared.UUID_String_
	streamID    shared.StreamIdentifier
	stream      string // the name streamID holds
	created     int64  // the ticks createdText holds
	createdText string
}

func (m *recordedMessage) init(uuidString bool) {
	m.uuidString = uuidString
	m.msg.Id = &m.id
	if uuidString {
		m.id.Value = &m.str
	} else {
		m.structured.Structured = &m.structValue
		m.id.Value = &m.structured
	}
	m.msg.StreamIdentifier = &m.streamID
	m.msg.Metadata = make(map[string]string, 3)
	m.created = -1
}

func (m *recordedMessage) fill(r *store.Record) *streams.ReadResp_ReadEvent_RecordedEvent {
	if m.uuidString {
		m.str.String_ = uuid.UUID(r.ID).String()
	} else {
		m.structValue.MostSignificantBits = int64(binary.BigEndian.Uint64(r.ID[:8]))
		m.structValue.LeastSignificantBits = int64(binary.BigEndian.Uint64(r.ID[8:]))
	}
	if r.Stream != m.stream || m.streamID.StreamName == nil {
		// Names change rarely within a read: convert only on a change.
		m.streamID.StreamName = []byte(r.Stream)
		m.stream = r.Stream
	}
	ct := contentTypeBinary
	if r.JSON {
		ct = contentTypeJSON
	}
	// Events of one append share their commit time: format it once.
	if ticks := r.Created.UnixNano() / nanosPerTick; ticks != m.created {
		m.created, m.createdText = ticks, strconv.FormatInt(ticks, 10)
	}
	m.msg.Metadata[metaType] = r.Type
	m.msg.Metadata[metaContentType] = ct
	m.msg.Metadata[metaCreated] = m.createdText
	m.msg.StreamRevision = r.Revision
	m.msg.PreparePosition = r.Position
	m.msg.CommitPosition = r.Position
	m.msg.CustomMetadata = r.Metadata
	m.msg.Data = r.Data
	return &m.msg
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
