package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// ReadStream calls fn with the visible events of stream in revision order:
// forwards, revisions >= from ascending (End yields nothing); backwards,
// revisions <= from descending (End starts at the last event). Events hidden
// by $tb, $maxCount or $maxAge are skipped; a metastream shows only its
// latest event. Errors: ErrStreamNotFound (never written, or soft-deleted),
// *StreamDeletedError (tombstoned, or the metastream of a tombstoned
// stream), ErrInvalidArgument, ErrClosed, ctx.Err().
//
// The read sees exactly the acknowledged state at its start, streams through
// an iterator (memory does not grow with the stream) and checks ctx between
// records.
func (s *Store) ReadStream(ctx context.Context, stream string, from uint64, backwards bool, fn ReadFunc) error {
	if err := validateStream(stream, false); err != nil {
		return fmt.Errorf("read %q: %w", stream, err)
	}
	if !s.enterRead() {
		return fmt.Errorf("read %q: %w", stream, ErrClosed)
	}
	defer s.readers.Done()
	if err := s.readStream(ctx, stream, from, backwards, fn); err != nil {
		return fmt.Errorf("read %q: %w", stream, err)
	}
	return nil
}

func (s *Store) readStream(ctx context.Context, stream string, from uint64, backwards bool, fn ReadFunc) error {
	x, isMeta := metastreamOf(stream)
	if isMeta {
		xs, err := s.committedState(ctx, x)
		if err != nil {
			return err
		}
		if xs.tombstoned {
			return &StreamDeletedError{Stream: stream}
		}
	}
	st, err := s.committedState(ctx, stream)
	if err != nil {
		return err
	}
	if st.tombstoned {
		return &StreamDeletedError{Stream: stream}
	}
	if st.next == 0 || (!isMeta && st.softDeleted()) {
		return ErrStreamNotFound
	}

	// Visible revisions are [lo, last].
	last := st.next - 1
	lo := st.limits.tb
	minCreated := int64(math.MinInt64)
	if isMeta {
		lo = last // metastreams behave as $maxCount=1
	} else {
		if mc := st.limits.maxCount; mc > 0 && st.next > mc {
			lo = max(lo, st.next-mc)
		}
		if st.limits.maxAge > 0 {
			minCreated = s.now().Add(-st.limits.maxAge).UnixNano()
		}
	}
	var start, end uint64
	if backwards {
		start, end = lo, min(from, last)
	} else {
		if from == End {
			return nil
		}
		start, end = max(from, lo), last
	}
	if start > end {
		return nil
	}

	var typ internedString
	return s.scanStream(ctx, st.id, start, end, backwards, func(pos uint64, raw *rawRecord) bool {
		if raw.created < minCreated {
			return true
		}
		return fn(Record{
			Stream:   stream,
			Revision: raw.rev,
			Position: pos,
			ID:       raw.id,
			Type:     typ.get(raw.typ),
			JSON:     raw.json,
			Created:  time.Unix(0, raw.created).UTC(),
			Data:     raw.data,
			Metadata: raw.metadata,
		})
	})
}

// TombstoneRecord returns the "$streamDeleted" record of a tombstoned
// stream, found by an exact index lookup at TombstoneRevision (a
// subscription delivers it before failing, as KurrentDB does). The
// record's byte slices belong to the caller. Errors: ErrStreamNotFound (the
// stream is not tombstoned; a metastream never is), ErrInvalidArgument,
// ErrClosed, ctx.Err().
func (s *Store) TombstoneRecord(ctx context.Context, stream string) (Record, error) {
	if err := validateStream(stream, false); err != nil {
		return Record{}, fmt.Errorf("tombstone record of %q: %w", stream, err)
	}
	if !s.enterRead() {
		return Record{}, fmt.Errorf("tombstone record of %q: %w", stream, ErrClosed)
	}
	defer s.readers.Done()
	rec, err := s.tombstoneRecord(ctx, stream)
	if err != nil {
		return Record{}, fmt.Errorf("tombstone record of %q: %w", stream, err)
	}
	return rec, nil
}

