package commands

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ErrClosed is returned by the job commands of a Handler that was closed.
var ErrClosed = errors.New("command handler closed")

// DefaultJobIdle is how long a job's worker keeps its state without
// commands before it stops (a finished job's: at most a second, enough for
// the late results of the batch in flight).
const DefaultJobIdle = 30 * time.Second

// jobRound caps the results one round of a job's worker decides together:
// enough for several full appends, few enough that callers queued behind
// them are answered soon.
const jobRound = 20_000

// WithJobIdle sets how long a job's worker waits for commands before it
// stops and drops the job's state (reloaded from the stream on the next
// command). Default DefaultJobIdle.
func WithJobIdle(d time.Duration) Option {
	return func(h *Handler) {
		if d > 0 {
			h.jobs.idle = d
		}
	}
}

// jobs is the job Decider as the command path sees it. Its state is
// mutable (job.Evolve changes it in place), so it never enters the shared
// cache: each job's state belongs to that job's worker.
func jobs() aggregate[*job.State, job.Command, job.Event] {
	return aggregate[*job.State, job.Command, job.Event]{
		kind:   "job",
		decide: job.Decide,
		evolve: job.Evolve,
		incomplete: func(s *job.State) bool {
			return s.Exists() && s.Targeted() < s.DeviceCount
		},
	}
}

// jobWorkers runs one worker per active job. Every command on a job goes
// through its worker, one at a time, so the job's mutable state has one
// owner; results queued while the worker is busy are decided together and
// appended in as few appends as the store's limit allows, so a
// million-device job does not fight itself for its stream.
type jobWorkers struct {
	idle  time.Duration
	round int

	ctx    context.Context // ends with Close: the workers' appends use it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex // guards workers, closed and every worker's queue
	workers map[string]*jobWorker
	closed  bool
}

func newJobWorkers() *jobWorkers {
	ctx, cancel := context.WithCancel(context.Background())
	return &jobWorkers{idle: DefaultJobIdle, round: jobRound, ctx: ctx, cancel: cancel, workers: make(map[string]*jobWorker)}
}

// Close stops the per-job workers: the commands queued for them fail with
// ErrClosed, and so do job commands after Close. It waits for the workers
// to end (an append in flight ends first, or fails as Close cancels it).
// Device commands are not affected. Close is idempotent.
func (h *Handler) Close() error {
	ws := h.jobs
	ws.mu.Lock()
	ws.closed = true
	for _, w := range ws.workers {
		w.signal()
	}
	ws.mu.Unlock()
	ws.cancel()
	ws.wg.Wait()
	return nil
}

// jobRequest is one command queued for a job's worker: either results to
// record (results), or any other command (do).
type jobRequest struct {
	ctx     context.Context // the caller's: a request it gave up on is skipped
	meta    Meta
	results []job.DeviceResult
	single  bool                // results is one[:], the result of RecordResult
	one     [1]job.DeviceResult // so that a single result costs no allocation of its own
	do      func(w *jobWorker) (Result, error)
	done    chan jobAnswer // buffered: the worker never waits for the caller

	// Kept by the worker while it records the request's results.
	answered bool
	recorded int                 // events recorded for it so far
	pos      eventstore.Position // of the append that held its latest event
	last     int                 // index in the round's events of its last event; -1: none
}

type jobAnswer struct {
	res Result
	err error
}

func (r *jobRequest) answer(res Result, err error) {
	if !r.answered {
		r.answered = true
		r.done <- jobAnswer{res: res, err: err}
	}
}

