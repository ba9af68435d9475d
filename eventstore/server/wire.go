package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// serverCodec is the server's gRPC codec: grpc-go's protobuf codec for
// every message but appendFrame, the form Append receives its requests in,
// and appendAnswer, the form it answers a successful append in.
// Decoding an AppendReq with the generated code allocates per event a
// message, a oneof wrapper, a UUID, a metadata map with its strings and the
// data and metadata bytes: about a third of the server's CPU for batched
// appends (PERFORMANCE.md). appendFrame is decoded straight from the wire,
// with the data copied once into an arena shared by the whole append.
type serverCodec struct {
	proto encoding.CodecV2
}

func newServerCodec() serverCodec {
	return serverCodec{proto: encoding.GetCodecV2(grpcproto.Name)}
}

// Name is the content subtype of the codec: the client sends "proto".
func (c serverCodec) Name() string { return grpcproto.Name }

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedMessage); ok { // reads encode their events themselves
		return mem.BufferSlice{mem.SliceBuffer(m.wire)}, nil
	}
	if a, ok := v.(*appendAnswer); ok {
		// A fresh slice: the transport may write it after SendMsg returns.
		return mem.BufferSlice{mem.SliceBuffer(a.appendTo(make([]byte, 0, maxAnswerSize)))}, nil
	}
	return c.proto.Marshal(v)
}

// appendAnswer is a successful append's result as Append sends it:
// serverCodec encodes it by hand into the bytes proto.Marshal writes for
// the equivalent AppendResp (§4, §14): Success with the current revision
// and the position, or, after a zero-event append to a missing stream,
// NoStream and NoPosition. Building that message would cost six
// allocations and a reflective marshal per append.
type appendAnswer store.AppendResult

// maxAnswerSize bounds the encoding of an appendAnswer: two one-byte tags
// and lengths, and a tag and varint for each of three numbers.
const maxAnswerSize = 2 + 2 + 3*(1+binary.MaxVarintLen64)

// appendTo appends the AppendResp encoding of a to b, fields in number
// order and the zero position fields left out, as proto.Marshal does.
func (a *appendAnswer) appendTo(b []byte) []byte {
	var body [maxAnswerSize]byte
	s := body[:0]
	if a.NoStream {
		s = protowire.AppendTag(s, 2, protowire.BytesType) // no_stream: Empty
		s = protowire.AppendVarint(s, 0)
		s = protowire.AppendTag(s, 4, protowire.BytesType) // no_position: Empty
		s = protowire.AppendVarint(s, 0)
	} else {
		s = protowire.AppendTag(s, 1, protowire.VarintType) // current_revision
		s = protowire.AppendVarint(s, a.LastRevision)
		var pos [2 * (1 + binary.MaxVarintLen64)]byte
		p := pos[:0]
		if a.Position != 0 {
			p = protowire.AppendTag(p, 1, protowire.VarintType) // commit_position
			p = protowire.AppendVarint(p, a.Position)
			p = protowire.AppendTag(p, 2, protowire.VarintType) // prepare_position
			p = protowire.AppendVarint(p, a.Position)
		}
		s = protowire.AppendTag(s, 3, protowire.BytesType) // position
		s = protowire.AppendBytes(s, p)
	}
	b = protowire.AppendTag(b, 1, protowire.BytesType) // success
	return protowire.AppendBytes(b, s)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*appendFrame)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return f.decode(buf.ReadOnlyData())
}

// appendFrame is one AppendReq as Append needs it: either its Options or
// one proposed event. Frames are reused from message to message; the bytes
// of an event are copied into the frame's arena, which the caller resets
// once the append is answered.
type appendFrame struct {
	options *streams.AppendReq_Options // set when the message carried Options
	// proposed is true when the message carried a ProposedMessage: then
	// ev is the event, or evErr why it is refused (a status error).
	proposed bool
	ev       store.Proposed
	evErr    error

	// The wire fields of the proposed message being decoded. They alias
	// the received buffer, which grpc-go recycles once the codec returns:
	// decode copies what it keeps into ev and clears them.
	id       frameID
	typ      []byte // value of the "type" metadata key
	ct       []byte // value of the "content-type" metadata key
	hasType  bool
	hasCT    bool
	data     []byte
	metadata []byte

	arena    arena
	lastType string // the previous event's type: appends repeat types
}