func (s *Store) tombstoneRecord(ctx context.Context, stream string) (Record, error) {
	st, err := s.committedState(ctx, stream)
	if err != nil {
		return Record{}, err
	}
	if !st.tombstoned {
		return Record{}, ErrStreamNotFound
	}
	var rec Record
	found := false
	err = s.scanStream(ctx, st.id, TombstoneRevision, TombstoneRevision, false, func(pos uint64, raw *rawRecord) bool {
		rec = Record{
			Stream:   stream,
			Revision: raw.rev,
			Position: pos,
			ID:       raw.id,
			Type:     string(raw.typ),
			JSON:     raw.json,
			Created:  time.Unix(0, raw.created).UTC(),
			Data:     bytes.Clone(raw.data),
			Metadata: bytes.Clone(raw.metadata),
		}
		found = true
		return false
	})
	if err != nil {
		return Record{}, err
	}
	if !found {
		// The state says tombstoned, and both were written in one batch.
		return Record{}, fmt.Errorf("tombstone index entry missing: %w", errCorrupt)
	}
	return rec, nil
}

// ReadAll calls fn with every record of the log in position order:
// forwards, positions >= from (0 is the start, End yields nothing);
// backwards, positions < from (End starts at the last record). $all shows
// everything: metastream events, tombstones, system streams; stream
// truncation does not apply. Errors: ErrClosed, ctx.Err().
func (s *Store) ReadAll(ctx context.Context, from uint64, backwards bool, fn ReadFunc) error {
	if !s.enterRead() {
		return fmt.Errorf("read $all: %w", ErrClosed)
	}
	defer s.readers.Done()
	if err := s.readAll(ctx, from, backwards, fn); err != nil {
		return fmt.Errorf("read $all: %w", err)
	}
	return nil
}

func (s *Store) readAll(ctx context.Context, from uint64, backwards bool, fn ReadFunc) error {
	// Bound by the acknowledged head: a record Pebble already shows but the
	// writer has not acknowledged must not be seen.
	head := s.head.Load()
	var start, end uint64
	if backwards {
		if from == 0 {
			return nil
		}
		start, end = 1, min(from-1, head)
	} else {
		if from == End {
			return nil
		}
		start, end = max(from, 1), head
	}
	if start > end {
		return nil
	}
	lower := appendLogKey(nil, start)
	upper := appendLogKey(nil, end+1)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer it.Close()

	done := ctxDone(ctx)
	var stream, typ internedString
	var raw rawRecord
	ok := it.First()
	if backwards {
		ok = it.Last()
	}
	for ; ok; ok = step(it, backwards) {
		if err := s.interrupted(ctx, done); err != nil {
			return err
		}
		pos, err := decodeLogKey(it.Key())
		if err != nil {
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("record %d: %w", pos, err)
		}
		if err := decodeRecord(v, &raw); err != nil {
			return fmt.Errorf("record %d: %w", pos, err)
		}
		if !fn(Record{
			Stream:   stream.get(raw.stream),
			Revision: raw.rev,
			Position: pos,
			ID:       raw.id,
			Type:     typ.get(raw.typ),
			JSON:     raw.json,
			Created:  time.Unix(0, raw.created).UTC(),
			Data:     raw.data,
			Metadata: raw.metadata,
		}) {
			return nil
		}
	}
	return it.Error()
}

