package server

// This differential test lives inside package server, not server_test: the
// decoder under test (appendFrame, its unmarshal and decode methods and the
// serverCodec that calls them) is unexported, and the test must look at the
// wire fields unmarshal leaves in the frame before decode copies and clears
// them. Exporting any of it for a test would widen the package's API for no
// caller's benefit.
//
// The reference is grpc-go's own protobuf codec, which is proto.Unmarshal
// into a *streams.AppendReq, followed by the proto-path rules the server
// applied before the hand-written decoder existed (uuidFromProto, and the
// metadata rules of §3 restated in referenceEvent).
//
// "Agree" means:
//   - Acceptance: the hand-written decoder fails exactly when proto.Unmarshal
//     does, and its errors wrap errWire.
//   - Options: the decoded AppendReq_Options is proto.Equal to the reference
//     (the hand-written decoder hands the options bytes to proto itself, so
//     this also checks it feeds them the right bytes, merged the right way).
//   - Proposed message: present in both or in neither; the id agrees in kind
//     (none, structured, string) and value; "type" and "content-type" agree
//     in presence and value; custom metadata and data agree as byte strings
//     (proto3 bytes have no presence: absent and empty are the same).
//   - Deliberately not compared: metadata keys other than "type" and
//     "content-type" (the server never reads them; KurrentDB sets "created"
//     itself) and unknown fields (the server drops them; proto keeps them).
//     The hand-written decoder must still fail wherever proto fails on them,
//     e.g. an other key with invalid UTF-8, or a truncated unknown field.
//   - Event: the store.Proposed or refusal decode derives from the frame is
//     the one the proto path derives from the reference message, even when
//     the frame is reused from an earlier message (as Append reuses it) and
//     the received buffer is overwritten once the codec returns (as grpc-go
//     recycles it).

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// wireFields is the content of one AppendReq in a form both decoders can
// be projected onto and compared.
type wireFields struct {
	Options  *streams.AppendReq_Options
	Proposed bool
	IDKind   string // "none", "structured" or "string"
	Most     uint64
	Least    uint64
	IDString string
	Type     *string // nil: key absent
	CT       *string // nil: key absent
	Metadata []byte
	Data     []byte
}

// eventOutcome is what Append gets from one proposed message: the event,
// or the reason it is refused, rendered as text so that status errors
// compare by code and message.
type eventOutcome struct {
	Event  store.Proposed
	Refuse string
}

func newEventOutcome(ev store.Proposed, err error) eventOutcome {
	switch {
	case err == nil:
		return eventOutcome{Event: ev}
	case errors.Is(err, errMissingMetadata):
		return eventOutcome{Refuse: "missing metadata"}
	default:
		s, _ := status.FromError(err)
		return eventOutcome{Refuse: s.Code().String() + ": " + s.Message()}
	}
}

// cmpOpts compares protobuf messages semantically and byte slices as
// byte strings: nil and empty alike (proto3 bytes have no presence), and
// fast, which cmp's element-by-element default is not.
func cmpOpts() cmp.Options {
	return cmp.Options{protocmp.Transform(), cmp.Comparer(bytes.Equal)}
}

// referenceFields projects a proto-decoded message onto wireFields.
func referenceFields(m *streams.AppendReq) wireFields {
	w := wireFields{Options: m.GetOptions(), IDKind: "none"}
	pm := m.GetProposedMessage()
	if pm == nil {
		return w
	}
	w.Proposed = true
	switch v := pm.GetId().GetValue().(type) {
	case *shared.UUID_Structured_:
		w.IDKind = "structured"
		w.Most = uint64(v.Structured.GetMostSignificantBits())
		w.Least = uint64(v.Structured.GetLeastSignificantBits())
	case *shared.UUID_String_:
		w.IDKind, w.IDString = "string", v.String_
	}
	if v, ok := pm.GetMetadata()[metaType]; ok {
		w.Type = &v
	}
	if v, ok := pm.GetMetadata()[metaContentType]; ok {
		w.CT = &v
	}
	w.Metadata, w.Data = pm.GetCustomMetadata(), pm.GetData()
	return w
}

