package server

import (
	"encoding/binary"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

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

// eventEncoder writes the wire form of ReadResp event messages (§2)
// straight from store records, the way appendFrame reads appends: the
// generated code would fill a message tree and a metadata map per event and
// marshal it by reflection, about a third of the server's CPU in a long
// read. The bytes are what proto.Marshal writes for the same ReadResp (maps
// in a fixed order), every field the client dereferences or parses always
// set (§2, §13). Not safe for concurrent use; one per Read call.
type eventEncoder struct {
	uuidString bool
	slab       []byte         // free space of the current block (see message)
	msg        encodedMessage // reused: SendMsg encodes it before returning
	created    int64          // the ticks createdText holds
	createdTxt []byte         // "created" of the previous record: appends share it
}

// encodedMessage is a response already in its wire form: serverCodec sends
// its bytes as they are.
type encodedMessage struct{ wire []byte }

// slabSize is the size of the blocks the encoded messages of a read are cut
// from: grpc-go may still hold a message's bytes after SendMsg returns (the
// transport writes them later), so bytes handed out are never reused; a
// block is garbage once every message cut from it is written.
const slabSize = 64 << 10

// message encodes the ReadResp of event and link (see encode) into the
// reader's current block and returns it, ready for SendMsg.
func (e *eventEncoder) message(event, link *store.Record) *encodedMessage {
	b := e.encode(e.slab[:0], event, link)
	if cap(b) != cap(e.slab) {
		// It did not fit: append gave it an array of its own; the next
		// message starts a new block.
		e.slab = make([]byte, 0, slabSize)
	} else {
		e.slab = b[len(b):]
	}
	e.msg.wire = b[:len(b):len(b)]
	return &e.msg
}

// Field numbers of the messages encoded (streams.proto, shared.proto).
const (
	fieldRespEvent = 1 // ReadResp.event

	fieldReadEventEvent  = 1 // ReadResp.ReadEvent.event
	fieldReadEventLink   = 2 // ReadResp.ReadEvent.link
	fieldReadEventCommit = 3 // ReadResp.ReadEvent.commit_position (oneof)

	fieldRecID             = 1
	fieldRecStream         = 2
	fieldRecRevision       = 3
	fieldRecPrepare        = 4
	fieldRecCommit         = 5
	fieldRecMetadata       = 6
	fieldRecCustomMetadata = 7
	fieldRecData           = 8

	fieldUUIDStructured = 1
	fieldUUIDString     = 2
	fieldStructMost     = 1
	fieldStructLeast    = 2
	fieldStreamName     = 3
	fieldMapKey         = 1
	fieldMapValue       = 2
)

// encode appends the ReadResp of event (and link, when not nil: the record
// that led to event) to b. A nil event with a link is an unresolved link
// (§2).
func (e *eventEncoder) encode(b []byte, event, link *store.Record) []byte {
	original := event
	size := 0
	var evSize, linkSize int
	if event != nil {
		evSize = e.recordSize(event)
		size += protowire.SizeTag(fieldReadEventEvent) + protowire.SizeBytes(evSize)
	}
	if link != nil {
		linkSize = e.recordSize(link)
		size += protowire.SizeTag(fieldReadEventLink) + protowire.SizeBytes(linkSize)
		original = link
	}
	size += protowire.SizeTag(fieldReadEventCommit) + protowire.SizeVarint(original.Position)

	b = protowire.AppendTag(b, fieldRespEvent, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	if event != nil {
		b = protowire.AppendTag(b, fieldReadEventEvent, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(evSize))
		b = e.appendRecord(b, event)
	}
	if link != nil {
		b = protowire.AppendTag(b, fieldReadEventLink, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(linkSize))
		b = e.appendRecord(b, link)
	}
	b = protowire.AppendTag(b, fieldReadEventCommit, protowire.VarintType)
	return protowire.AppendVarint(b, original.Position)
}

// createdText returns the "created" metadata value of r: .NET ticks as text,
// formatted again only when it changes (the events of an append share it).
func (e *eventEncoder) createdText(r *store.Record) []byte {
	if ticks := r.Created.UnixNano() / nanosPerTick; ticks != e.created || e.createdTxt == nil {
		e.created, e.createdTxt = ticks, strconv.AppendInt(e.createdTxt[:0], ticks, 10)
	}
	return e.createdTxt
}

func contentType(r *store.Record) string {
	if r.JSON {
		return contentTypeJSON
	}
	return contentTypeBinary
}

// The UUID messages' sizes: structured (two varints of any value) and
// string (36 characters).
func (e *eventEncoder) uuidSize(id *[16]byte) int {
	if e.uuidString {
		return protowire.SizeTag(fieldUUIDString) + protowire.SizeBytes(36)
	}
	s := structSize(id)
	return protowire.SizeTag(fieldUUIDStructured) + protowire.SizeBytes(s)
}

func structSize(id *[16]byte) int {
	s := 0
	if most := binary.BigEndian.Uint64(id[:8]); most != 0 {
		s += protowire.SizeTag(fieldStructMost) + protowire.SizeVarint(most)
	}
	if least := binary.BigEndian.Uint64(id[8:]); least != 0 {
		s += protowire.SizeTag(fieldStructLeast) + protowire.SizeVarint(least)
	}
	return s
}

func mapEntrySize(key string, value int) int {
	n := protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(key)) + protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(value)
	return protowire.SizeTag(fieldRecMetadata) + protowire.SizeBytes(n)
}

func (e *eventEncoder) recordSize(r *store.Record) int {
	u := e.uuidSize(&r.ID)
	n := protowire.SizeTag(fieldRecID) + protowire.SizeBytes(u)
	sid := protowire.SizeTag(fieldStreamName) + protowire.SizeBytes(len(r.Stream))
	n += protowire.SizeTag(fieldRecStream) + protowire.SizeBytes(sid)
	if r.Revision != 0 {
		n += protowire.SizeTag(fieldRecRevision) + protowire.SizeVarint(r.Revision)
	}
	if r.Position != 0 {
		n += 2 * (protowire.SizeTag(fieldRecPrepare) + protowire.SizeVarint(r.Position))
	}
	n += mapEntrySize(metaType, len(r.Type))
	n += mapEntrySize(metaContentType, len(contentType(r)))
	n += mapEntrySize(metaCreated, len(e.createdText(r)))
	if len(r.Metadata) > 0 {
		n += protowire.SizeTag(fieldRecCustomMetadata) + protowire.SizeBytes(len(r.Metadata))
	}
	if len(r.Data) > 0 {
		n += protowire.SizeTag(fieldRecData) + protowire.SizeBytes(len(r.Data))
	}
	return n
}

func appendMapEntry[V string | []byte](b []byte, key string, value V) []byte {
	n := protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len(key)) + protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(len(value))
	b = protowire.AppendTag(b, fieldRecMetadata, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(n))
	b = protowire.AppendTag(b, fieldMapKey, protowire.BytesType)
	b = protowire.AppendString(b, key)
	b = protowire.AppendTag(b, fieldMapValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(value)))
	return append(b, value...)
}

