package eventstore

import (
	"errors"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// The official client decodes every event it reads with the generated
// protobuf code: reflection, a dozen allocations and a metadata map per
// event, the largest cost of a long read or catch-up on the client's side
// (PERFORMANCE.md). readRespCodec replaces grpc-go's "proto" codec in this
// process with one that decodes the event messages of reads and
// subscriptions (streams.ReadResp carrying an event) by hand, into the same
// generated structs, and hands every other message — and any event message
// with a field it does not expect — to grpc-go's own codec. The client sees
// exactly what the generated code would give it.
func init() {
	encoding.RegisterCodecV2(readRespCodec{base: encoding.GetCodecV2(grpcproto.Name)})
}

type readRespCodec struct{ base encoding.CodecV2 }

func (c readRespCodec) Name() string { return grpcproto.Name }

func (c readRespCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c readRespCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*streams.ReadResp)
	if !ok {
		return c.base.Unmarshal(data, v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	if decodeReadResp(b, m) == nil {
		return nil
	}
	return c.base.Unmarshal(data, v)
}

// errUnexpected sends a message to the generated code: not an error of the
// message, only of this decoder's scope.
var errUnexpected = errors.New("not an event message of the expected shape")

// Decoding carves what it allocates out of larger blocks: the messages of
// eventsPerBlock events at a time, and the bytes of events (stream name,
// data, custom metadata) out of blocks of bytesPerBlock, shared by the
// events that fit. A long read then allocates a few times per block
// instead of twice per event, the largest part of the client's garbage. A
// block stays alive while any event cut from it does; events bigger than
// a quarter of a block get arrays of their own, so a retained event pins
// at most one block.
const (
	eventsPerBlock = 64
	bytesPerBlock  = 32 << 10
)

// decodeAllocator holds the current blocks of one decoding goroutine (see
// allocators) and the metadata map of the last event it decoded.
type decodeAllocator struct {
	events []readEvent
	bytes  []byte
	// mdKey is the wire form of the system metadata entries of the last
	// event decoded, mdMap their map: the events of one append (the same
	// type, content type and created time) share one map (see sharedMap).
	mdKey []byte
	mdMap map[string]string
}

// allocators lends decodeAllocators to Unmarshal calls, which run on the
// goroutines of many streams at once.
var allocators = sync.Pool{New: func() any { return new(decodeAllocator) }}

// event returns a zero readEvent.
func (a *decodeAllocator) event() *readEvent {
	if len(a.events) == 0 {
		a.events = make([]readEvent, eventsPerBlock)
	}
	re := &a.events[0]
	a.events = a.events[1:]
	return re
}

// arena returns an empty slice with room for n bytes, not shared with any
// earlier slice.
func (a *decodeAllocator) arena(n int) []byte {
	if n > bytesPerBlock/4 {
		return make([]byte, 0, n)
	}
	if cap(a.bytes)-len(a.bytes) < n {
		a.bytes = make([]byte, 0, bytesPerBlock)
	}
	b := a.bytes[len(a.bytes):len(a.bytes)]
	a.bytes = a.bytes[:len(a.bytes)+n]
	return b
}

// sharedMap returns the system metadata map of entries md (key, value
// pairs off the wire): the previous event's map when it had the same
// entries in the same order, else a new one. Sharing is safe because
// nothing in the client or in fleetjobs writes to RecordedEvent's
// SystemMetadata; whoever would must copy it first.
func (a *decodeAllocator) sharedMap(md [][2][]byte) map[string]string {
	var key [256]byte
	k := key[:0]
	for _, kv := range md {
		k = protowire.AppendBytes(k, kv[0])
		k = protowire.AppendBytes(k, kv[1])
	}
	if a.mdMap != nil && string(k) == string(a.mdKey) {
		return a.mdMap
	}
	m := make(map[string]string, len(md))
	for _, kv := range md {
		m[metadataKey(kv[0])] = metadataValue(kv[0], kv[1])
	}
	a.mdKey, a.mdMap = append(a.mdKey[:0], k...), m
	return m
}

// readEvent holds the messages of one decoded event, allocated together.
type readEvent struct {
	content     streams.ReadResp_Event
	ev          streams.ReadResp_ReadEvent
	pos         streams.ReadResp_ReadEvent_CommitPosition
	event       recordedEvent
	link        *recordedEvent // rare: allocated on its own
	hasLink     bool
	hasEvent    bool
	hasPosition bool
}

type recordedEvent struct {
	msg        streams.ReadResp_ReadEvent_RecordedEvent
	id         shared.UUID
	structured shared.UUID_Structured_
	structVal  shared.UUID_Structured
	str        shared.UUID_String_
	stream     shared.StreamIdentifier
}

// decodeReadResp decodes b into m if it is a ReadResp holding an event,
// else returns errUnexpected and leaves m alone.
func decodeReadResp(b []byte, m *streams.ReadResp) error {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return errUnexpected
	}
	body, n2 := protowire.ConsumeBytes(b[n:])
	if n2 < 0 || n+n2 != len(b) {
		return errUnexpected
	}
	a := allocators.Get().(*decodeAllocator)
	defer allocators.Put(a)
	re := a.event()
	if err := re.decode(body, a); err != nil {
		return err // re is left unused: its block is garbage in time
	}
	re.content.Event = &re.ev
	if re.hasEvent {
		re.ev.Event = &re.event.msg
	}
	if re.hasLink {
		re.ev.Link = &re.link.msg
	}
	if re.hasPosition {
		re.ev.Position = &re.pos
	}
	m.Content = &re.content
	return nil
}

func (re *readEvent) decode(b []byte, a *decodeAllocator) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errUnexpected
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errUnexpected
			}
			b = b[n:]
			target := &re.event
			if num == 2 {
				if re.link == nil {
					re.link = &recordedEvent{}
				}
				target, re.hasLink = re.link, true
			} else {
				re.hasEvent = true
			}
			if err := target.decode(v, a); err != nil {
				return err
			}
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errUnexpected
			}
			b = b[n:]
			re.pos.CommitPosition, re.hasPosition = v, true
		default:
			return errUnexpected
		}
	}
	return nil
}