// onJob queues r for job id's worker, starting the worker if the job has
// none, and waits for the answer or ctx's end. A caller that gives up does
// not take its command back: it may still be recorded, and a retry with the
// same command ID is recognised.
func (h *Handler) onJob(ctx context.Context, id string, r *jobRequest) (Result, error) {
	r.ctx = ctx
	r.done = make(chan jobAnswer, 1)
	ws := h.jobs
	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		return Result{}, fmt.Errorf("job %s: %w", id, ErrClosed)
	}
	w := ws.workers[id]
	if w == nil {
		w = &jobWorker{h: h, id: id, stream: eventstore.JobStream(id), wake: make(chan struct{}, 1)}
		ws.workers[id] = w
		ws.wg.Add(1)
		go w.loop()
	}
	w.queue = append(w.queue, r)
	ws.mu.Unlock()
	w.signal()
	select {
	case a := <-r.done:
		return a.res, a.err
	case <-ctx.Done():
		return Result{}, fmt.Errorf("job %s: gave up waiting for the command (it may still be recorded; retry with the same command ID): %w", id, ctx.Err())
	}
}

// jobWorker is the one goroutine that runs a job's commands and owns its
// state.
type jobWorker struct {
	h      *Handler
	id     string
	stream string
	wake   chan struct{} // capacity 1: "the queue may have grown"
	queue  []*jobRequest // guarded by h.jobs.mu

	// snap is the job's state at a revision of its stream, owned by the
	// worker's goroutine; nil when it must be read from the stream. While
	// a round is in flight, snap already includes that round's events:
	// its state, its revision (pos is the last landed append's).
	snap *snapshot
	// flight is the round of results being appended, if any (see
	// recordResults); settle waits for it.
	flight *flight
}

func (w *jobWorker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// state returns the job's state (nil if not loaded or never created).
func (w *jobWorker) state() *job.State {
	if w.snap == nil {
		return nil
	}
	return w.snap.state.(*job.State)
}

// loop runs queued commands until the job has been idle long enough (or
// is finished, or never existed, and idle a moment), or the Handler closes.
func (w *jobWorker) loop() {
	ws := w.h.jobs
	defer ws.wg.Done()
	timer := time.NewTimer(ws.idle)
	defer timer.Stop()
	expired := false
	for {
		ws.mu.Lock()
		batch := w.take(ws.round)
		if len(batch) == 0 && w.flight != nil {
			// Nothing to prepare meanwhile: finish the round in flight
			// before idling (or stopping).
			ws.mu.Unlock()
			w.settle()
			continue
		}
		if len(batch) == 0 && (expired || ws.closed) {
			delete(ws.workers, w.id)
			ws.mu.Unlock()
			return
		}
		ws.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-w.wake:
			case <-timer.C:
				expired = true
			}
			continue
		}
		if ws.ctx.Err() != nil {
			for _, r := range batch {
				r.answer(Result{}, fmt.Errorf("job %s: %w", w.id, ErrClosed))
			}
			continue
		}
		w.process(batch)
		idle := ws.idle
		if s := w.state(); !s.Exists() || s.Status.Finished() {
			idle = min(idle, time.Second)
		}
		timer.Reset(idle)
		expired = false
	}
}

// take removes the requests of the next round from the queue: all of them,
// or as many as bring it to limit results (at least one request).
func (w *jobWorker) take(limit int) []*jobRequest {
	n, results := 0, 0
	for n < len(w.queue) && (n == 0 || results < limit) {
		results += len(w.queue[n].results)
		n++
	}
	batch := w.queue[:n:n]
	if n == len(w.queue) {
		w.queue = nil
	} else {
		w.queue = w.queue[n:]
	}
	return batch
}

// process runs a round in queue order: each command on its own, each run
// of consecutive result requests as one decision.
func (w *jobWorker) process(batch []*jobRequest) {
	for i := 0; i < len(batch); {
		if r := batch[i]; r.do != nil {
			// Other commands decide and append on the state as stored.
			w.settle()
			if err := r.ctx.Err(); err != nil {
				r.answer(Result{}, err)
			} else {
				r.answer(r.do(w))
			}
			i++
			continue
		}
		j := i + 1
		for j < len(batch) && batch[j].do == nil {
			j++
		}
		w.recordResults(batch[i:j])
		i = j
	}
}