const hexDigits = "0123456789abcdef"

// appendUUIDText appends id in the 8-4-4-4-12 form.
func appendUUIDText(b []byte, id *[16]byte) []byte {
	for i, x := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return b
}

func (e *eventEncoder) appendRecord(b []byte, r *store.Record) []byte {
	b = protowire.AppendTag(b, fieldRecID, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(e.uuidSize(&r.ID)))
	if e.uuidString {
		b = protowire.AppendTag(b, fieldUUIDString, protowire.BytesType)
		b = protowire.AppendVarint(b, 36)
		b = appendUUIDText(b, &r.ID)
	} else {
		b = protowire.AppendTag(b, fieldUUIDStructured, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(structSize(&r.ID)))
		if most := binary.BigEndian.Uint64(r.ID[:8]); most != 0 {
			b = protowire.AppendTag(b, fieldStructMost, protowire.VarintType)
			b = protowire.AppendVarint(b, most)
		}
		if least := binary.BigEndian.Uint64(r.ID[8:]); least != 0 {
			b = protowire.AppendTag(b, fieldStructLeast, protowire.VarintType)
			b = protowire.AppendVarint(b, least)
		}
	}
	b = protowire.AppendTag(b, fieldRecStream, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fieldStreamName)+protowire.SizeBytes(len(r.Stream))))
	b = protowire.AppendTag(b, fieldStreamName, protowire.BytesType)
	b = protowire.AppendString(b, r.Stream)
	if r.Revision != 0 {
		b = protowire.AppendTag(b, fieldRecRevision, protowire.VarintType)
		b = protowire.AppendVarint(b, r.Revision)
	}
	if r.Position != 0 {
		b = protowire.AppendTag(b, fieldRecPrepare, protowire.VarintType)
		b = protowire.AppendVarint(b, r.Position)
		b = protowire.AppendTag(b, fieldRecCommit, protowire.VarintType)
		b = protowire.AppendVarint(b, r.Position)
	}
	b = appendMapEntry(b, metaType, r.Type)
	b = appendMapEntry(b, metaContentType, contentType(r))
	b = appendMapEntry(b, metaCreated, e.createdText(r))
	if len(r.Metadata) > 0 {
		b = protowire.AppendTag(b, fieldRecCustomMetadata, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Metadata)
	}
	if len(r.Data) > 0 {
		b = protowire.AppendTag(b, fieldRecData, protowire.BytesType)
		b = protowire.AppendBytes(b, r.Data)
	}
	return b
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
