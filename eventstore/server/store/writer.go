package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

type opKind uint8

const (
	opAppend opKind = iota
	opDelete
	opTombstone
)

// request is one write. Requests are pooled; each keeps its Pebble batch
// and buffers from one use to the next.
type request struct {
	kind   opKind
	stream string
	exp    Expected
	events []Proposed
	res    AppendResult
	err    error

	batch  *pebble.Batch // the request's records; empty when it wrote nothing
	states []namedState  // stream states it changed, published once durable
	head   uint64        // last position it wrote (0: none)
	seq    uint64        // order among applied requests
	// waiter marks a request that wrote nothing but waits in the queue
	// for the requests applied before it to be durable (see writer.await).
	waiter bool
	// published is set, under writer.mu, once the request is durable and
	// its states and head are visible to readers (or it failed). Its owner
	// reads it without mu: once it is set, the writer no longer touches
	// the request.
	published atomic.Bool
	// pre is the state of stream read by writer.prefetch before the
	// request took mu, valid when prefetched is set, read from Pebble once
	// every request up to seq preSeq was applied.
	pre        streamState
	preSeq     uint64
	prefetched bool
	// done is signalled when a request that waits without a batch of its
	// own (see writer.await) is published; capacity 1.
	done chan struct{}
}

// namedState is a stream state and the name it belongs to.
type namedState struct {
	name string
	st   streamState
}

// pendingState is the latest state of a stream changed by a request that
// is not yet durable, and which request (seq) wrote it.
type pendingState struct {
	st  streamState
	seq uint64
}

func (r *request) reset() *request {
	r.stream, r.events, r.res, r.err = "", nil, AppendResult{}, nil
	clear(r.states)
	r.states = r.states[:0]
	r.head, r.seq, r.waiter = 0, 0, false
	r.published.Store(false)
	r.pre, r.preSeq, r.prefetched = streamState{}, 0, false
	if r.batch != nil {
		r.batch.Reset()
	}
	return r
}

// writer owns all mutation. It has no goroutine of its own: each caller
// validates its request and encodes it into its own Pebble batch under mu,
// hands the batch to Pebble's commit pipeline (still under mu, so that the
// WAL order is the validation order) without waiting for the sync, and
// then waits for the sync outside mu. Pebble's WAL writer syncs whatever
// has been queued as soon as the previous sync ends: concurrent callers
// share fsyncs (group commit) with no artificial wait and no hand-off to
// goroutines of ours, and the next requests are validated, encoded and
// applied while a sync is in progress.
//
// A request becomes durable when its sync returns; since Pebble syncs the
// WAL in order, every request applied before it is durable then too. The
// first caller to learn this publishes the whole prefix in order (stream
// states into the cache, then head, then one change notification), so
// readers only ever see acknowledged data.
type writer struct {
	s *Store

	mu      sync.Mutex
	closed  bool
	failed  error                   // sticky: after a failed write nothing more is written
	pending map[string]pendingState // states changed by requests not yet durable
	queue   []*request              // applied, not yet published, in WAL order
	active  sync.WaitGroup          // callers inside the writer, waited for by close

	seq      uint64 // seq of the last applied request
	nextPos  uint64 // next position to assign
	nextID   uint64 // next stream index id to assign
	handedID uint64 // the id counter as last written to a batch
	created  int64  // commit timestamp of the request being applied (unix ns)

	// applied is the seq of the last request handed to Pebble, whose
	// reads show its records; read without mu by prefetch.
	applied atomic.Uint64

	// Scratch state of the request being applied (under mu).
	r        *request
	key, val []byte
	single   [1]Proposed
}

// newWriter recovers the head and the stream id counter from Pebble.
func newWriter(s *Store) (*writer, error) {
	w := &writer{
		s:       s,
		pending: make(map[string]pendingState),
		nextPos: 1,
		nextID:  1,
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLog}, UpperBound: []byte{prefixLog + 1}})
	if err != nil {
		return nil, fmt.Errorf("recover head: %w", err)
	}
	if it.Last() {
		pos, err := decodeLogKey(it.Key())
		if err != nil {
			_ = it.Close()
			return nil, fmt.Errorf("recover head: %w", err)
		}
		w.nextPos = pos + 1
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("recover head: %w", err)
	}
	v, closer, err := s.db.Get(counterKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("recover stream id counter: %w", err)
	default:
		id, derr := decodeUint64Value(v)
		_ = closer.Close()
		if derr != nil {
			return nil, fmt.Errorf("recover stream id counter: %w", derr)
		}
		w.nextID = id
	}
	w.handedID = w.nextID
	return w, nil
}