// command runs one job command through the one command path, on the
// worker's state.
func (w *jobWorker) command(meta Meta, decide decideFunc[*job.State, job.Event]) (Result, error) {
	res, snap, err := run(w.h.jobs.ctx, w.h, jobs(), w.stream, w.snap, meta, decide)
	w.snap = snap
	return res, err
}

// catchUp brings the worker's state up to the stream's end (reading the
// whole stream if it has none). On an error the state is dropped: it may
// have been changed half-way.
func (w *jobWorker) catchUp(ctx context.Context) error {
	base := w.snap
	if base == nil {
		base = &snapshot{state: (*job.State)(nil)}
	}
	snap, err := catchUp(ctx, w.h, jobs(), w.stream, base)
	w.snap = snap
	return err
}

// recordResults records the results of reqs, overlapping their decision
// with the append of the round before (a round is in flight while the
// next is decided): an append costs a round trip and the store's sync, and
// the worker would wait for them doing nothing. Appends to the stream stay
// strictly sequential: a round's first append is sent only once the
// previous round's last one has landed, expecting the revision it ended
// at.
//
// The next round is decided on the state that includes the events in
// flight, as if they had landed. If they did not, that decision is void:
// the state is dropped, and the unanswered requests of both rounds go
// through recordSequential, which reads the stream again and decides on
// what is really there. Refusals, and everything but results, wait for the
// round in flight first.
func (w *jobWorker) recordResults(reqs []*jobRequest) {
	live := make([]*jobRequest, 0, len(reqs))
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.answer(Result{}, err)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	s := w.state()
	if w.snap == nil || !w.acceptsAll(s, live) {
		w.settle()
		w.recordSequential(live)
		return
	}
	rd, err := w.decideRound(s, live)
	if err != nil {
		w.settle()
		w.recordSequential(live) // answers each with its own error
		return
	}
	if !w.settle() {
		// Decided on events that did not land.
		w.recordSequential(live)
		return
	}
	if len(rd.batch) == 0 {
		w.answerUnchanged(live, w.snap.pos)
		return
	}
	parts, err := splitAppend(rd.sizes, rd.glued, w.h.maxAppendBytes)
	if err != nil {
		for _, r := range live {
			r.answer(Result{}, fmt.Errorf("%s: %w", w.stream, err))
		}
		return
	}
	// Launch the round, and take its events as landed.
	f := &flight{done: make(chan struct{}), live: live, rd: rd, parts: parts, from: w.snap.expected(), pos: w.snap.pos}
	for _, ev := range rd.decided {
		s = job.Evolve(s, ev)
	}
	rev := uint64(len(rd.batch)) - 1
	if last, ok := f.from.Value(); ok {
		rev += last + 1
	}
	w.snap = &snapshot{state: s, exists: true, rev: rev, pos: w.snap.pos, marks: w.snap.marks}
	w.flight = f
	go f.run(w.h.jobs.ctx, w.h.store, w.stream)
}

// acceptsAll reports whether the job takes every request's results on s:
// the common case, where no request needs refusal's full decision.
func (w *jobWorker) acceptsAll(s *job.State, live []*jobRequest) bool {
	if !s.HasStarted() { // never created, pending, or stopped while pending
		return false
	}
	for _, r := range live {
		for _, res := range r.results {
			if !s.Takes(res) {
				return false
			}
		}
	}
	return true
}

// answerUnchanged answers the requests of a round that recorded nothing
// for them (duplicates, or all recorded by an earlier try) with pos, the
// stream's latest position, or the position of their own events.
func (w *jobWorker) answerUnchanged(live []*jobRequest, pos eventstore.Position) {
	for _, q := range live {
		if q.last < 0 {
			p := pos
			if q.recorded > 0 {
				p = q.pos
			}
			q.answer(Result{Position: p, Events: q.recorded}, nil)
		}
	}
}

