package store

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Key prefixes. Each keyspace is one byte so that range scans stay within
// their prefix with a simple [prefix, prefix+1) bound.
const (
	prefixCounter = 'c' // "c" -> next stream id
	prefixLog     = 'l' // "l" + position -> record
	prefixName    = 'n' // "n" + stream name -> stream state
	prefixStream  = 's' // "s" + stream id + revision -> position
)

// Format versions, the first byte of every encoded value, so that a future
// layout can be read beside this one.
const (
	recordVersion1 = 1
	stateVersion1  = 1
)

const (
	recordFlagJSON = 1 << 0

	stateFlagTombstoned = 1 << 0
	stateFlagHasMeta    = 1 << 1
)

// errCorrupt wraps every decoding failure of stored bytes.
var errCorrupt = errors.New("corrupt stored value")

// counterKey is the key of the next stream id.
var counterKey = []byte{prefixCounter}

// appendLogKey appends the key of the record at pos to dst.
func appendLogKey(dst []byte, pos uint64) []byte {
	dst = append(dst, prefixLog)
	return binary.BigEndian.AppendUint64(dst, pos)
}

// appendIndexKey appends the stream index key of (id, rev) to dst.
func appendIndexKey(dst []byte, id, rev uint64) []byte {
	dst = append(dst, prefixStream)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return binary.BigEndian.AppendUint64(dst, rev)
}

// appendNameKey appends the stream state key of name to dst.
func appendNameKey(dst []byte, name string) []byte {
	dst = append(dst, prefixName)
	return append(dst, name...)
}

// decodeLogKey returns the position of a log key.
func decodeLogKey(k []byte) (uint64, error) {
	if len(k) != 9 || k[0] != prefixLog {
		return 0, fmt.Errorf("log key %x: %w", k, errCorrupt)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

// decodeIndexKey returns the revision of a stream index key.
func decodeIndexKey(k []byte) (uint64, error) {
	if len(k) != 17 || k[0] != prefixStream {
		return 0, fmt.Errorf("index key %x: %w", k, errCorrupt)
	}
	return binary.BigEndian.Uint64(k[9:]), nil
}

// decodeUint64Value decodes an 8-byte big-endian value (index entries, the
// stream id counter).
func decodeUint64Value(v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("value of %d bytes, want 8: %w", len(v), errCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

// recordHeader is what the writer knows about a record beyond its Proposed
// event.
type recordHeader struct {
	stream  string
	rev     uint64
	created int64 // unix nanoseconds
}

// appendRecord appends the encoding of one record to dst:
//
//	version(1) flags(1) uvarint(rev) varint(created ns) id(16)
//	uvarint(len)+stream uvarint(len)+type uvarint(len)+data uvarint(len)+metadata
func appendRecord(dst []byte, h recordHeader, e *Proposed, data []byte) []byte {
	var flags byte
	if e.JSON {
		flags |= recordFlagJSON
	}
	dst = append(dst, recordVersion1, flags)
	dst = binary.AppendUvarint(dst, h.rev)
	dst = binary.AppendVarint(dst, h.created)
	dst = append(dst, e.ID[:]...)
	dst = appendBytes(dst, h.stream)
	dst = appendBytes(dst, e.Type)
	dst = appendBytes(dst, data)
	return appendBytes(dst, e.Metadata)
}

func appendBytes[T string | []byte](dst []byte, b T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// rawRecord is a decoded record whose slices alias the stored bytes.
type rawRecord struct {
	json     bool
	rev      uint64
	created  int64
	id       [16]byte
	stream   []byte
	typ      []byte
	data     []byte
	metadata []byte
}

// decodeRecord decodes a record without copying.
func decodeRecord(v []byte, r *rawRecord) error {
	if len(v) < 2 {
		return fmt.Errorf("record of %d bytes: %w", len(v), errCorrupt)
	}
	if v[0] != recordVersion1 {
		return fmt.Errorf("record version %d: %w", v[0], errCorrupt)
	}
	r.json = v[1]&recordFlagJSON != 0
	d := decoder{b: v[2:]}
	r.rev = d.uvarint()
	r.created = d.varint()
	copy(r.id[:], d.fixed(16))
	r.stream = d.bytes()
	r.typ = d.bytes()
	r.data = d.bytes()
	r.metadata = d.bytes()
	if d.err {
		return fmt.Errorf("record: %w", errCorrupt)
	}
	return nil
}

// streamState is what the store knows about one stream name. The zero value
// is a stream that was never written. A $$X metastream has its own state (its
// revisions); X's state carries the effective metadata.
type streamState struct {
	id         uint64   // stream index id, 0 until the stream has an index entry
	next       uint64   // number of revisions used: last revision + 1, 0 = no events
	lastPos    uint64   // position of the last event (excluding a tombstone)
	modPos     uint64   // position of the last record that changed this state
	lastID     [16]byte // ID of the event at revision next-1 (idempotency fast path)
	tombstoned bool
	hasMeta    bool   // $$X has at least one event
	meta       []byte // effective metadata (latest $$X data); never mutated in place
	limits     metaLimits
}

// appendState appends the encoding of st to dst:
//
//	version(1) flags(1) uvarint(id) uvarint(next) uvarint(lastPos) uvarint(modPos)
//	lastID(16) [uvarint(len)+meta]
func appendState(dst []byte, st *streamState) []byte {
	var flags byte
	if st.tombstoned {
		flags |= stateFlagTombstoned
	}
	if st.hasMeta {
		flags |= stateFlagHasMeta
	}
	dst = append(dst, stateVersion1, flags)
	dst = binary.AppendUvarint(dst, st.id)
	dst = binary.AppendUvarint(dst, st.next)
	dst = binary.AppendUvarint(dst, st.lastPos)
	dst = binary.AppendUvarint(dst, st.modPos)
	dst = append(dst, st.lastID[:]...)
	if st.hasMeta {
		dst = appendBytes(dst, st.meta)
	}
	return dst
}

// decodeState decodes a stream state, copying the metadata bytes (the input
// belongs to Pebble).
func decodeState(v []byte) (streamState, error) {
	var st streamState
	if len(v) < 2 {
		return st, fmt.Errorf("stream state of %d bytes: %w", len(v), errCorrupt)
	}
	if v[0] != stateVersion1 {
		return st, fmt.Errorf("stream state version %d: %w", v[0], errCorrupt)
	}
	flags := v[1]
	d := decoder{b: v[2:]}
	st.id = d.uvarint()
	st.next = d.uvarint()
	st.lastPos = d.uvarint()
	st.modPos = d.uvarint()
	copy(st.lastID[:], d.fixed(16))
	st.tombstoned = flags&stateFlagTombstoned != 0
	if flags&stateFlagHasMeta != 0 {
		st.hasMeta = true
		st.meta = append([]byte{}, d.bytes()...)
		st.limits = parseLimits(st.meta)
	}
	if d.err {
		return st, fmt.Errorf("stream state: %w", errCorrupt)
	}
	return st, nil
}

// decoder reads varints and length-prefixed fields, remembering the first
// failure so that callers check once.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) fixed(n int) []byte {
	if len(d.b) < n {
		d.err = true
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