// scanStream calls fn for the records of stream id at revisions lo..hi, in
// revision order (descending when backwards). ctx may be nil (the writer).
func (s *Store) scanStream(ctx context.Context, id, lo, hi uint64, backwards bool, fn func(pos uint64, raw *rawRecord) bool) error {
	lower := appendIndexKey(nil, id, lo)
	upper := appendIndexKey(nil, id, hi+1)
	idx, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	defer idx.Close()
	// Created after idx, so it sees at least every record idx points to.
	log, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLog}, UpperBound: []byte{prefixLog + 1}})
	if err != nil {
		return err
	}
	defer log.Close()

	done := ctxDone(ctx)
	var raw rawRecord
	key := make([]byte, 0, 9)
	ok := idx.First()
	if backwards {
		ok = idx.Last()
	}
	for ; ok; ok = step(idx, backwards) {
		if err := s.interrupted(ctx, done); err != nil {
			return err
		}
		rev, err := decodeIndexKey(idx.Key())
		if err != nil {
			return err
		}
		v, err := idx.ValueAndErr()
		if err != nil {
			return fmt.Errorf("index entry %d: %w", rev, err)
		}
		pos, err := decodeUint64Value(v)
		if err != nil {
			return fmt.Errorf("index entry %d: %w", rev, err)
		}
		key = appendLogKey(key[:0], pos)
		if !log.SeekGE(key) || !bytes.Equal(log.Key(), key) {
			if err := log.Error(); err != nil {
				return err
			}
			return fmt.Errorf("revision %d: record %d missing: %w", rev, pos, errCorrupt)
		}
		rv, err := log.ValueAndErr()
		if err != nil {
			return fmt.Errorf("record %d: %w", pos, err)
		}
		if err := decodeRecord(rv, &raw); err != nil {
			return fmt.Errorf("record %d: %w", pos, err)
		}
		if !fn(pos, &raw) {
			return nil
		}
	}
	return idx.Error()
}

func step(it *pebble.Iterator, backwards bool) bool {
	if backwards {
		return it.Prev()
	}
	return it.Next()
}

func ctxDone(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	return ctx.Done()
}

// interrupted reports why a long read must stop: its context ended or the
// store is closing. The writer (nil ctx) is never interrupted: Close lets it
// finish the requests already queued.
func (s *Store) interrupted(ctx context.Context, done <-chan struct{}) error {
	if ctx == nil {
		return nil
	}
	select {
	case <-done:
		return ctx.Err()
	default:
	}
	if s.closing.Load() {
		return ErrClosed
	}
	return nil
}

// committedState returns the acknowledged state of name for a reader: from
// the cache, else from Pebble. A state Pebble shows that belongs to a commit
// not yet acknowledged (the writer publishes right after) is waited for, so
// readers never act on it.
func (s *Store) committedState(ctx context.Context, name string) (streamState, error) {
	for {
		if st, ok := s.states.get(name); ok {
			return st, nil
		}
		changed := s.Changed()
		head := s.head.Load()
		st, err := s.loadState(name)
		if err != nil {
			return streamState{}, err
		}
		if st.modPos <= head {
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return streamState{}, ctx.Err()
		}
		if s.closing.Load() {
			return streamState{}, ErrClosed
		}
	}
}

// loadState reads the stored state of name; a missing one is the zero
// state (never written).
func (s *Store) loadState(name string) (streamState, error) {
	key := appendNameKey(make([]byte, 0, 1+len(name)), name)
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return streamState{}, nil
	}
	if err != nil {
		return streamState{}, fmt.Errorf("load state of %q: %w", name, err)
	}
	defer closer.Close()
	st, err := decodeState(v)
	if err != nil {
		return streamState{}, fmt.Errorf("load state of %q: %w", name, err)
	}
	return st, nil
}

// internedString turns the bytes of a stream name or event type into a
// string, allocating only when they differ from the previous ones and from
// a small table of recent values: reads of long runs of the same names do
// not allocate per record, and memory stays bounded.
type internedString struct {
	seed  maphash.Seed
	table *[64]string
	last  string
}

func (c *internedString) get(b []byte) string {
	if string(b) == c.last { // compiled without allocation
		return c.last
	}
	if c.table == nil {
		c.table = new([64]string)
		c.seed = maphash.MakeSeed()
	}
	slot := &c.table[maphash.Bytes(c.seed, b)%uint64(len(c.table))]
	if string(b) != *slot {
		*slot = string(b)
	}
	c.last = *slot
	return c.last
}