// flight is a round of results being appended by its own goroutine while
// the worker decides the next one.
type flight struct {
	done  chan struct{} // closed when run returns; then the fields below are the worker's again
	live  []*jobRequest
	rd    round
	parts []int
	from  eventstore.Revision // what the round's first append expects
	pos   eventstore.Position // of the latest append that landed
	next  eventstore.Revision // the stream's revision after what landed
	err   error               // the first append that failed; the later ones were not sent
}

// run appends the round's parts in order, each expecting the revision the
// one before ended at, answering each request once its last event has
// landed (and those with no new events once all have).
func (f *flight) run(ctx context.Context, store Store, stream string) {
	defer close(f.done)
	f.next = f.from
	lo := 0
	for _, hi := range f.parts {
		ar, err := store.Append(ctx, stream, f.next, f.rd.batch[lo:hi])
		if err != nil {
			f.err = err
			return
		}
		f.pos, f.next = ar.Position, ar.Next
		for i := lo; i < hi; i++ {
			r := f.live[f.rd.owner[i]]
			r.recorded++
			r.pos = ar.Position
			if r.last == i {
				r.answer(Result{Position: ar.Position, Events: r.recorded}, nil)
			}
		}
		lo = hi
	}
	for _, q := range f.live {
		if q.last < 0 {
			p := f.pos
			if q.recorded > 0 {
				p = q.pos
			}
			q.answer(Result{Position: p, Events: q.recorded}, nil)
		}
	}
}

// settle waits for the round in flight, if any, and reports whether it
// landed whole. If it did not, the worker's state (which took it as
// landed) is dropped, and its unanswered requests are recorded again by
// recordSequential, which reads the stream first.
func (w *jobWorker) settle() bool {
	f := w.flight
	if f == nil {
		return true
	}
	<-f.done
	w.flight = nil
	if f.err == nil {
		w.snap.pos = f.pos
		return true
	}
	w.h.logger.Debug("a round of job results did not land: reading the job again",
		zap.String("stream", w.stream), zap.Error(f.err))
	w.snap = nil
	if rest := unanswered(f.live); len(rest) > 0 {
		w.recordSequential(rest)
	}
	return false
}

// recordSequential records the results of reqs: one decision (RecordResults
// on the worker's state) for all of them, appended in as few appends as the
// store's limit allows. Each request is answered when its last event has
// landed, with that append's position; a request the job refuses (a device
// not in the job, a job not started) fails alone.
//
// A result's events take IDs from its request's command ID and its index
// in the request (2k for the k-th result, 2k+1 for the Completed or Failed
// that follows it), so a retried request gets the IDs of its first try.
func (w *jobWorker) recordSequential(reqs []*jobRequest) {
	ctx := w.h.jobs.ctx
	live := make([]*jobRequest, 0, len(reqs))
	for _, r := range reqs {
		if err := r.ctx.Err(); err != nil {
			r.answer(Result{}, err)
			continue
		}
		live = append(live, r)
	}
	fail := func(rs []*jobRequest, err error) {
		for _, r := range rs {
			r.answer(Result{}, err)
		}
	}
	fresh := false
	if w.snap == nil && len(live) > 0 {
		if err := w.catchUp(ctx); err != nil {
			fail(live, err)
			return
		}
		fresh = true
	}
	for attempt := 1; len(live) > 0; attempt++ {
		s := w.state()

		// Refusals fail their own caller only; a refusal on a state that
		// was not just read is checked against the stream first.
		kept := make([]*jobRequest, 0, len(live))
		var refused []*jobRequest
		var reasons []error
		for _, r := range live {
			if err := w.refusal(s, r); err != nil {
				refused, reasons = append(refused, r), append(reasons, err)
				continue
			}
			kept = append(kept, r)
		}
		if len(refused) > 0 && !fresh {
			if err := w.catchUp(ctx); err != nil {
				fail(live, err)
				return
			}
			fresh = true
			attempt--
			continue
		}
		for i, r := range refused {
			r.answer(Result{}, fmt.Errorf("job %s: %w", w.stream, reasons[i]))
		}
		live = kept
		if len(live) == 0 {
			return
		}

		r, err := w.decideRound(s, live)
		if err != nil {
			fail(live, err)
			return
		}
		for _, q := range live {
			if q.last < 0 { // nothing new: duplicates, or all recorded by an earlier try
				pos := w.snap.pos
				if q.recorded > 0 {
					pos = q.pos
				}
				q.answer(Result{Position: pos, Events: q.recorded}, nil)
			}
		}
		err = w.appendRound(ctx, s, live, r)
		var conflict *eventstore.ConflictError
		if !errors.As(err, &conflict) {
			if err != nil {
				fail(live, err)
			}
			return
		}
		live = unanswered(live)
		if attempt >= w.h.maxAttempts {
			fail(live, fmt.Errorf("%s: %w (%w)", w.stream,
				domain.Conflict("job %s kept changing while its results were recorded (%d attempts); try again", w.id, attempt), err))
			return
		}
		w.h.logger.Debug("concurrency conflict on a job's results: catching up and deciding again",
			zap.String("stream", w.stream), zap.Int("attempt", attempt), zap.Stringer("actual", conflict.Actual))
		if err := w.catchUp(ctx); err != nil {
			fail(live, err)
			return
		}
		fresh = true
	}
}