// frameID is an event ID as sent: the structured form, the string form, or
// none.
type frameID struct {
	kind       uint8 // idNone, idStructured, idString
	most, leas uint64
	str        []byte
}

const (
	idNone uint8 = iota
	idStructured
	idString
)

// errWire is wrapped by every decoding failure; grpc-go answers it with
// Internal, as it does for a message its protobuf codec cannot decode.
var errWire = errors.New("malformed AppendReq")

// decode decodes one received message into the frame.
func (f *appendFrame) decode(b []byte) error {
	err := f.unmarshal(b)
	if err == nil && f.proposed {
		f.ev, f.evErr = f.event()
	}
	f.id.str, f.typ, f.ct, f.data, f.metadata = nil, nil, nil, nil, nil
	return err
}

// unmarshal decodes b, following protobuf's rules: unknown fields and
// fields of an unexpected wire type are skipped, the last of a repeated
// scalar wins, a repeated message merges, and the last oneof member seen
// is the one set. The map keys and values must be valid UTF-8 (proto3
// strings).
func (f *appendFrame) unmarshal(b []byte) error {
	f.options, f.proposed = nil, false
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return fmt.Errorf("%w: %v", errWire, err)
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: %v", errWire, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 {
			if f.options == nil {
				f.options = &streams.AppendReq_Options{}
			}
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, f.options); err != nil {
				return fmt.Errorf("%w: options: %v", errWire, err)
			}
			f.proposed = false
			continue
		}
		if !f.proposed {
			f.proposed = true
			f.id = frameID{}
			f.typ, f.ct, f.hasType, f.hasCT = nil, nil, false, false
			f.data, f.metadata = nil, nil
		}
		f.options = nil
		if err := f.unmarshalProposed(v); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalProposed decodes (merges) one ProposedMessage.
func (f *appendFrame) unmarshalProposed(b []byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return fmt.Errorf("%w: proposed message: %v", errWire, err)
		}
		b = b[n:]
		if typ != protowire.BytesType || num < 1 || num > 4 {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: proposed message: %v", errWire, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: proposed message: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		switch num {
		case 1:
			if err := f.id.unmarshal(v); err != nil {
				return err
			}
		case 2:
			if err := f.unmarshalMetadataEntry(v); err != nil {
				return err
			}
		case 3:
			f.metadata = v
		case 4:
			f.data = v
		}
	}
	return nil
}

// unmarshalMetadataEntry decodes one entry of the metadata map, keeping
// only the keys the server reads. A later entry with the same key wins.
func (f *appendFrame) unmarshalMetadataEntry(b []byte) error {
	var key, val []byte
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return fmt.Errorf("%w: metadata: %v", errWire, err)
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: metadata: %v", errWire, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: metadata: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if !utf8.Valid(v) {
			return fmt.Errorf("%w: metadata: invalid UTF-8", errWire)
		}
		if num == 1 {
			key = v
		} else {
			val = v
		}
	}
	switch string(key) { // compiled without allocation
	case metaType:
		f.typ, f.hasType = val, true
	case metaContentType:
		f.ct, f.hasCT = val, true
	}
	return nil
}

// unmarshal decodes (merges) a UUID message: oneof structured (1) or
// string (2).
func (id *frameID) unmarshal(b []byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return fmt.Errorf("%w: id: %v", errWire, err)
		}
		b = b[n:]
		if typ != protowire.BytesType || (num != 1 && num != 2) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: id: %v", errWire, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: id: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if num == 2 {
			if !utf8.Valid(v) {
				return fmt.Errorf("%w: id: invalid UTF-8", errWire)
			}
			id.kind, id.str = idString, v
			continue
		}
		if id.kind != idStructured {
			id.kind, id.most, id.leas = idStructured, 0, 0
		}
		if err := id.unmarshalStructured(v); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalStructured decodes (merges) UUID.Structured: two int64 fields.