// decode decodes a RecordedEvent. Its byte fields are copied into one
// arena from a: b belongs to grpc-go, which recycles it.
func (r *recordedEvent) decode(b []byte, a *decodeAllocator) error {
	var streamName, custom, data []byte
	var mdBuf [4][2][]byte // the three system keys, without allocating
	md := mdBuf[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errUnexpected
		}
		b = b[n:]
		if typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errUnexpected
			}
			b = b[n:]
			switch num {
			case 3:
				r.msg.StreamRevision = v
			case 4:
				r.msg.PreparePosition = v
			case 5:
				r.msg.CommitPosition = v
			default:
				return errUnexpected
			}
			continue
		}
		if typ != protowire.BytesType {
			return errUnexpected
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errUnexpected
		}
		b = b[n:]
		switch num {
		case 1:
			if err := r.decodeID(v); err != nil {
				return err
			}
		case 2:
			name, err := onlyBytesField(v, 3)
			if err != nil {
				return err
			}
			streamName = name
			r.msg.StreamIdentifier = &r.stream
		case 6:
			k, err := onlyBytesField(v, 1, 2)
			if err != nil {
				return err
			}
			val, _ := onlyBytesField(v, 2, 1)
			if !utf8.Valid(k) || !utf8.Valid(val) {
				return errUnexpected // the generated code refuses such strings
			}
			md = append(md, [2][]byte{k, val})
		case 7:
			custom = v
		case 8:
			data = v
		default:
			return errUnexpected
		}
	}
	arena := a.arena(len(streamName) + len(custom) + len(data))
	cut := func(v []byte) []byte {
		if v == nil {
			return nil // absent stays nil, as the generated code leaves it
		}
		start := len(arena)
		arena = append(arena, v...)
		return arena[start:len(arena):len(arena)]
	}
	if r.msg.StreamIdentifier != nil {
		r.stream.StreamName = cut(streamName)
	}
	r.msg.CustomMetadata = cut(custom)
	r.msg.Data = cut(data)
	if len(md) > 0 {
		r.msg.Metadata = a.sharedMap(md)
	}
	return nil
}

// metadataKey is a system metadata key, without allocating for the known
// ones.
func metadataKey(k []byte) string {
	switch string(k) {
	case "type":
		return "type"
	case "content-type":
		return "content-type"
	case "created":
		return "created"
	}
	return string(k)
}

// knownValues are system metadata values decoded without allocating: the
// content types and the catalog's event types. Read-only after init.
var knownValues = func() map[string]string {
	m := map[string]string{"application/json": "application/json", "application/octet-stream": "application/octet-stream"}
	for _, r := range append(DeviceRegistrations(), JobRegistrations()...) {
		m[r.Name()] = r.Name()
	}
	return m
}()

// lastCreated is the most recent "created" value decoded: the events of
// one append share it, so a long read allocates it once per append.
var lastCreated atomic.Pointer[string]

// metadataValue is the value of key k, allocating only for new values.
func metadataValue(k, v []byte) string {
	if s, ok := knownValues[string(v)]; ok && string(k) != "created" {
		return s
	}
	if string(k) == "created" {
		if p := lastCreated.Load(); p != nil && *p == string(v) {
			return *p
		}
		s := string(v)
		lastCreated.Store(&s)
		return s
	}
	return string(v)
}

func (r *recordedEvent) decodeID(b []byte) error {
	r.msg.Id = &r.id
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return errUnexpected
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errUnexpected
		}
		b = b[n:]
		switch num {
		case 1:
			r.structVal = shared.UUID_Structured{}
			for len(v) > 0 {
				fn, ft, n := protowire.ConsumeTag(v)
				if n < 0 || ft != protowire.VarintType || (fn != 1 && fn != 2) {
					return errUnexpected
				}
				x, n2 := protowire.ConsumeVarint(v[n:])
				if n2 < 0 {
					return errUnexpected
				}
				v = v[n+n2:]
				if fn == 1 {
					r.structVal.MostSignificantBits = int64(x)
				} else {
					r.structVal.LeastSignificantBits = int64(x)
				}
			}
			r.structured.Structured = &r.structVal
			r.id.Value = &r.structured
		case 2:
			if !utf8.Valid(v) {
				return errUnexpected
			}
			r.str.String_ = string(v)
			r.id.Value = &r.str
		default:
			return errUnexpected
		}
	}
	return nil
}

// onlyBytesField returns the last value of bytes field want in message b,
// which may hold no other field than want and allowed; an absent field is
// empty, not nil.
func onlyBytesField(b []byte, want protowire.Number, allowed ...protowire.Number) ([]byte, error) {
	out := []byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return nil, errUnexpected
		}
		v, n2 := protowire.ConsumeBytes(b[n:])
		if n2 < 0 {
			return nil, errUnexpected
		}
		b = b[n+n2:]
		switch {
		case num == want:
			out = v
		case len(allowed) > 0 && num == allowed[0]:
		default:
			return nil, errUnexpected
		}
	}
	return out, nil
}