func unanswered(rs []*jobRequest) []*jobRequest {
	out := rs[:0]
	for _, r := range rs {
		if !r.answered {
			out = append(out, r)
		}
	}
	return out
}

// refusal returns why the job refuses r's results on s (nil if it takes
// them): the domain's own refusal, as deciding r alone would give it.
func (w *jobWorker) refusal(s *job.State, r *jobRequest) error {
	ok := s.HasStarted()
	for _, res := range r.results {
		if !ok {
			break
		}
		ok = s.Takes(res)
	}
	if ok {
		return nil
	}
	var cmd job.Command = job.RecordResults{JobID: w.id, Results: r.results}
	if r.single {
		res := r.results[0]
		if err := res.Check(); err != nil {
			// RecordSuccess has no error message to refuse: the result
			// is refused as it is, naming its own fields.
			return err
		}
		switch res.Status {
		case job.DeviceSucceeded:
			cmd = job.RecordSuccess{JobID: w.id, DeviceID: res.DeviceID}
		case job.DeviceFailed:
			cmd = job.RecordFailure{JobID: w.id, DeviceID: res.DeviceID, Error: res.Error}
		}
	}
	_, err := job.Decide(s, cmd)
	return err
}

// round is one decision over several requests, ready to append.
type round struct {
	decided []job.Event
	batch   []eventstore.Event
	sizes   []int
	glued   []bool  // the event must be in the same append as the one before
	owner   []int32 // index in live of each event's request
}