// frameFields projects a frame, right after unmarshal, onto wireFields.
func frameFields(f *appendFrame) wireFields {
	w := wireFields{Options: f.options, Proposed: f.proposed, IDKind: "none"}
	if !f.proposed {
		return w
	}
	switch f.id.kind {
	case idStructured:
		w.IDKind, w.Most, w.Least = "structured", f.id.most, f.id.leas
	case idString:
		w.IDKind, w.IDString = "string", string(f.id.str)
	}
	if f.hasType {
		s := string(f.typ)
		w.Type = &s
	}
	if f.hasCT {
		s := string(f.ct)
		w.CT = &s
	}
	w.Metadata, w.Data = f.metadata, f.data
	return w
}

// referenceEvent is the proto path's answer to a proposed message (§2, §3):
// "type" and a non-empty "content-type" are required, the type must not be
// empty, the id must be a valid non-nil UUID in either form, and only an
// is-JSON flag is kept of the content type.
func referenceEvent(pm *streams.AppendReq_ProposedMessage) (store.Proposed, error) {
	typ, hasType := pm.GetMetadata()[metaType]
	ct, hasCT := pm.GetMetadata()[metaContentType]
	if !hasType || !hasCT || ct == "" {
		return store.Proposed{}, errMissingMetadata
	}
	if typ == "" {
		return store.Proposed{}, invalidArgument("event type is empty")
	}
	id, err := uuidFromProto(pm.GetId())
	if err != nil {
		return store.Proposed{}, err
	}
	return store.Proposed{
		ID:       id,
		Type:     typ,
		JSON:     ct == contentTypeJSON,
		Data:     pm.GetData(),
		Metadata: pm.GetCustomMetadata(),
	}, nil
}

// uuidFromProto is the proto path's decoding of an event ID in either wire
// form (§2), the reference for appendFrame.event's. It refuses a missing,
// malformed or nil UUID: the client would read the nil UUID back for an
// event sent without an ID (§14).
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

// MustDirtyFrame returns a frame that has already decoded a valid event
// with every field set, as Append's frame has after the first event: state
// left from it must not leak into the next message.
func MustDirtyFrame(tb testing.TB) *appendFrame {
	tb.Helper()
	f := &appendFrame{}
	in := proposedFrame(
		structuredIDField(0x0102030405060708, 0x090a0b0c0d0e0f10),
		metaEntry("type", "Dirty"), metaEntry("content-type", "application/json"),
		metaEntry("other", "x"), customMetaField("dirty-meta"), dataField(`{"dirty":1}`))
	if err := f.decode(in); err != nil || !f.proposed || f.evErr != nil {
		tb.Fatalf("decode dirty frame: err %v, proposed %t, event error %v", err, f.proposed, f.evErr)
	}
	return f
}

// decodeOutcome is what the hand-written decoder made of one message.
type decodeOutcome struct {
	err      error
	options  *streams.AppendReq_Options
	proposed bool
	event    eventOutcome
}

