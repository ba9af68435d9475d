package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

// Group limits: a group is committed when the queue is empty or when one of
// these is reached, so that one huge burst does not delay every
// acknowledgement behind a giant batch.
const (
	maxGroupRequests = 512
	maxGroupBytes    = 16 << 20
	// maxLinger caps how long a ready group waits for more requests.
	maxLinger = time.Millisecond
)

type opKind uint8

const (
	opAppend opKind = iota
	opDelete
	opTombstone
)

// request is one write waiting for the writer. Requests are pooled: the
// writer answers through done (capacity 1) and the submitter recycles it.
type request struct {
	kind   opKind
	stream string
	exp    Expected
	events []Proposed
	res    AppendResult
	err    error
	done   chan struct{}
}

func (r *request) reset() *request {
	r.stream, r.events, r.res, r.err = "", nil, AppendResult{}, nil
	return r
}

// errNeedFlush is returned by apply when a request must read committed data
// of a stream that an uncommitted group has changed (an idempotency check):
// the writer commits everything first, then applies it again.
var errNeedFlush = errors.New("groups must be committed first")

// group is one batch of requests committed with a single synced write.
type group struct {
	batch  *pebble.Batch
	states map[string]*streamState // stream states the group changed
	reqs   []*request              // answered once the group is durable
	head   uint64                  // last position written by the group
	err    error                   // set by the committer
	took   time.Duration           // how long the synced commit took
}

// writer owns all mutation. The writer goroutine (run) validates requests
// and builds the current group while the committer goroutine syncs the
// previous one: the disk is never idle while requests wait, and every
// request that arrives during a sync joins the next group. Groups are
// committed strictly in order, one at a time, so the WAL never holds a
// group without the ones it was validated against.
type writer struct {
	s        *Store
	cur      *group // being built
	inflight *group // handed to the committer, nil when it is idle
	spare    *group // recycled
	commitCh chan *group
	doneCh   chan *group

	nextPos  uint64 // next position to assign
	nextID   uint64 // next stream index id to assign
	handedID uint64 // nextID as of the last handed-off group
	created  int64  // commit timestamp of the current group (unix ns)
	failed   error  // sticky: after a failed commit nothing more is written

	// Linger: when the committer frees up, the requests it just answered
	// usually come straight back (closed-loop clients). Waiting briefly for
	// them turns alternating half-size groups into full ones, doubling the
	// appends per fsync. The wait ends when as many requests are queued as
	// were in flight, or after half the last commit's duration (so an
	// in-memory store, or a lone client, barely waits at all).
	target      int
	lingerUntil time.Time

	key, val []byte // encode buffers, reused (writer goroutine only)
	single   [1]Proposed
}

func newGroup(db *pebble.DB) *group {
	return &group{batch: db.NewBatch(), states: make(map[string]*streamState)}
}