// decideRound decides the results of live (accepted by refusal) together
// and envelopes each event with its own request's metadata. It sets each
// request's last.
func (w *jobWorker) decideRound(s *job.State, live []*jobRequest) (round, error) {
	results := live[0].results
	if len(live) > 1 {
		n := 0
		for _, r := range live {
			n += len(r.results)
		}
		results = make([]job.DeviceResult, 0, n)
		for _, r := range live {
			results = append(results, r.results...)
		}
	}
	events, err := job.Decide(s, job.RecordResults{JobID: w.id, Results: results})
	if err != nil {
		return round{}, fmt.Errorf("job %s: %w", w.stream, err)
	}
	rd := round{
		decided: events,
		batch:   make([]eventstore.Event, 0, len(events)),
		sizes:   make([]int, 0, len(events)),
		glued:   make([]bool, 0, len(events)),
		owner:   make([]int32, 0, len(events)),
	}
	now := w.h.now()
	// Walk the results as the decision did: each result that recorded an
	// event is the first of its device not answered before, not counting
	// timeouts once the job has ended (job.LateTimeout); the job's
	// Completed or Failed follows the result that brought it.
	j := 0
	status := s.Status
	for ri, r := range live {
		r.last = -1
		var md eventstore.Metadata
		mdSize := 0
		add := func(ev job.Event, index int, glued bool) error {
			if mdSize == 0 {
				md = eventstore.Metadata{CommandID: r.meta.CommandID, CorrelationID: r.meta.CorrelationID,
					CausationID: r.meta.CausationID, Actor: r.meta.Actor, OccurredAt: now}
				mdSize = metadataSize(md)
			}
			name, data, err := w.h.codec.Encode(ev)
			if err != nil {
				return fmt.Errorf("%s: %w", w.stream, err)
			}
			r.last = len(rd.batch)
			rd.batch = append(rd.batch, eventstore.Event{ID: EventID(r.meta.CommandID, w.stream, index), Type: name, Data: eventstore.Encoded(data), Metadata: md})
			rd.sizes = append(rd.sizes, len(name)+len(data)+mdSize)
			rd.glued = append(rd.glued, glued)
			rd.owner = append(rd.owner, int32(ri))
			return nil
		}
		for k, res := range r.results {
			if j == len(events) {
				break
			}
			if resultDevice(events[j]) != res.DeviceID || job.LateTimeout(res, status) {
				continue
			}
			if err := add(events[j], 2*k, false); err != nil {
				return round{}, err
			}
			j++
			if j < len(events) && resultDevice(events[j]) == "" {
				switch e := events[j].(type) {
				case job.Completed:
					status = job.StatusCompleted
				case job.Failed:
					status = job.StatusFailed
				default:
					return round{}, fmt.Errorf("job %s: unexpected %T after a result", w.stream, e)
				}
				if err := add(events[j], 2*k+1, true); err != nil {
					return round{}, err
				}
				j++
			}
		}
	}
	if j != len(events) {
		return round{}, fmt.Errorf("job %s: %d of the %d events decided for a round of results belong to no request", w.stream, len(events)-j, len(events))
	}
	return rd, nil
}

// resultDevice is the device of a result event, "" for any other event.
func resultDevice(ev job.Event) string {
	switch e := ev.(type) {
	case job.OperationSucceeded:
		return e.DeviceID
	case job.OperationFailed:
		return e.DeviceID
	case job.Created, job.DevicesTargeted, job.Started, job.DevicesDispatched,
		job.Completed, job.Failed, job.Stopped:
		// Not a device's result: a job-wide event, or one about many devices.
	}
	return ""
}

// appendRound appends a round's events in appends under the store's
// limit, each expecting the revision the previous one ended at, evolving
// the state with what landed and answering each request once its last
// event has. It returns the first error (a *eventstore.ConflictError when
// another instance wrote to the job), the round's later events unwritten.
func (w *jobWorker) appendRound(ctx context.Context, s *job.State, live []*jobRequest, rd round) error {
	parts, err := splitAppend(rd.sizes, rd.glued, w.h.maxAppendBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", w.stream, err)
	}
	lo := 0
	for _, hi := range parts {
		ar, err := w.h.store.Append(ctx, w.stream, w.snap.expected(), rd.batch[lo:hi])
		if err != nil {
			return err
		}
		for _, ev := range rd.decided[lo:hi] {
			s = job.Evolve(s, ev)
		}
		rev, _ := ar.Next.Value()
		w.snap = &snapshot{state: s, exists: true, rev: rev, pos: ar.Position, marks: w.snap.marks}
		for i := lo; i < hi; i++ {
			r := live[rd.owner[i]]
			r.recorded++
			r.pos = ar.Position
			if r.last == i {
				r.answer(Result{Position: ar.Position, Events: r.recorded}, nil)
			}
		}
		lo = hi
	}
	return nil
}