// close refuses new requests (ErrClosed) and waits for the running ones to
// be answered.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.active.Wait()
}

// do applies r and waits until its outcome is durable. r.res and r.err
// hold the outcome.
func (w *writer) do(r *request) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		r.err = ErrClosed
		return
	}
	w.active.Add(1)
	defer w.active.Done()
	if w.failed != nil {
		w.mu.Unlock()
		r.err = w.failed
		return
	}
	if r.batch == nil {
		r.batch = w.s.db.NewBatch()
	}
	w.r = r
	w.created = w.s.now().UnixNano()
	pos, id := w.nextPos, w.nextID
	r.err = w.apply(r)
	w.r = nil
	if r.err != nil {
		// A refused request writes nothing. Only a failing batch write can
		// fail after records were added (every lookup comes first); the
		// batch is the request's own: drop its contents and take back the
		// positions and ids it used.
		r.batch.Reset()
		clear(r.states)
		r.states = r.states[:0]
		w.nextPos, w.nextID = pos, id
	}
	if r.batch.Empty() {
		// Nothing to write, but the outcome may rest on states that are not
		// durable yet (an idempotent retry of a pending append, a wrong
		// expected version against one): answer once everything applied
		// before is durable, as if the request had been committed with it.
		w.await(r)
		return
	}
	if err := w.writeStates(r); err != nil {
		w.fail(r, err)
		return
	}
	w.seq++
	r.seq = w.seq
	r.head = w.nextPos - 1
	// Pebble writes the batch to the WAL buffer and applies it to the
	// memtable before returning, in the order of these calls (we hold mu);
	// the sync is waited for below, without mu. The records are visible to
	// Pebble reads before they are durable, which is why every read of the
	// store is bounded by head (see read.go).
	if err := w.s.db.ApplyNoSyncWait(r.batch, pebble.Sync); err != nil {
		w.fail(r, err)
		return
	}
	w.applied.Store(r.seq)
	for i := range r.states {
		ns := &r.states[i]
		w.pending[ns.name] = pendingState{st: ns.st, seq: r.seq}
	}
	w.queue = append(w.queue, r)
	w.mu.Unlock()

	err := r.batch.SyncWait()
	// The requests of one sync wake together, and the first to take mu
	// publishes all of those before it: the others usually need not take
	// mu at all.
	if r.published.Load() {
		return
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if r.published.Load() {
		return // a later request's sync published it
	}
	if err != nil {
		// It stays queued, never to be published: nothing applied after it
		// can become durable either.
		r.err = fmt.Errorf("commit: %w", err)
		r.published.Store(true)
		if w.failed == nil {
			w.failed = r.err
			w.s.log.Error("event store commit failed; refusing further writes", zap.Error(err))
		}
		// Requests waiting without a batch behind this one can never be
		// published: answer them now.
		for _, q := range w.queue {
			if q.waiter && q.seq >= r.seq && !q.published.Load() {
				q.err = w.failed
				q.published.Store(true)
				q.done <- struct{}{}
			}
		}
		return
	}
	w.publishThrough(r)
}

// await answers r, which wrote nothing, once every request applied before
// it is durable. Called with mu held; returns with mu released.
func (w *writer) await(r *request) {
	if len(w.queue) == 0 {
		w.mu.Unlock()
		return
	}
	r.seq = w.seq // durable once the last applied request is
	r.waiter = true
	w.queue = append(w.queue, r)
	w.mu.Unlock()
	<-r.done
}

// fail handles a request whose batch Pebble refused: the WAL may hold part
// of it, so nothing more is written. Called with mu held; releases it.
func (w *writer) fail(r *request, err error) {
	w.failed = fmt.Errorf("write abandoned: %w", err)
	w.s.log.Error("event store write failed; refusing further writes", zap.Error(err))
	r.err = w.failed
	w.mu.Unlock()
	// Never reuse a batch Pebble refused (it may even still wait for a
	// sync that will not come): let it go.
	r.batch = nil
}

// publishThrough publishes every queued request up to and including r,
// which is durable (so all before it are), and the waiting requests right
// behind them. Called with mu held.
func (w *writer) publishThrough(r *request) {
	n := 0
	for n < len(w.queue) {
		q := w.queue[n]
		n++
		w.publish(q)
		if q == r {
			break
		}
	}
	for n < len(w.queue) && w.queue[n].waiter {
		w.publish(w.queue[n])
		n++
	}
	rest := copy(w.queue, w.queue[n:])
	clear(w.queue[rest:])
	w.queue = w.queue[:rest]
	w.s.notifyChanged()
}