// MustAgree decodes in with the hand-written decoder and with
// proto.Unmarshal, fails tb where they disagree (see the file comment) and
// returns the hand-written decoder's outcome.
func MustAgree(tb testing.TB, in []byte) decodeOutcome {
	tb.Helper()
	ref := &streams.AppendReq{}
	refErr := proto.Unmarshal(bytes.Clone(in), ref)

	// The wire fields, before decode copies what it keeps and clears them.
	raw := &appendFrame{}
	rawErr := raw.unmarshal(in)
	if (rawErr == nil) != (refErr == nil) {
		tb.Fatalf("unmarshal %x: hand-written error %v, proto error %v", in, rawErr, refErr)
	}
	if rawErr != nil && !errors.Is(rawErr, errWire) {
		tb.Fatalf("unmarshal %x: error %v does not wrap errWire", in, rawErr)
	}
	if rawErr == nil {
		if d := cmp.Diff(referenceFields(ref), frameFields(raw), cmpOpts()); d != "" {
			tb.Fatalf("unmarshal %x: fields differ (-proto +hand-written):\n%s", in, d)
		}
	}

	// The codec, as grpc-go calls it: into a reused frame, from a buffer
	// that is scribbled over once Unmarshal returns.
	f := MustDirtyFrame(tb)
	buf := bytes.Clone(in)
	err := newServerCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(buf)}, f)
	for i := range buf {
		buf[i] = 0xa5
	}
	out := decodeOutcome{err: err, options: f.options, proposed: f.proposed}
	if (err == nil) != (refErr == nil) {
		tb.Fatalf("codec unmarshal %x: hand-written error %v, proto error %v", in, err, refErr)
	}
	if err != nil {
		if !errors.Is(err, errWire) {
			tb.Fatalf("codec unmarshal %x: error %v does not wrap errWire", in, err)
		}
		return out
	}
	if d := cmp.Diff(ref.GetOptions(), f.options, cmpOpts()); d != "" {
		tb.Fatalf("codec unmarshal %x: options differ (-proto +hand-written):\n%s", in, d)
	}
	pm := ref.GetProposedMessage()
	if f.proposed != (pm != nil) {
		tb.Fatalf("codec unmarshal %x: hand-written proposed %t, proto proposed %t", in, f.proposed, pm != nil)
	}
	if !f.proposed {
		return out
	}
	out.event = newEventOutcome(f.ev, f.evErr)
	want := newEventOutcome(referenceEvent(pm))
	if d := cmp.Diff(want, out.event, cmpOpts()); d != "" {
		tb.Fatalf("codec unmarshal %x: event differs (-proto path +hand-written):\n%s", in, d)
	}
	return out
}