func (id *frameID) unmarshalStructured(b []byte) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(b)
		if err != nil {
			return fmt.Errorf("%w: id: %v", errWire, err)
		}
		b = b[n:]
		if typ != protowire.VarintType || (num != 1 && num != 2) {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return fmt.Errorf("%w: id: %v", errWire, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return fmt.Errorf("%w: id: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 {
			id.most = v
		} else {
			id.leas = v
		}
	}
	return nil
}

// consumeTag is protowire.ConsumeTag plus the check proto.Unmarshal makes
// and ConsumeTag does not (it takes numbers up to MaxInt32): a field number
// above protowire.MaxValidNumber is malformed, not an unknown field to skip.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, n, protowire.ParseError(n)
	}
	if num > protowire.MaxValidNumber {
		return 0, 0, 0, fmt.Errorf("invalid field number %d", num)
	}
	return num, typ, n, nil
}

// event validates the frame's proposed event and returns it, its bytes
// copied into the arena: a real, non-nil UUID, and the "type" and
// "content-type" metadata KurrentDB requires (§3). Like KurrentDB, any
// content type is accepted and only an is-JSON flag is kept: exactly
// "application/json" is JSON, anything else reads back as
// "application/octet-stream". An empty content type counts as missing.
func (f *appendFrame) event() (store.Proposed, error) {
	if !f.hasType || !f.hasCT || len(f.ct) == 0 {
		return store.Proposed{}, errMissingMetadata
	}
	if len(f.typ) == 0 {
		return store.Proposed{}, invalidArgument("event type is empty")
	}
	var id [16]byte
	switch f.id.kind {
	case idStructured:
		binary.BigEndian.PutUint64(id[:8], f.id.most)
		binary.BigEndian.PutUint64(id[8:], f.id.leas)
	case idString:
		u, ok := parseUUIDString(string(f.id.str))
		if !ok {
			return store.Proposed{}, invalidArgument("event id: malformed UUID %q", f.id.str)
		}
		id = u
	default:
		return store.Proposed{}, invalidArgument("event id: missing")
	}
	if id == ([16]byte{}) {
		return store.Proposed{}, invalidArgument("event id: the nil UUID is not a valid event id")
	}
	if string(f.typ) != f.lastType {
		f.lastType = string(f.typ)
	}
	return store.Proposed{
		ID:       id,
		Type:     f.lastType,
		JSON:     string(f.ct) == contentTypeJSON,
		Data:     f.arena.copy(f.data),
		Metadata: f.arena.copy(f.metadata),
	}, nil
}

// reset forgets the frame's content for the next append, keeping the
// arena's current chunk (earlier ones are left to the garbage collector).
func (f *appendFrame) reset() {
	f.options, f.proposed = nil, false
	f.ev, f.evErr = store.Proposed{}, nil
	f.id = frameID{}
	f.typ, f.ct, f.data, f.metadata = nil, nil, nil, nil
	f.arena.reset()
}

// arena hands out copies of byte slices from a few large chunks, so that
// the events of one append cost a handful of allocations, not two each.
// Chunks are never reallocated: earlier copies stay valid.
type arena struct {
	chunk []byte
	next  int // size of the next chunk
}

const (
	arenaFirstChunk = 4 << 10
	arenaMaxChunk   = 256 << 10
)

// reset makes the whole current chunk available again; the copies handed
// out before must no longer be used.
func (a *arena) reset() {
	a.chunk = a.chunk[:0]
}

// copy returns a copy of b (nil for an empty b, as protobuf decodes it).
func (a *arena) copy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > cap(a.chunk)-len(a.chunk) {
		if a.next == 0 {
			a.next = arenaFirstChunk
		}
		size := max(a.next, len(b))
		a.next = min(a.next*2, arenaMaxChunk)
		a.chunk = make([]byte, 0, size)
	}
	start := len(a.chunk)
	a.chunk = append(a.chunk, b...)
	return a.chunk[start:len(a.chunk):len(a.chunk)]
}