// publish makes one durable request visible to readers, or answers it if
// it is a waiter.
func (w *writer) publish(q *request) {
	if q.published.Load() {
		return
	}
	if q.waiter {
		q.published.Store(true)
		q.done <- struct{}{}
		return
	}
	for i := range q.states {
		ns := &q.states[i]
		w.s.states.put(ns.name, &ns.st, q.seq)
		if p, ok := w.pending[ns.name]; ok && p.seq == q.seq {
			delete(w.pending, ns.name)
		}
	}
	w.s.head.Store(q.head)
	// Last: its owner may return, and reuse q, as soon as it sees this.
	q.published.Store(true)
}

// writeStates adds the stream states the request changed (once per
// stream, however many times it changed one) and the id counter to its
// batch.
func (w *writer) writeStates(r *request) error {
	for i := range r.states {
		ns := &r.states[i]
		w.key = appendNameKey(w.key[:0], ns.name)
		w.val = appendState(w.val[:0], &ns.st)
		if err := r.batch.Set(w.key, w.val, nil); err != nil {
			return fmt.Errorf("stream state %q: %w", ns.name, err)
		}
	}
	if w.nextID != w.handedID {
		w.val = binary.BigEndian.AppendUint64(w.val[:0], w.nextID)
		if err := r.batch.Set(counterKey, w.val, nil); err != nil {
			return fmt.Errorf("stream id counter: %w", err)
		}
		w.handedID = w.nextID
	}
	return nil
}

// lookup returns the current state of name as the writer sees it:
// requests not yet durable included. Called with mu held.
func (w *writer) lookup(name string) (streamState, error) {
	for i := range w.r.states {
		if w.r.states[i].name == name {
			return w.r.states[i].st, nil
		}
	}
	if p, ok := w.pending[name]; ok {
		return p.st, nil
	}
	if st, ok := w.s.states.get(name); ok {
		return st, nil
	}
	// Not changed by a request that is not durable yet, so Pebble holds
	// its committed state, and nobody else caches this name meanwhile
	// (publishing takes mu too): safe to cache.
	var st streamState
	if r := w.r; r.prefetched && name == r.stream && !w.s.states.evictedAfter(r.preSeq) {
		st = r.pre
	} else {
		var err error
		if st, err = w.s.loadState(name); err != nil {
			return streamState{}, err
		}
	}
	w.s.states.put(name, &st, 0)
	return st, nil
}

// prefetch reads the state of r's stream from Pebble before r takes mu,
// when it is not cached: the Pebble lookup of a stream first written (each
// device of an import) then runs beside the writer, not inside it.
//
// lookup uses the prefetched state only when the stream is neither pending
// nor cached then, and no cache entry committed after the read has been
// evicted since. It is then current: a request that changed the stream
// after the read (seq above preSeq) would still be pending, or would have
// been cached when published and be cached still, or have raised the
// cache's evicted seq above preSeq. Otherwise lookup reads Pebble again.
func (w *writer) prefetch(r *request) {
	if w.s.states.contains(r.stream) || !w.s.enterRead() {
		return // cached, or closed: do answers ErrClosed
	}
	defer w.s.readers.Done()
	seq := w.applied.Load()
	st, err := w.s.loadState(r.stream)
	if err != nil {
		return // lookup reads again, and reports the error
	}
	r.pre, r.preSeq, r.prefetched = st, seq, true
}

// save records st as the new state of name in the request being applied.
func (w *writer) save(name string, st *streamState) {
	for i := range w.r.states {
		if w.r.states[i].name == name {
			w.r.states[i].st = *st
			return
		}
	}
	w.r.states = append(w.r.states, namedState{name: name, st: *st})
}

// apply validates r against the group's view of the streams and, when it
// succeeds, adds its records to the batch and sets r.res.
func (w *writer) apply(r *request) error {
	switch r.kind {
	case opAppend:
		return w.applyAppend(r)
	case opDelete:
		return w.applyDelete(r)
	case opTombstone:
		return w.applyTombstone(r)
	default:
		return fmt.Errorf("unknown operation %d: %w", r.kind, ErrInvalidArgument)
	}
}