// Builders of raw protobuf bytes, so that cases can hold what no
// well-behaved encoder writes: repeated fields, unknown fields, odd wire
// types, truncations.

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func bytesField(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// optionsFrame is AppendReq{Options: body}.
func optionsFrame(body ...[]byte) []byte { return bytesField(1, cat(body...)) }

// proposedFrame is AppendReq{ProposedMessage: body}.
func proposedFrame(body ...[]byte) []byte { return bytesField(2, cat(body...)) }

// streamField is Options.stream_identifier (its stream_name is field 3).
func streamField(name string) []byte { return bytesField(1, bytesField(3, []byte(name))) }

func structuredIDField(most, least uint64) []byte {
	return bytesField(1, bytesField(1, cat(varintField(1, most), varintField(2, least))))
}

func stringIDField(s string) []byte { return bytesField(1, bytesField(2, []byte(s))) }

func metaEntry(k, v string) []byte {
	return bytesField(2, cat(bytesField(1, []byte(k)), bytesField(2, []byte(v))))
}

func customMetaField(v string) []byte { return bytesField(3, []byte(v)) }

func dataField(v string) []byte { return bytesField(4, []byte(v)) }

// requiredMeta is the metadata every accepted event carries.
func requiredMeta() []byte {
	return cat(metaEntry("type", "T"), metaEntry("content-type", "application/json"))
}

const (
	testUUID      = "0f8fad5b-d9cb-469f-a165-70867728950e"
	testMost      = 0x0f8fad5bd9cb469f
	testLeast     = 0xa16570867728950e
	malformedUTF8 = "\xff\xfe"
)

// testUUIDBytes is testUUID as bytes.
func testUUIDBytes() [16]byte {
	return [16]byte{0x0f, 0x8f, 0xad, 0x5b, 0xd9, 0xcb, 0x46, 0x9f, 0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e}
}

// wireCase is one hand-picked message and what Append must make of it.
type wireCase struct {
	name string
	in   []byte
	// want is "malformed" (decoding fails), "options", "none" (neither
	// member set), "event" or the refusal of the proposed event as
	// newEventOutcome renders it.
	want string
	ev   *store.Proposed // for "event": the event, when worth spelling out
	exp  *store.Expected // for "options": the expected revision
}

func wireCases() []wireCase {
	ev := func(typ string, json bool, data, meta string) *store.Proposed {
		return &store.Proposed{ID: testUUIDBytes(), Type: typ, JSON: json, Data: []byte(data), Metadata: []byte(meta)}
	}
	exp := func(kind store.ExpectedKind, rev uint64) *store.Expected {
		return &store.Expected{Kind: kind, Revision: rev}
	}
	valid := cat(structuredIDField(testMost, testLeast), requiredMeta())
	tooLong := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.BytesType), 1<<62)
	return []wireCase{
		// Options, every expected-revision kind.
		{name: "options any", in: optionsFrame(streamField("s"), bytesField(4, nil)), want: "options", exp: exp(store.ExpectAny, 0)},
		{name: "options no stream", in: optionsFrame(streamField("s"), bytesField(3, nil)), want: "options", exp: exp(store.ExpectNoStream, 0)},
		{name: "options stream exists", in: optionsFrame(streamField("s"), bytesField(5, nil)), want: "options", exp: exp(store.ExpectStreamExists, 0)},
		{name: "options revision", in: optionsFrame(streamField("s"), varintField(2, 42)), want: "options", exp: exp(store.ExpectRevision, 42)},
		{name: "options max revision", in: optionsFrame(streamField("s"), varintField(2, 1<<64-1)), want: "options", exp: exp(store.ExpectRevision, 1<<64-1)},
		{name: "options last oneof member wins", in: optionsFrame(streamField("s"), varintField(2, 7), bytesField(3, nil)), want: "options", exp: exp(store.ExpectNoStream, 0)},
		{name: "options repeated merge", in: cat(optionsFrame(varintField(2, 7)), optionsFrame(streamField("s"))), want: "options", exp: exp(store.ExpectRevision, 7)},
		{name: "options empty", in: optionsFrame(), want: "options"},
		{name: "options truncated", in: optionsFrame(streamField("s"))[:4], want: "malformed"},
		{name: "options bad inner varint", in: optionsFrame([]byte{0x10, 0xff}), want: "malformed"},

		// Neither member.
		{name: "empty message", in: nil, want: "none"},
		{name: "only unknown fields", in: cat(varintField(9, 1), bytesField(15, []byte("x"))), want: "none"},
		{name: "options as varint is unknown", in: varintField(1, 3), want: "none"},

		// The oneof: the last member seen is the one set.
		{name: "proposed then options", in: cat(proposedFrame(valid), optionsFrame(streamField("s"))), want: "options"},
		{name: "options then proposed", in: cat(optionsFrame(streamField("s")), proposedFrame(valid, dataField("d"))),
			want: "event", ev: ev("T", true, "d", "")},
		{name: "proposed, options, proposed starts afresh",
			in:   cat(proposedFrame(valid, dataField("old")), optionsFrame(), proposedFrame(requiredMeta(), dataField("new"))),
			want: "InvalidArgument: event id: missing"},

		// Proposed messages, ids in both forms.
		{name: "structured id", in: proposedFrame(valid, customMetaField("m"), dataField("d")), want: "event", ev: ev("T", true, "d", "m")},
		{name: "string id", in: proposedFrame(stringIDField(testUUID), requiredMeta()), want: "event", ev: ev("T", true, "", "")},
		{name: "string id N form", in: proposedFrame(stringIDField(strings.ReplaceAll(testUUID, "-", "")), requiredMeta()), want: "event", ev: ev("T", true, "", "")},
		{name: "string id braces", in: proposedFrame(stringIDField("{"+testUUID+"}"), requiredMeta()), want: "event", ev: ev("T", true, "", "")},
		{name: "string id urn refused", in: proposedFrame(stringIDField("urn:uuid:"+testUUID), requiredMeta()),
			want: `InvalidArgument: event id: malformed UUID "urn:uuid:` + testUUID + `"`},
		{name: "string id invalid UTF-8", in: proposedFrame(stringIDField(malformedUTF8), requiredMeta()), want: "malformed"},
		{name: "structured id merges",
			in:   proposedFrame(bytesField(1, bytesField(1, varintField(1, testMost))), bytesField(1, bytesField(1, varintField(2, testLeast))), requiredMeta()),
			want: "event", ev: ev("T", true, "", "")},
		{name: "string id replaces structured", in: proposedFrame(structuredIDField(1, 2), stringIDField(testUUID), requiredMeta()), want: "event", ev: ev("T", true, "", "")},
		{name: "structured after string starts afresh",
			in:   proposedFrame(structuredIDField(testMost, 5), stringIDField(testUUID), bytesField(1, bytesField(1, varintField(2, testLeast))), requiredMeta()),
			want: "event", ev: &store.Proposed{ID: [16]byte{8: 0xa1, 0x65, 0x70, 0x86, 0x77, 0x28, 0x95, 0x0e}, Type: "T", JSON: true}},
		{name: "id fields merge across proposed messages",
			in:   cat(proposedFrame(bytesField(1, bytesField(1, varintField(1, testMost)))), proposedFrame(bytesField(1, bytesField(1, varintField(2, testLeast))), requiredMeta())),
			want: "event", ev: ev("T", true, "", "")},
		{name: "nil structured id", in: proposedFrame(structuredIDField(0, 0), requiredMeta()), want: "InvalidArgument: event id: the nil UUID is not a valid event id"},
		{name: "empty id message", in: proposedFrame(bytesField(1, nil), requiredMeta()), want: "InvalidArgument: event id: missing"},
		{name: "no id", in: proposedFrame(requiredMeta()), want: "InvalidArgument: event id: missing"},
		{name: "negative int64 bits", in: proposedFrame(structuredIDField(1<<64-1, 1<<63), requiredMeta()), want: "event"},
		// Packed form of the int64 bits: a wire-type mismatch, so unknown.
		{name: "packed id bits are unknown",
			in:   proposedFrame(bytesField(1, bytesField(1, bytesField(1, protowire.AppendVarint(nil, testMost)))), requiredMeta()),
			want: "InvalidArgument: event id: the nil UUID is not a valid event id"},
		{name: "id bits as fixed64 are unknown",
			in:   proposedFrame(bytesField(1, bytesField(1, protowire.AppendFixed64(protowire.AppendTag(nil, 1, protowire.Fixed64Type), 1))), requiredMeta()),
			want: "InvalidArgument: event id: the nil UUID is not a valid event id"},
		{name: "id bits varint overflow", in: proposedFrame(bytesField(1, bytesField(1, append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10)...)))), want: "malformed"},
		{name: "id bits ten-byte varint", in: proposedFrame(bytesField(1, bytesField(1, append(append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 9)...), 0x01))), requiredMeta()), want: "event"},

		// Metadata.
		{name: "missing type", in: proposedFrame(structuredIDField(testMost, testLeast), metaEntry("content-type", "application/json")), want: "missing metadata"},
		{name: "missing content type", in: proposedFrame(structuredIDField(testMost, testLeast), metaEntry("type", "T")), want: "missing metadata"},
		{name: "empty content type", in: proposedFrame(structuredIDField(testMost, testLeast), metaEntry("type", "T"), metaEntry("content-type", "")), want: "missing metadata"},
		{name: "empty type", in: proposedFrame(structuredIDField(testMost, testLeast), metaEntry("type", ""), metaEntry("content-type", "x")), want: "InvalidArgument: event type is empty"},
		{name: "entry without value", in: proposedFrame(structuredIDField(testMost, testLeast), bytesField(2, bytesField(1, []byte("type"))), metaEntry("content-type", "x")),
			want: "InvalidArgument: event type is empty"},
		{name: "entry without key is the empty key", in: proposedFrame(valid, bytesField(2, bytesField(2, []byte("type")))), want: "event"},
		{name: "binary content type", in: proposedFrame(structuredIDField(testMost, testLeast), metaEntry("type", "T"), metaEntry("content-type", "text/plain")),
			want: "event", ev: ev("T", false, "", "")},
		{name: "later entry wins", in: proposedFrame(valid, metaEntry("type", "U"), metaEntry("content-type", "application/octet-stream")),
			want: "event", ev: ev("U", false, "", "")},
		{name: "entry key repeated, last wins",
			in:   proposedFrame(structuredIDField(testMost, testLeast), metaEntry("content-type", "application/json"), bytesField(2, cat(bytesField(1, []byte("x")), bytesField(2, []byte("V")), bytesField(1, []byte("type"))))),
			want: "event", ev: ev("V", true, "", "")},
		{name: "other keys ignored", in: proposedFrame(valid, metaEntry("created", "1"), metaEntry("", "")), want: "event", ev: ev("T", true, "", "")},
		{name: "invalid UTF-8 in other key", in: proposedFrame(valid, metaEntry(malformedUTF8, "v")), want: "malformed"},
		{name: "invalid UTF-8 in other value", in: proposedFrame(valid, metaEntry("k", malformedUTF8)), want: "malformed"},
		{name: "invalid UTF-8 in type", in: proposedFrame(structuredIDField(testMost, testLeast), metaEntry("type", malformedUTF8), metaEntry("content-type", "x")), want: "malformed"},
		{name: "entry key as varint is unknown", in: proposedFrame(valid, bytesField(2, cat(varintField(1, 5), bytesField(2, []byte(malformedUTF8))))), want: "malformed"},
		{name: "entry unknown fields", in: proposedFrame(valid, bytesField(2, cat(varintField(3, 1), bytesField(1, []byte("k")), bytesField(7, []byte{0xff})))), want: "event"},
		{name: "entry truncated", in: proposedFrame(valid, bytesField(2, bytesField(1, []byte("type"))[:3])), want: "malformed"},

		// Data and custom metadata.
		{name: "last data wins", in: proposedFrame(valid, dataField("a"), customMetaField("x"), dataField("b"), customMetaField("")),
			want: "event", ev: ev("T", true, "b", "")},
		{name: "data as varint is unknown", in: proposedFrame(valid, dataField("a"), varintField(4, 9)), want: "event", ev: ev("T", true, "a", "")},
		{name: "binary data", in: proposedFrame(valid, dataField("\x00\xff"+malformedUTF8)), want: "event", ev: ev("T", true, "\x00\xff"+malformedUTF8, "")},
		{name: "proposed messages merge", in: cat(proposedFrame(structuredIDField(testMost, testLeast), dataField("d")), proposedFrame(requiredMeta(), customMetaField("m"))),
			want: "event", ev: ev("T", true, "d", "m")},

		// Unknown fields and wire-level damage.
		{name: "unknown fields everywhere",
			in: cat(varintField(3, 1), proposedFrame(valid, varintField(5, 1), bytesField(6, []byte("x")),
				protowire.AppendFixed32(protowire.AppendTag(nil, 7, protowire.Fixed32Type), 1)),
				protowire.AppendTag(protowire.AppendTag(nil, 8, protowire.StartGroupType), 8, protowire.EndGroupType)),
			want: "event"},
		{name: "unmatched end group", in: protowire.AppendTag(nil, 8, protowire.EndGroupType), want: "malformed"},
		{name: "group end mismatch", in: protowire.AppendTag(protowire.AppendTag(nil, 8, protowire.StartGroupType), 9, protowire.EndGroupType), want: "malformed"},
		{name: "reserved wire type", in: []byte{0x0e}, want: "malformed"},
		{name: "field number zero", in: []byte{0x02, 0x00}, want: "malformed"},
		{name: "field number above the maximum", in: varintField(protowire.MaxValidNumber+1, 1), want: "malformed"},
		{name: "field number above the maximum in proposed", in: proposedFrame(valid, varintField(protowire.MaxValidNumber+1, 1)), want: "malformed"},
		{name: "field number above the maximum in id", in: proposedFrame(bytesField(1, varintField(protowire.MaxValidNumber+1, 1)), valid), want: "malformed"},
		{name: "field number above the maximum in structured id", in: proposedFrame(bytesField(1, bytesField(1, varintField(protowire.MaxValidNumber+1, 1))), valid), want: "malformed"},
		{name: "field number above the maximum in entry", in: proposedFrame(valid, bytesField(2, varintField(protowire.MaxValidNumber+1, 1))), want: "malformed"},
		{name: "truncated tag varint", in: []byte{0x80}, want: "malformed"},
		{name: "truncated length varint", in: []byte{0x12, 0x80}, want: "malformed"},
		{name: "truncated proposed", in: proposedFrame(valid)[:len(proposedFrame(valid))-1], want: "malformed"},
		{name: "huge length", in: tooLong, want: "malformed"},
		{name: "huge length in proposed", in: proposedFrame(protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.BytesType), 1<<40)), want: "malformed"},
		{name: "length overflowing int", in: proposedFrame(protowire.AppendVarint(protowire.AppendTag(nil, 4, protowire.BytesType), 1<<64-1)), want: "malformed"},
	}
}