// newWriter recovers the head and the stream id counter from Pebble.
func newWriter(s *Store) (*writer, error) {
	w := &writer{
		s:        s,
		cur:      newGroup(s.db),
		spare:    newGroup(s.db),
		commitCh: make(chan *group),
		doneCh:   make(chan *group),
		nextPos:  1,
		nextID:   1,
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

// run is the writer loop. It ends when the request channel is closed and
// every queued request is answered.
func (w *writer) run() {
	go w.commitLoop()
	defer close(w.s.writerDone)
	defer w.closeBatches()
	defer close(w.commitCh)
	reqs := w.s.reqs
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	var lingerC <-chan time.Time
	for reqs != nil || len(w.cur.reqs) > 0 || w.inflight != nil {
		full := len(w.cur.reqs) >= maxGroupRequests || w.cur.batch.Len() >= maxGroupBytes
		if w.inflight == nil && len(w.cur.reqs) > 0 {
			now := time.Now()
			if reqs == nil || full || len(w.cur.reqs) >= w.target || !now.Before(w.lingerUntil) {
				w.handOff()
				linger.Stop()
				lingerC = nil
			} else if lingerC == nil {
				linger.Reset(w.lingerUntil.Sub(now))
				lingerC = linger.C
			}
		}
		in := reqs
		if full {
			in = nil // group full: wait for the committer first
		}
		select {
		case r, ok := <-in:
			if !ok {
				reqs = nil
				continue
			}
			w.handle(r)
		case g := <-w.doneCh:
			w.committed(g)
		case <-lingerC:
			lingerC = nil
		}
	}
}

// closeBatches releases the batches of the idle groups once the writer
// has stopped (the committer is idle then, so nothing else uses them).
func (w *writer) closeBatches() {
	for _, g := range []*group{w.cur, w.spare} {
		if g != nil {
			_ = g.batch.Close() // an empty batch: nothing to lose
		}
	}
}

// handle applies one request to the current group.
func (w *writer) handle(r *request) {
	if w.failed != nil {
		r.err = w.failed
		r.done <- struct{}{}
		return
	}
	if len(w.cur.reqs) == 0 {
		w.created = w.s.now().UnixNano()
	}
	before := w.nextPos
	err := w.apply(r)
	if err != nil && w.nextPos != before {
		w.abandon(r, err)
		return
	}
	if errors.Is(err, errNeedFlush) {
		w.barrier()
		if w.failed != nil {
			r.err = w.failed
			r.done <- struct{}{}
			return
		}
		w.created = w.s.now().UnixNano()
		before = w.nextPos
		err = w.apply(r) // nothing is uncommitted now, so it cannot ask again
		if err != nil && w.nextPos != before {
			w.abandon(r, err)
			return
		}
	}
	r.err = err
	w.cur.reqs = append(w.cur.reqs, r)
}

// abandon handles a request that failed after some of its records entered
// the current group's batch (only a failing batch write can do that: every
// lookup comes first). A batch cannot drop records, so the whole group is
// discarded, its requests fail, and the writer refuses further writes, as
// after a failed commit: nothing half-applied ever reaches the disk.
func (w *writer) abandon(r *request, err error) {
	w.failed = fmt.Errorf("write abandoned: %w", err)
	w.s.log.Error("event store write failed half-way; refusing further writes", zap.Error(err))
	for _, q := range append(w.cur.reqs, r) {
		q.err = w.failed
		q.done <- struct{}{}
	}
	w.cur.reset(w.s.db, true)
}

// barrier commits every group, current included, and waits for them.
func (w *writer) barrier() {
	if w.inflight != nil {
		w.committed(<-w.doneCh)
	}
	if len(w.cur.reqs) > 0 {
		w.handOff()
		w.committed(<-w.doneCh)
	}
}

// handOff completes the current group (its stream states, the id counter)
// and gives it to the idle committer.
func (w *writer) handOff() {
	g := w.cur
	g.head = w.nextPos - 1
	if !g.batch.Empty() {
		err := w.writeStates(g)
		if err != nil {
			g.err = err
		}
	}
	w.inflight, w.cur, w.spare = g, w.spare, nil
	w.commitCh <- g
}

// writeStates adds the group's stream states (once per stream, however
// many requests touched it) and the id counter to its batch.
func (w *writer) writeStates(g *group) error {
	for name, st := range g.states {
		w.key = appendNameKey(w.key[:0], name)
		w.val = appendState(w.val[:0], st)
		if err := g.batch.Set(w.key, w.val, nil); err != nil {
			return fmt.Errorf("stream state %q: %w", name, err)
		}
	}
	if w.nextID != w.handedID {
		w.val = binary.BigEndian.AppendUint64(w.val[:0], w.nextID)
		if err := g.batch.Set(counterKey, w.val, nil); err != nil {
			return fmt.Errorf("stream id counter: %w", err)
		}
		w.handedID = w.nextID
	}
	return nil
}

// committed takes back a group from the committer.
func (w *writer) committed(g *group) {
	if g.err != nil && w.failed == nil {
		w.failed = fmt.Errorf("commit: %w", g.err)
		w.s.log.Error("event store commit failed; refusing further writes", zap.Error(g.err))
		// The current group was validated against the failed one.
		for _, r := range w.cur.reqs {
			r.err = w.failed
			r.done <- struct{}{}
		}
		w.cur.reset(w.s.db, true)
	}
	w.target = len(g.reqs) + len(w.cur.reqs)
	w.lingerUntil = time.Now().Add(min(g.took/2, maxLinger))
	g.reset(w.s.db, g.err != nil)
	w.inflight, w.spare = nil, g
}

// reset empties a group for reuse; a batch whose commit failed cannot be
// reused.
func (g *group) reset(db *pebble.DB, newBatch bool) {
	if newBatch {
		_ = g.batch.Close() // its contents are abandoned with the failed commit
		g.batch = db.NewBatch()
	} else {
		g.batch.Reset()
	}
	clear(g.states)
	clear(g.reqs)
	g.reqs = g.reqs[:0]
	g.head, g.err, g.took = 0, nil, 0
}

// commitLoop is the committer goroutine: it syncs each group, publishes
// its states, head and change notification, answers its requests and gives
// the group back.
func (w *writer) commitLoop() {
	for g := range w.commitCh {
		if g.err == nil && !g.batch.Empty() {
			start := time.Now()
			g.err = g.batch.Commit(pebble.Sync)
			g.took = time.Since(start)
			if g.err == nil {
				for name, st := range g.states {
					w.s.states.put(name, st)
				}
				w.s.head.Store(g.head)
				w.s.notifyChanged()
			}
		}
		for _, r := range g.reqs {
			if g.err != nil && r.err == nil {
				r.err = fmt.Errorf("commit: %w", g.err)
			}
			r.done <- struct{}{}
		}
		w.doneCh <- g
	}
}

// lookup returns the current state of name as the writer sees it
// (uncommitted groups included) and whether an uncommitted group changed it.
func (w *writer) lookup(name string) (streamState, bool, error) {
	if st, ok := w.cur.states[name]; ok {
		return *st, true, nil
	}
	if w.inflight != nil {
		// Read-only while in flight: the committer only reads it too.
		if st, ok := w.inflight.states[name]; ok {
			return *st, true, nil
		}
	}
	if st, ok := w.s.states.get(name); ok {
		return st, false, nil
	}
	// Not changed by an uncommitted group, so Pebble holds its committed
	// state, and nobody else caches this name meanwhile: safe to cache.
	st, err := w.s.loadState(name)
	if err != nil {
		return streamState{}, false, err
	}
	w.s.states.put(name, &st)
	return st, false, nil
}

// save records st as the current group's new state of name.
func (w *writer) save(name string, st *streamState) {
	if p, ok := w.cur.states[name]; ok {
		*p = *st
		return
	}
	p := new(streamState)
	*p = *st
	w.cur.states[name] = p
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
		if xs, _, err = w.lookup(x); err != nil {
			return err
		}
		if xs.tombstoned {
			return &StreamDeletedError{Stream: name}
		}
	}
	st, pending, err := w.lookup(name)
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
		res, matched, merr := w.matchStored(name, &st, pending, first, events)
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
		res, matched, merr := w.matchStored(name, &st, pending, st.next-n, events)
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
		if ms, _, err = w.lookup(metastreamName(name)); err != nil {
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
	st, _, err := w.lookup(r.stream)
	if err != nil {
		return err
	}
	if err := checkExpected(r.stream, &st, r.exp); err != nil {
		return err
	}
	ms, _, err := w.lookup(metastreamName(r.stream))
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
	st, _, err := w.lookup(r.stream)
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
// original append. It reads committed data, so a stream the group has
// changed needs a barrier (commit of every open group) first.
func (w *writer) matchStored(name string, st *streamState, pending bool, first uint64, events []Proposed) (AppendResult, bool, error) {
	n := uint64(len(events))
	if st.id == 0 || first+n > st.next || first+n < first {
		return AppendResult{}, false, nil
	}
	if first+n == st.next && st.lastID != events[n-1].ID {
		return AppendResult{}, false, nil
	}
	if pending {
		return AppendResult{}, false, errNeedFlush
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
	if err := w.cur.batch.Set(w.key, w.val, nil); err != nil {
		return 0, fmt.Errorf("write record %d of %q: %w", pos, name, err)
	}
	w.key = appendIndexKey(w.key[:0], id, rev)
	w.val = binary.BigEndian.AppendUint64(w.val[:0], pos)
	if err := w.cur.batch.Set(w.key, w.val, nil); err != nil {
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