func (w *writer) applyAppend(r *request) error {
	name, events := r.stream, r.events
	x, isMeta := metastreamOf(name)
	var xs streamState
	if isMeta {
		var err error
		if xs, err = w.lookup(x); err != nil {
			return err
		}
		if xs.tombstoned {
			return &StreamDeletedError{Stream: name}
		}
	}
	st, err := w.lookup(name)
	if err != nil {
		return err
	}
	n := uint64(len(events))

	if err := checkExpected(name, &st, r.exp); err != nil {
		var wev *WrongExpectedVersionError
		if n == 0 || !errors.As(err, &wev) {
			return err
		}
		// An exact expectation that no longer holds may be a retry of an
		// append that already succeeded.
		var first uint64
		switch r.exp.Kind {
		case ExpectNoStream:
			first = 0
		case ExpectRevision:
			if r.exp.Revision >= st.next {
				return err
			}
			first = r.exp.Revision + 1
		default:
			return err
		}
		res, matched, merr := w.matchStored(name, &st, first, events)
		if merr != nil {
			return merr
		}
		if matched {
			r.res = res
			return nil
		}
		return err
	}

	if n == 0 {
		if st.next == 0 {
			r.res = AppendResult{NoStream: true}
		} else {
			r.res = AppendResult{LastRevision: st.next - 1, Position: st.lastPos}
		}
		return nil
	}

	// Any / StreamExists retries: the stream's last n events carry these
	// IDs. The lastID comparison keeps this free on the hot path.
	if (r.exp.Kind == ExpectAny || r.exp.Kind == ExpectStreamExists) &&
		!st.softDeleted() && st.next >= n && st.lastID == events[n-1].ID {
		res, matched, merr := w.matchStored(name, &st, st.next-n, events)
		if merr != nil {
			return merr
		}
		if matched {
			r.res = res
			return nil
		}
	}

	recreate := !isMeta && st.softDeleted()
	oldNext := st.next
	var ms streamState
	if recreate {
		// Every lookup (which may read Pebble and fail) happens before the
		// first record enters the batch: a failing request writes nothing.
		if ms, err = w.lookup(metastreamName(name)); err != nil {
			return err
		}
	}
	var lastData []byte
	if isMeta && xs.softDeleted() {
		// Setting metadata on a soft-deleted stream undeletes it: the old
		// events stay hidden behind $tb, later ones are visible.
		lastData = withTruncateBefore(events[n-1].Data, xs.next)
	}
	if err := w.writeEvents(name, &st, events, lastData); err != nil {
		return err
	}
	r.res = AppendResult{LastRevision: st.next - 1, Position: st.lastPos}
	if isMeta {
		if lastData == nil {
			lastData = events[n-1].Data
		}
		xs.setMeta(lastData, st.lastPos)
		w.save(x, &xs)
	}
	if recreate {
		// Recreating a soft-deleted stream: continue numbering and hide the
		// old events, in the same batch as the new ones.
		if err := w.writeMeta(name, &st, &ms, withTruncateBefore(st.meta, oldNext)); err != nil {
			return err
		}
	}
	w.save(name, &st)
	return nil
}

func (w *writer) applyDelete(r *request) error {
	st, err := w.lookup(r.stream)
	if err != nil {
		return err
	}
	if err := checkExpected(r.stream, &st, r.exp); err != nil {
		return err
	}
	ms, err := w.lookup(metastreamName(r.stream))
	if err != nil {
		return err
	}
	if err := w.writeMeta(r.stream, &st, &ms, withTruncateBefore(st.meta, TombstoneRevision)); err != nil {
		return err
	}
	r.res = AppendResult{Position: st.modPos}
	w.save(r.stream, &st)
	return nil
}

func (w *writer) applyTombstone(r *request) error {
	st, err := w.lookup(r.stream)
	if err != nil {
		return err
	}
	if err := checkExpected(r.stream, &st, r.exp); err != nil {
		return err
	}
	if st.id == 0 {
		st.id = w.newStreamID()
	}
	w.single[0] = Proposed{ID: uuid.New(), Type: TypeStreamDeleted, JSON: true, Data: []byte("{}")}
	pos, err := w.writeRecord(r.stream, st.id, TombstoneRevision, &w.single[0], w.single[0].Data)
	w.single[0] = Proposed{}
	if err != nil {
		return err
	}
	st.tombstoned = true
	st.modPos = pos
	r.res = AppendResult{Position: pos}
	w.save(r.stream, &st)
	return nil
}