// TestAppendFrameDecodeCases checks hand-picked messages both against the
// reference decoder and against the outcome spelled out for each.
func TestAppendFrameDecodeCases(t *testing.T) {
	for _, tc := range wireCases() {
		t.Run(tc.name, func(t *testing.T) {
			out := MustAgree(t, tc.in)
			got := "none"
			switch {
			case out.err != nil:
				got = "malformed"
			case out.options != nil:
				got = "options"
			case out.proposed && out.event.Refuse != "":
				got = out.event.Refuse
			case out.proposed:
				got = "event"
			}
			if got != tc.want {
				t.Fatalf("decode %x: got %q, want %q (error %v)", tc.in, got, tc.want, out.err)
			}
			if tc.ev != nil {
				if d := cmp.Diff(*tc.ev, out.event.Event, cmpOpts()); d != "" {
					t.Fatalf("decode %x: event differs (-want +got):\n%s", tc.in, d)
				}
			}
			if tc.exp != nil {
				e, err := expectedFromAppend(out.options)
				if err != nil {
					t.Fatalf("expected revision of %x: %v", tc.in, err)
				}
				if d := cmp.Diff(*tc.exp, e); d != "" {
					t.Fatalf("expected revision of %x differs (-want +got):\n%s", tc.in, d)
				}
			}
		})
	}
}