// checkExpected decides whether an operation expecting exp may write to a
// stream in state st (the tombstone of a metastream's owner is checked by
// the caller).
func checkExpected(name string, st *streamState, exp Expected) error {
	if st.tombstoned {
		return &StreamDeletedError{Stream: name}
	}
	ok := false
	switch exp.Kind {
	case ExpectAny:
		ok = true
	case ExpectNoStream:
		ok = st.next == 0 || st.softDeleted()
	case ExpectStreamExists:
		if st.softDeleted() {
			return &StreamDeletedError{Stream: name}
		}
		ok = st.next > 0 || st.hasMeta
	case ExpectRevision:
		ok = st.next > 0 && exp.Revision == st.next-1
	}
	if ok {
		return nil
	}
	wev := &WrongExpectedVersionError{Stream: name, Expected: exp, CurrentNoStream: st.next == 0}
	if st.next > 0 {
		wev.CurrentRevision = st.next - 1
	}
	return wev
}

// matchStored reports whether the events at revisions first..first+n-1 of
// the stream carry the IDs of events, in order, and if so the result of the
// original append. It reads Pebble, which already shows every applied
// request, durable or not; the caller answers only once they are durable.
func (w *writer) matchStored(name string, st *streamState, first uint64, events []Proposed) (AppendResult, bool, error) {
	n := uint64(len(events))
	if st.id == 0 || first+n > st.next || first+n < first {
		return AppendResult{}, false, nil
	}
	if first+n == st.next && st.lastID != events[n-1].ID {
		return AppendResult{}, false, nil
	}
	matched := true
	var i, lastPos uint64
	err := w.s.scanStream(nil, st.id, first, first+n-1, false, func(pos uint64, raw *rawRecord) bool {
		if raw.id != events[i].ID {
			matched = false
			return false
		}
		i++
		lastPos = pos
		return true
	})
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("idempotency check of %q: %w", name, err)
	}
	if !matched || i != n {
		return AppendResult{}, false, nil
	}
	return AppendResult{LastRevision: first + n - 1, Position: lastPos}, true, nil
}

func (w *writer) newStreamID() uint64 {
	id := w.nextID
	w.nextID++
	return id
}

// writeEvents adds events to the batch at the stream's next revisions and
// the next positions, updating st. lastData, when not nil, replaces the
// data of the last event (a rewritten $tb).
func (w *writer) writeEvents(name string, st *streamState, events []Proposed, lastData []byte) error {
	if st.id == 0 {
		st.id = w.newStreamID()
	}
	for i := range events {
		e := &events[i]
		data := e.Data
		if i == len(events)-1 && lastData != nil {
			data = lastData
		}
		pos, err := w.writeRecord(name, st.id, st.next, e, data)
		if err != nil {
			return err
		}
		st.next++
		st.lastPos, st.modPos, st.lastID = pos, pos, e.ID
	}
	return nil
}

// writeRecord adds one record and its index entry to the batch and returns
// its position.
func (w *writer) writeRecord(name string, id, rev uint64, e *Proposed, data []byte) (uint64, error) {
	pos := w.nextPos
	w.key = appendLogKey(w.key[:0], pos)
	w.val = appendRecord(w.val[:0], recordHeader{stream: name, rev: rev, created: w.created}, e, data)
	if err := w.r.batch.Set(w.key, w.val, nil); err != nil {
		return 0, fmt.Errorf("write record %d of %q: %w", pos, name, err)
	}
	w.key = appendIndexKey(w.key[:0], id, rev)
	w.val = binary.BigEndian.AppendUint64(w.val[:0], pos)
	if err := w.r.batch.Set(w.key, w.val, nil); err != nil {
		return 0, fmt.Errorf("write index of %q@%d: %w", name, rev, err)
	}
	w.nextPos++
	return pos, nil
}

// writeMeta appends a "$metadata" event with data to the metastream of
// name, whose current state the caller looked up into ms, and makes it
// name's effective metadata (in xs, saved by the caller).
func (w *writer) writeMeta(name string, xs, ms *streamState, data []byte) error {
	meta := metastreamName(name)
	w.single[0] = Proposed{ID: uuid.New(), Type: TypeMetadata, JSON: true, Data: data}
	err := w.writeEvents(meta, ms, w.single[:], nil)
	w.single[0] = Proposed{}
	if err != nil {
		return err
	}
	w.save(meta, ms)
	xs.setMeta(data, ms.lastPos)
	return nil
}

// setMeta makes data the effective metadata, written at pos.
func (st *streamState) setMeta(data []byte, pos uint64) {
	st.hasMeta = true
	st.meta = bytes.Clone(data) // data may be the caller's buffer
	if st.meta == nil {
		st.meta = []byte{}
	}
	st.limits = parseLimits(data)
	st.modPos = pos
}