// TestAppendFrameDecodeSequence decodes the messages of one append into one
// frame, as Append does, and checks that each event keeps its own bytes:
// the arena must not hand out overlapping copies.
func TestAppendFrameDecodeSequence(t *testing.T) {
	f := &appendFrame{}
	if err := f.decode(optionsFrame(streamField("s"), bytesField(4, nil))); err != nil || f.options == nil {
		t.Fatalf("decode options: %v", err)
	}
	var got, want []store.Proposed
	for i := range 200 {
		data := strings.Repeat(fmt.Sprint(i%10), i*7) // 140 KB: crosses arena chunks
		typ := fmt.Sprintf("T%d", i%3)
		in := proposedFrame(structuredIDField(testMost, uint64(i+1)), metaEntry("type", typ),
			metaEntry("content-type", "application/json"), dataField(data), customMetaField(typ))
		if err := f.decode(in); err != nil || !f.proposed || f.evErr != nil {
			t.Fatalf("decode event %d: error %v, proposed %t, event error %v", i, err, f.proposed, f.evErr)
		}
		got = append(got, f.ev)
		var id [16]byte
		binary.BigEndian.PutUint64(id[:8], testMost)
		binary.BigEndian.PutUint64(id[8:], uint64(i+1))
		want = append(want, store.Proposed{ID: id, Type: typ, JSON: true, Data: []byte(data), Metadata: []byte(typ)})
	}
	if d := cmp.Diff(want, got, cmpOpts()); d != "" {
		t.Fatalf("events differ (-want +got):\n%s", d)
	}
}

// FuzzAppendFrameDecode checks that the hand-written decoder agrees with
// proto.Unmarshal on arbitrary bytes. The seeds are the hand-picked cases
// above plus testdata/fuzz/FuzzAppendFrameDecode: client-encoded options of
// every expected-revision kind and proposed messages, and hand-built
// unknown and repeated fields, packed id bits, invalid UTF-8, truncated
// varints and huge lengths. field-number-too-large is the input that found
// the decoder skipping field numbers above 2^29-1 that proto refuses.
func FuzzAppendFrameDecode(f *testing.F) {
	for _, tc := range wireCases() {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		MustAgree(t, in)
	})
}
