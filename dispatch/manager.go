package dispatch

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// Defaults of a Manager.
const (
	// DefaultWorkers is how many jobs can record and send batches at once.
	DefaultWorkers = 4
	// DefaultWindow is how many devices of a job may be in flight at most
	// (sent and not answered, or answered and not yet recorded), at least
	// one batch: enough to keep the event store's appends full and a
	// transport busy, few enough that a stop leaves little in flight.
	//
	// A job starts with a window of InitialWindowBatches batches, and every
	// answer widens it by one device (it doubles each time a window's
	// worth is answered, like TCP's slow start) up to Window: a fleet that
	// answers is driven as fast as the store records, one that does not
	// (offline devices) is not flooded, and a stop finds little in flight.
	DefaultWindow = 20_000
	// InitialWindowBatches is a job's window, in batches, before any answer.
	InitialWindowBatches = 4
	// DefaultRecordMax caps the devices recorded as dispatched in one
	// append (several batches, each its own JobDevicesDispatched event).
	DefaultRecordMax = 5_000
	// recordMaxBytes caps the device IDs' bytes of one such append, well
	// under the store's limit, so that it is never split (and stays
	// atomic).
	recordMaxBytes = 256 << 10
	// recordersPerJob is how many RecordResults calls of one job may be in
	// flight at once: two let the command path decide the next round while
	// one is appended.
	recordersPerJob = 2
	// DefaultRound caps the answers recorded together in one round.
	DefaultRound = 20_000
	// DefaultCheckpointEvery is how often the low-water mark is saved.
	DefaultCheckpointEvery = time.Second
	// DefaultResendAfter is how long a sent delivery waits for its answer
	// before it is sent again; each further resend waits twice as long, up
	// to DefaultResendMax. A device that was offline (or whose broker lost
	// its session, as the embedded broker does when the service restarts)
	// gets the job once it is back, not only a timeout.
	DefaultResendAfter = time.Second
	// DefaultResendMax caps the wait between two resends of a delivery.
	DefaultResendMax = 30 * time.Second
	// Actor is the actor of every command the Manager sends.
	Actor = "dispatcher"
)

// TimedOut is the error recorded for a device that did not answer in time.
func TimedOut(timeoutSeconds int) string {
	return fmt.Sprintf("timed out: the device did not answer within %d s", timeoutSeconds)
}

// Config is what a Manager needs. Events, Codec, Outcomes, Transport,
// Answers, Now and NewID are required.
type Config struct {
	Events    Subscriber
	Codec     *eventstore.Codec
	Outcomes  Outcomes
	Transport Transport
	// Answers is the channel the Transport writes device answers to.
	Answers <-chan []Answer
	// Checkpoints keeps the low-water mark; nil folds the job streams from
	// the start of $all at every start.
	Checkpoints Checkpoints
	// Now is the clock of deadlines; it must advance like the real clock,
	// since the Manager waits for deadlines with real timers.
	Now func() time.Time
	// NewID draws command IDs.
	NewID  func() string
	Logger *zap.Logger

	Workers         int // default DefaultWorkers
	Window          int // devices; default DefaultWindow
	RecordMax       int // devices; default DefaultRecordMax
	Round           int // default DefaultRound
	CheckpointEvery time.Duration
	// ResendAfter and ResendMax: see DefaultResendAfter.
	ResendAfter, ResendMax time.Duration
}

// Stats are a Manager's counters since it started.
type Stats struct {
	Jobs       int // jobs tracked now
	Dispatched int // devices recorded as dispatched and sent (resends included)
	Resent     int // deliveries sent again because no answer came (included in Dispatched)
	Answers    int // answers received and recorded
	// TimedOut counts devices whose deadline passed, handed on to be
	// recorded as timed out; a job that has ended by then records none of
	// them (job.LateTimeout), so this may exceed the timeouts in the log.
	TimedOut int
	Dropped  int // answers dropped: duplicates, or for devices not in their job
	// Undecodable counts job events skipped because they could not be
	// decoded: their jobs are not dispatched (an operator must look).
	Undecodable int
	// CheckpointFailures counts failed checkpoint saves: harmless for
	// correctness (the next start reads more of the log) but worth a look.
	CheckpointFailures int
}

// Manager is the dispatch process manager (see the package documentation).
// Build it with New and run it with Run, once.
type Manager struct {
	cfg Config
	log *zap.Logger

	mu        sync.Mutex
	cond      *sync.Cond // signalled on every change a worker may wait for
	jobs      map[string]*jobRun
	ring      []*jobRun // round-robin order of the tracked jobs
	rr        int
	caughtUp  bool
	done      bool
	last      eventstore.Position // last position the subscription reached
	timers    groupHeap
	timerWake chan struct{}
	savedAt   time.Time
	stats     Stats
	// refusing is set while the transport refuses deliveries (its broker
	// is down, say): its first refusal warns, its recovery says so.
	refusing bool

	// Where recorder goroutines (see startRecorders) run: set by Run.
	recordCtx context.Context
	recordWG  *sync.WaitGroup
}

// jobRun is the Manager's view of one job: its folded state, where its
// dispatch cursor is, and its devices in flight.
type jobRun struct {
	id    string
	state *job.State
	from  eventstore.Position // the position before its JobCreated
	ops   []Operation
	// targeted is the position of its last JobDevicesTargeted read
	// (Delivery.Targeted).
	targeted eventstore.Position

	next      func() (string, job.Device, bool) // pull iterator over the targeted devices
	stopNext  func()
	exhausted bool

	busy    bool       // a worker is recording or sending for it
	started bool       // StartJob asked
	held    bool       // a RecordDispatches was refused: wait for the job's next event
	retry   [][]string // the refused batches, tried again once held clears
	resend  []*group   // to send again: no answer yet, deadline ahead

	outstanding map[string]*group   // sent, no answer yet
	answered    map[string]struct{} // answer being recorded
	// timingOut is the devices whose timeout is being recorded: an answer
	// that arrives meanwhile is still taken (on a job that has ended the
	// timeout records nothing, and the answer is the device's late result;
	// on a running one the first recorded stands).
	timingOut map[string]struct{}
	window    int // devices it may have in flight; 0 until it starts

	// Results waiting to be recorded (their devices are in answered or
	// timingOut), and how many RecordResults calls are in flight for the
	// job.
	pendAnswers  []job.DeviceResult
	pendTimeouts []job.DeviceResult
	recorders    int
}

// group is the devices of one dispatch, which share a deadline.
type group struct {
	job       *jobRun
	deadline  time.Time
	ids       []string
	remaining int
	index     int

	// When its unanswered devices are sent again (see resends): sentAt is
	// zero until the resend ticker first sees the group, which starts its
	// clock; wait doubles at every resend.
	sentAt time.Time
	wait   time.Duration
	queued bool // in its job's resend list
}

// New returns a Manager, or an error naming a missing requirement.
func New(cfg Config) (*Manager, error) {
	switch {
	case cfg.Events == nil:
		return nil, errors.New("dispatch: Config.Events is required")
	case cfg.Codec == nil:
		return nil, errors.New("dispatch: Config.Codec is required")
	case cfg.Outcomes == nil:
		return nil, errors.New("dispatch: Config.Outcomes is required")
	case cfg.Transport == nil:
		return nil, errors.New("dispatch: Config.Transport is required")
	case cfg.Answers == nil:
		return nil, errors.New("dispatch: Config.Answers is required")
	case cfg.Now == nil:
		return nil, errors.New("dispatch: Config.Now is required")
	case cfg.NewID == nil:
		return nil, errors.New("dispatch: Config.NewID is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.RecordMax <= 0 {
		cfg.RecordMax = DefaultRecordMax
	}
	if cfg.Round <= 0 {
		cfg.Round = DefaultRound
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.ResendAfter <= 0 {
		cfg.ResendAfter = DefaultResendAfter
	}
	if cfg.ResendMax < cfg.ResendAfter {
		cfg.ResendMax = max(DefaultResendMax, cfg.ResendAfter)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	m := &Manager{cfg: cfg, log: log, jobs: make(map[string]*jobRun), timerWake: make(chan struct{}, 1)}
	m.cond = sync.NewCond(&m.mu)
	return m, nil
}

// Stats returns the Manager's counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Jobs = len(m.jobs)
	return s
}

// Run follows the job streams and dispatches until ctx ends, then waits for
// its goroutines and returns nil. A dropped subscription is resumed from the
// last position it reached. It returns an error only if the checkpoint
// cannot be loaded.
func (m *Manager) Run(ctx context.Context) error {
	var from eventstore.Position
	if m.cfg.Checkpoints != nil {
		p, err := m.cfg.Checkpoints.Load(ctx)
		if err != nil {
			return fmt.Errorf("dispatch: load checkpoint: %w", err)
		}
		from = p
	}
	m.mu.Lock()
	m.last = from
	m.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	m.recordCtx, m.recordWG = ctx, &wg
	for range m.cfg.Workers {
		wg.Go(func() { m.work(ctx) })
	}
	wg.Go(func() { m.answers(ctx, nil) })
	wg.Go(func() { m.timeouts(ctx) })
	wg.Go(func() { m.resends(ctx) })
	wg.Go(func() {
		<-ctx.Done()
		m.mu.Lock()
		m.done = true
		m.cond.Broadcast()
		m.mu.Unlock()
	})

	m.follow(ctx)
	cancel()
	wg.Wait()
	m.mu.Lock()
	for _, j := range m.jobs {
		if j.stopNext != nil {
			j.stopNext()
		}
	}
	m.mu.Unlock()
	return nil
}

// follow subscribes to the job streams, resubscribing after a drop from
// the last position reached, until ctx ends.
func (m *Manager) follow(ctx context.Context) {
	filter := eventstore.Filter{StreamPrefixes: []string{eventstore.JobStreamPrefix}}
	// The first drop after the subscription delivered something is a
	// warning; the retries of one outage (nothing delivered) are debug.
	delivered, failing := false, false
	h := eventstore.Handler{
		Event: func(ctx context.Context, r eventstore.Recorded) error {
			delivered = true
			return m.onEvent(ctx, r)
		},
		Checkpoint: func(ctx context.Context, p eventstore.Position) error {
			delivered = true
			return m.onCheckpoint(ctx, p)
		},
		CaughtUp: func(ctx context.Context) error {
			delivered = true
			return m.onCaughtUp(ctx)
		},
	}
	backoff := newBackoff()
	for ctx.Err() == nil {
		m.mu.Lock()
		from := m.last
		m.mu.Unlock()
		delivered = false
		err := m.cfg.Events.SubscribeAll(ctx, from, filter, h)
		if ctx.Err() != nil {
			return
		}
		if delivered || !failing {
			m.log.Warn("dispatch: job subscription dropped; resubscribing", zap.Stringer("from", from), zap.Error(err))
		} else {
			m.log.Debug("dispatch: job subscription still failing", zap.Stringer("from", from), zap.Error(err))
		}
		failing = true
		backoff.wait(ctx)
	}
}

func (m *Manager) onCheckpoint(ctx context.Context, p eventstore.Position) error {
	m.mu.Lock()
	if p.Compare(m.last) > 0 {
		m.last = p
	}
	m.mu.Unlock()
	m.maybeSave(ctx)
	return nil
}

func (m *Manager) onCaughtUp(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.caughtUp {
		return nil // a resubscription's
	}
	m.caughtUp = true
	now := m.cfg.Now()
	for _, g := range m.timers {
		j := g.job
		if g.remaining == 0 || g.queued || j.state.Status != job.StatusRunning || !g.deadline.After(now) {
			continue
		}
		g.queued = true
		j.resend = append(j.resend, g)
	}
	m.log.Debug("dispatch: caught up", zap.Int("jobs", len(m.jobs)), zap.Int("pendingDispatches", len(m.timers)))
	m.cond.Broadcast()
	return nil
}

func (m *Manager) onEvent(ctx context.Context, r eventstore.Recorded) error {
	v, err := r.Decode(m.cfg.Codec)
	if err != nil {
		// One unreadable event must not stop every job's dispatch.
		m.log.Error("dispatch: skipping an event it cannot decode", zap.String("stream", r.Stream), zap.Uint64("revision", r.Revision), zap.Error(err))
		m.mu.Lock()
		m.stats.Undecodable++
		m.mu.Unlock()
		m.advance(r.Position)
		return nil
	}
	ev, ok := v.(job.Event)
	if !ok {
		m.advance(r.Position)
		return nil
	}
	id := strings.TrimPrefix(r.Stream, eventstore.JobStreamPrefix)

	m.mu.Lock()
	prev := m.last
	if r.Position.Compare(m.last) > 0 {
		m.last = r.Position
	}
	j := m.jobs[id]
	if j == nil {
		if _, created := ev.(job.Created); !created {
			// A job finished before the low-water mark (or dropped once
			// finished): nothing left to do for it.
			m.mu.Unlock()
			return nil
		}
		j = &jobRun{id: id, from: prev, outstanding: make(map[string]*group), answered: make(map[string]struct{}), timingOut: make(map[string]struct{})}
		m.jobs[id] = j
		m.ring = append(m.ring, j)
	}
	j.state = job.Evolve(j.state, ev)
	j.held = false
	switch e := ev.(type) {
	case job.Created:
		j.ops = make([]Operation, len(e.Operations))
		for i, o := range e.Operations {
			j.ops[i] = Operation{Name: o.Name, Value: o.Value}
		}
	case job.DevicesTargeted:
		j.targeted = r.Position
	case job.DevicesDispatched:
		at := r.Metadata.OccurredAt
		if at.IsZero() {
			at = r.RecordedAt
		}
		m.addGroup(j, e.DeviceIDs, at.Add(j.timeout()))
	case job.OperationSucceeded:
		m.settleRecorded(j, e.DeviceID, true)
	case job.OperationFailed:
		m.settleRecorded(j, e.DeviceID, e.Error != TimedOut(j.state.TimeoutSeconds))
	case job.Started, job.Completed, job.Failed, job.Stopped:
		// Status changes only: Evolve above has recorded them, and
		// maybeDrop below lets go of a job that has ended.
	}
	m.maybeDrop(j)
	m.cond.Broadcast()
	m.mu.Unlock()
	m.maybeSave(ctx)
	return nil
}

// settleRecorded settles a device whose result the log now holds. One still
// waited for was answered through another instance (which relayed the
// answer, see Relay), or timed out there: an answer widens the window as
// one taken here does (a timeout does not, here either). Called with mu
// held.
func (m *Manager) settleRecorded(j *jobRun, id string, answered bool) {
	if _, waiting := j.outstanding[id]; waiting && answered && j.window > 0 && j.window < m.cfg.Window {
		j.window++
	}
	j.settle(id)
}

func (m *Manager) advance(p eventstore.Position) {
	m.mu.Lock()
	if p.Compare(m.last) > 0 {
		m.last = p
	}
	m.mu.Unlock()
}

func (j *jobRun) timeout() time.Duration {
	t := j.state.TimeoutSeconds
	if t <= 0 {
		t = job.DefaultTimeoutSeconds
	}
	return time.Duration(t) * time.Second
}

func (j *jobRun) batchSize() int {
	if j.state.BatchSize <= 0 {
		return job.DefaultBatchSize
	}
	return j.state.BatchSize
}

// settle takes a device out of the devices waited for.
func (j *jobRun) settle(id string) {
	g := j.outstanding[id]
	if g == nil {
		return
	}
	delete(j.outstanding, id)
	g.remaining--
	if g.remaining == 0 {
		g.ids = nil // the heap keeps the group until its deadline: free the IDs now
	}
}

// addGroup starts waiting, until deadline, for the devices of ids that have
// no result and are not waited for already, and returns the group (nil if
// none is left). Called with mu held.
func (m *Manager) addGroup(j *jobRun, ids []string, deadline time.Time) *group {
	g := &group{job: j, deadline: deadline}
	for _, id := range ids {
		if _, ok := j.outstanding[id]; ok {
			continue
		}
		if _, ok := j.answered[id]; ok {
			continue
		}
		if _, ok := j.timingOut[id]; ok {
			continue
		}
		if d, ok := j.state.Device(id); ok && d.Status != job.DevicePending {
			continue
		}
		j.outstanding[id] = g
		g.ids = append(g.ids, id)
	}
	g.remaining = len(g.ids)
	if g.remaining == 0 {
		return nil
	}
	heap.Push(&m.timers, g)
	if m.timers[0] == g {
		select {
		case m.timerWake <- struct{}{}:
		default:
		}
	}
	return g
}

// maybeDrop forgets a finished job once nothing of it is in flight.
// Called with mu held.
func (m *Manager) maybeDrop(j *jobRun) {
	if !j.state.Status.Finished() || j.busy || len(j.outstanding) > 0 || len(j.answered) > 0 || len(j.timingOut) > 0 || j.recorders > 0 {
		return
	}
	if m.jobs[j.id] != j {
		return
	}
	delete(m.jobs, j.id)
	for i, r := range m.ring {
		if r == j {
			m.ring = append(m.ring[:i], m.ring[i+1:]...)
			break
		}
	}
	if j.stopNext != nil {
		j.stopNext()
		j.next, j.stopNext = nil, nil
	}
}

// maybeSave saves the low-water mark if it is time to.
func (m *Manager) maybeSave(ctx context.Context) {
	if m.cfg.Checkpoints == nil {
		return
	}
	m.mu.Lock()
	now := m.cfg.Now()
	if !m.caughtUp || now.Sub(m.savedAt) < m.cfg.CheckpointEvery {
		m.mu.Unlock()
		return
	}
	m.savedAt = now
	low := m.last
	for _, j := range m.jobs {
		if j.from.Compare(low) < 0 {
			low = j.from
		}
	}
	m.mu.Unlock()
	if err := m.cfg.Checkpoints.Save(ctx, low); err != nil && ctx.Err() == nil {
		m.log.Warn("dispatch: save checkpoint", zap.Error(err))
		m.mu.Lock()
		m.stats.CheckpointFailures++
		m.mu.Unlock()
	}
}

// task is one piece of work a worker does for a job.
type task struct {
	j       *jobRun
	start   bool
	batches [][]string // batches to record (in one append), then send
	resend  []*group
}

// work runs tasks, taking jobs in turn, until the Manager is done.
func (m *Manager) work(ctx context.Context) {
	for {
		m.mu.Lock()
		var t task
		ok := false
		for !m.done {
			if t, ok = m.pick(); ok {
				break
			}
			m.cond.Wait()
		}
		m.mu.Unlock()
		if !ok {
			return
		}
		m.run(ctx, t)
		m.mu.Lock()
		t.j.busy = false
		m.maybeDrop(t.j)
		m.cond.Broadcast()
		m.mu.Unlock()
	}
}

// pick returns the next job's task, round-robin. Called with mu held.
func (m *Manager) pick() (task, bool) {
	if !m.caughtUp {
		return task{}, false
	}
	n := len(m.ring)
	for k := range n {
		i := (m.rr + k) % n
		j := m.ring[i]
		if j.busy {
			continue
		}
		if t, ok := m.taskFor(j); ok {
			j.busy = true
			m.rr = (i + 1) % n
			return t, true
		}
	}
	return task{}, false
}

// taskFor returns what job j needs done now, if anything. Called with mu
// held.
func (m *Manager) taskFor(j *jobRun) (task, bool) {
	s := j.state
	switch s.Status {
	case job.StatusPending:
		if !j.started && s.Targeted() >= s.DeviceCount {
			j.started = true
			return task{j: j, start: true}, true
		}
	case job.StatusRunning:
		if len(j.resend) > 0 {
			gs := j.resend
			j.resend = nil
			return task{j: j, resend: gs}, true
		}
		if j.held {
			return task{}, false
		}
		if len(j.retry) > 0 {
			bs := j.retry
			j.retry = nil
			return task{j: j, batches: bs}, true
		}
		// As many batches as the window has room for, up to what one
		// append records.
		batch := j.batchSize()
		if j.window == 0 {
			j.window = min(InitialWindowBatches*batch, max(m.cfg.Window, batch))
		}
		free := j.window - len(j.outstanding) - len(j.answered) - len(j.timingOut)
		free = min(free, max(m.cfg.RecordMax, batch))
		var bs [][]string
		size := 0
		for free >= batch && size < recordMaxBytes {
			ids := j.take(batch)
			if len(ids) == 0 {
				break
			}
			bs = append(bs, ids)
			free -= len(ids)
			for _, id := range ids {
				size += len(id) + 3
			}
		}
		if len(bs) > 0 {
			return task{j: j, batches: bs}, true
		}
	}
	return task{}, false
}

// take returns up to n devices never dispatched and without a result,
// in targeting order, moving the job's cursor past them.
func (j *jobRun) take(n int) []string {
	if j.exhausted {
		return nil
	}
	if j.next == nil {
		j.next, j.stopNext = iter.Pull2(j.state.Devices())
	}
	ids := make([]string, 0, n)
	for len(ids) < n {
		id, d, ok := j.next()
		if !ok {
			j.exhausted = true
			j.stopNext()
			j.next, j.stopNext = nil, nil
			break
		}
		if d.Dispatched || d.Status != job.DevicePending {
			continue
		}
		if _, ok := j.outstanding[id]; ok {
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

func (m *Manager) meta(jobID string) Meta {
	id := m.cfg.NewID()
	return Meta{CommandID: id, CorrelationID: jobID, CausationID: id, Actor: Actor}
}

// run does one task, without mu.
func (m *Manager) run(ctx context.Context, t task) {
	j := t.j
	switch {
	case t.start:
		meta := m.meta(j.id)
		err := m.retry(ctx, "start job", j.id, func() error {
			return m.cfg.Outcomes.StartJob(ctx, meta, job.Start{JobID: j.id})
		})
		if err != nil && !isRefusal(err) {
			m.mu.Lock()
			j.started = false // ctx ended: the next run asks again
			m.mu.Unlock()
		}
	case len(t.resend) > 0:
		m.mu.Lock()
		var ds []Delivery
		now := m.cfg.Now()
		for _, g := range t.resend {
			g.queued = false
			// Never after a stop (or an early failure) was observed, nor
			// past the deadline: the device is (or is about to be)
			// recorded as timed out.
			if j.state.Status != job.StatusRunning || !g.deadline.After(now) {
				continue
			}
			for _, id := range g.ids {
				if j.outstanding[id] == g {
					ds = append(ds, j.delivery(id, g.deadline))
				}
			}
		}
		m.mu.Unlock()
		sent := m.send(ctx, j.id, ds)
		m.mu.Lock()
		if sent {
			m.stats.Resent += len(ds)
		} else {
			// Not sent at all: try again after ResendAfter, rather than
			// after the doubled wait meant for devices that did not
			// answer, so that they get the job soon after the transport
			// is back, not after their deadline.
			for _, g := range t.resend {
				g.wait = m.cfg.ResendAfter
			}
		}
		m.mu.Unlock()
	default:
		m.dispatch(ctx, j, t.batches)
	}
}

// dispatch records batches as dispatched, each its own event, in one
// append, then sends them.
func (m *Manager) dispatch(ctx context.Context, j *jobRun, batches [][]string) {
	meta := m.meta(j.id)
	cmds := make([]job.RecordDispatch, len(batches))
	n := 0
	for i, ids := range batches {
		cmds[i] = job.RecordDispatch{JobID: j.id, DeviceIDs: ids}
		n += len(ids)
	}
	err := m.retry(ctx, "record dispatch", j.id, func() error {
		return m.cfg.Outcomes.RecordDispatches(ctx, meta, cmds)
	})
	if err != nil {
		m.mu.Lock()
		if isRefusal(err) {
			// Most likely stopped: its JobStopped is on its way. Should
			// it still run, the batches go again after its next event.
			j.held = true
		}
		j.retry = batches
		m.mu.Unlock()
		m.log.Debug("dispatch: batches not recorded, not sent", zap.String("job", j.id), zap.Int("devices", n), zap.Error(err))
		return
	}
	m.mu.Lock()
	if j.state.Status != job.StatusRunning {
		// Stopped since they were recorded: nothing is sent once the stop
		// is seen. Their devices time out, as dispatched.
		deadline := m.cfg.Now().Add(j.timeout())
		for _, ids := range batches {
			m.addGroup(j, ids, deadline)
		}
		m.mu.Unlock()
		return
	}
	deadline := m.cfg.Now().Add(j.timeout())
	ds := make([]Delivery, 0, n)
	for _, ids := range batches {
		m.addGroup(j, ids, deadline)
		for _, id := range ids {
			if g := j.outstanding[id]; g != nil {
				ds = append(ds, j.delivery(id, g.deadline))
			}
		}
	}
	m.mu.Unlock()
	// If the transport refuses them, resends sends them again after
	// ResendAfter: the groups' resend clocks start at their first tick.
	_ = m.send(ctx, j.id, ds)
}

func (j *jobRun) delivery(id string, deadline time.Time) Delivery {
	return Delivery{JobID: j.id, DeviceID: id, JobType: string(j.state.Type), Operations: j.ops, Deadline: deadline, Targeted: j.targeted}
}

// send hands deliveries to the transport, trying a few times, and reports
// whether it took them. Deliveries it refused are sent again by resends,
// every ResendAfter, until it takes them or their deadline passes.
func (m *Manager) send(ctx context.Context, jobID string, ds []Delivery) bool {
	if len(ds) == 0 {
		return true
	}
	b := newBackoff()
	for attempt := 1; ; attempt++ {
		err := m.cfg.Transport.Send(ctx, ds)
		if err == nil {
			m.mu.Lock()
			m.stats.Dispatched += len(ds)
			back := m.refusing
			m.refusing = false
			m.mu.Unlock()
			if back {
				m.log.Info("dispatch: the transport takes deliveries again", zap.String("job", jobID))
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if attempt == 3 {
			m.mu.Lock()
			first := !m.refusing
			m.refusing = true
			m.mu.Unlock()
			msg := "dispatch: the transport refuses deliveries; they are sent again until it takes them or their deadline passes"
			fields := []zap.Field{zap.String("job", jobID), zap.Int("devices", len(ds)), zap.Error(err)}
			if first {
				m.log.Warn(msg, fields...)
			} else {
				m.log.Debug(msg, fields...)
			}
			return false
		}
		b.wait(ctx)
	}
}

// resends queues, on a ticker, the dispatch groups of running jobs whose
// devices have waited long enough for an answer, so that a worker sends
// them again (devices drop duplicates by operation ID, and answer again).
// It walks the groups waiting for a deadline, one entry per dispatched
// batch, rather than keeping a timer per device: cheap for a million
// devices. It never queues a group of a job that is not running (stopped,
// or failed early), nor one past its deadline.
func (m *Manager) resends(ctx context.Context) {
	tick := time.NewTicker(max(m.cfg.ResendAfter/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		m.mu.Lock()
		if !m.caughtUp {
			m.mu.Unlock()
			continue
		}
		now := m.cfg.Now()
		queued := false
		for _, g := range m.timers {
			j := g.job
			switch {
			case g.remaining == 0 || g.queued || j.state.Status != job.StatusRunning || !g.deadline.After(now):
			case g.sentAt.IsZero():
				g.sentAt, g.wait = now, m.cfg.ResendAfter
			case now.Sub(g.sentAt) >= g.wait:
				g.sentAt, g.wait = now, min(2*g.wait, m.cfg.ResendMax)
				g.queued = true
				j.resend = append(j.resend, g)
				queued = true
			}
		}
		if queued {
			m.cond.Broadcast()
		}
		m.mu.Unlock()
	}
}

// answers takes the transport's answers until ctx ends or stop is closed:
// each one of a tracked job settles its device at once (so that it is
// neither resent nor timed out) and joins its job's results waiting to be
// recorded (startRecorders), which never holds up the transport; the
// answers of jobs it does not track (finished and forgotten, unknown, or
// any while standing by in Relay) are recorded per job before it takes more.
func (m *Manager) answers(ctx context.Context, stop <-chan struct{}) {
	for {
		var batch []Answer
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case as, ok := <-m.cfg.Answers:
			if !ok {
				return
			}
			batch = append(batch, as...)
		}
	drain:
		for len(batch) < m.cfg.Round {
			select {
			case as, ok := <-m.cfg.Answers:
				if !ok {
					break drain
				}
				batch = append(batch, as...)
			default:
				break drain
			}
		}
		if unknown := m.takeAnswers(batch); len(unknown) > 0 {
			m.recordAll(ctx, unknown, false)
		}
	}
}

// Relay records the answers that reach this instance while another
// instance dispatches (one dispatches at a time; the others stand by):
// tracking no job, it records each through Outcomes for its job, as a
// running Manager does the answers of jobs it does not track. The
// dispatching instance learns them from the log. Relay returns once stop
// is closed, after recording the answers it took, or when ctx ends; call it
// only while Run is not running, on a Manager that has not run.
func (m *Manager) Relay(ctx context.Context, stop <-chan struct{}) { m.answers(ctx, stop) }

// resultOf is the device result an answer reports.
func resultOf(a Answer) job.DeviceResult {
	if a.Succeeded {
		return job.DeviceResult{DeviceID: a.DeviceID, Status: job.DeviceSucceeded}
	}
	return job.DeviceResult{DeviceID: a.DeviceID, Status: job.DeviceFailed, Error: a.Error}
}

// takeAnswers turns answers into results: those of tracked jobs are queued
// for their jobs' recorders (dropping duplicates and answers for devices
// not in their job); those of jobs the Manager does not track (finished and
// forgotten, or unknown: the command path decides) are returned per job.
func (m *Manager) takeAnswers(as []Answer) map[string][]job.DeviceResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	var unknown map[string][]job.DeviceResult
	var queued []*jobRun
	for _, a := range as {
		r := resultOf(a)
		j := m.jobs[a.JobID]
		if j == nil {
			if unknown == nil {
				unknown = make(map[string][]job.DeviceResult)
			}
			unknown[a.JobID] = append(unknown[a.JobID], r)
			continue
		}
		d, ok := j.state.Device(a.DeviceID)
		_, dup := j.answered[a.DeviceID]
		if !ok || dup || d.Status != job.DevicePending {
			m.stats.Dropped++
			continue
		}
		j.settle(a.DeviceID)
		j.answered[a.DeviceID] = struct{}{}
		if j.window > 0 && j.window < m.cfg.Window {
			j.window++
		}
		if len(j.pendAnswers) == 0 {
			queued = append(queued, j)
		}
		j.pendAnswers = append(j.pendAnswers, r)
	}
	for _, j := range queued {
		m.startRecorders(j)
	}
	if len(queued) > 0 {
		m.cond.Broadcast() // the window moved
	}
	return unknown
}

// startRecorders starts recorder goroutines for job j, up to
// recordersPerJob, while it has results waiting. Called with mu held.
func (m *Manager) startRecorders(j *jobRun) {
	waiting := len(j.pendAnswers) + len(j.pendTimeouts)
	for j.recorders < recordersPerJob && waiting > 0 && m.recordWG != nil {
		j.recorders++
		waiting -= min(waiting, m.cfg.Round)
		m.recordWG.Go(func() { m.recorder(m.recordCtx, j) })
	}
}

// recorder records job j's waiting results, a round (at most Round
// results, answers first, then timeouts) at a time, until none is left or
// ctx ends.
func (m *Manager) recorder(ctx context.Context, j *jobRun) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ctx.Err() == nil {
		var rs []job.DeviceResult
		timedOut := false
		switch {
		case len(j.pendAnswers) > 0:
			rs, j.pendAnswers = cut(j.pendAnswers, m.cfg.Round)
		case len(j.pendTimeouts) > 0:
			rs, j.pendTimeouts = cut(j.pendTimeouts, m.cfg.Round)
			timedOut = true
		}
		if len(rs) == 0 {
			break
		}
		m.mu.Unlock()
		recorded := m.record(ctx, j.id, rs)
		m.mu.Lock()
		if timedOut {
			m.stats.TimedOut += recorded
		} else {
			m.stats.Answers += recorded
		}
		for _, r := range rs {
			if timedOut {
				delete(j.timingOut, r.DeviceID)
			} else {
				delete(j.answered, r.DeviceID)
			}
		}
		m.cond.Broadcast() // the window moved
	}
	j.recorders--
	m.maybeDrop(j)
}

// cut splits off the first n results (all if fewer) of rs.
func cut(rs []job.DeviceResult, n int) (head, rest []job.DeviceResult) {
	if len(rs) <= n {
		return rs, nil
	}
	return rs[:n:n], rs[n:]
}

// timeouts records the devices whose deadline passed, until ctx ends.
func (m *Manager) timeouts(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		m.mu.Lock()
		now := m.cfg.Now()
		for len(m.timers) > 0 && !m.timers[0].deadline.After(now) {
			g := heap.Pop(&m.timers).(*group)
			j := g.job
			msg := TimedOut(j.state.TimeoutSeconds)
			for _, id := range g.ids {
				if j.outstanding[id] != g {
					continue
				}
				j.settle(id)
				j.timingOut[id] = struct{}{}
				j.pendTimeouts = append(j.pendTimeouts, job.DeviceResult{DeviceID: id, Status: job.DeviceFailed, Error: msg, TimedOut: true})
			}
			m.startRecorders(j)
		}
		wait := time.Hour
		if len(m.timers) > 0 {
			wait = m.timers[0].deadline.Sub(now)
		}
		m.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-m.timerWake:
		case <-timer.C:
		}
	}
}

// recordAll records each job's results, the jobs concurrently: answers for
// jobs the Manager does not track.
func (m *Manager) recordAll(ctx context.Context, perJob map[string][]job.DeviceResult, timedOut bool) {
	var wg sync.WaitGroup
	for jobID, rs := range perJob {
		wg.Go(func() {
			recorded := m.record(ctx, jobID, rs)
			m.mu.Lock()
			if timedOut {
				m.stats.TimedOut += recorded
			} else {
				m.stats.Answers += recorded
			}
			m.mu.Unlock()
		})
	}
	wg.Wait()
}

// record records one job's results, retrying transient errors. A refused
// batch is recorded one result at a time, so that one bad answer (for a
// device not in the job) does not lose the others. It returns how many
// were recorded (or found already recorded).
func (m *Manager) record(ctx context.Context, jobID string, rs []job.DeviceResult) int {
	meta := m.meta(jobID)
	err := m.retry(ctx, "record results", jobID, func() error {
		return m.cfg.Outcomes.RecordResults(ctx, meta, jobID, rs)
	})
	switch {
	case err == nil:
		return len(rs)
	case !isRefusal(err) || len(rs) == 1:
		if ctx.Err() == nil { // else shutting down, or the lease lost: the next dispatcher resends
			m.log.Warn("dispatch: results not recorded", zap.String("job", jobID), zap.Int("results", len(rs)), zap.Error(err))
		}
		return 0
	}
	n := 0
	for i := range rs {
		n += m.record(ctx, jobID, rs[i:i+1])
	}
	return n
}

// retry calls fn until it succeeds, is refused (a *domain.Error) or ctx
// ends, backing off between tries; it returns fn's last error.
func (m *Manager) retry(ctx context.Context, what, jobID string, fn func() error) error {
	b := newBackoff()
	for {
		err := fn()
		if err == nil || isRefusal(err) || ctx.Err() != nil {
			return err
		}
		m.log.Warn("dispatch: "+what+" failed; retrying", zap.String("job", jobID), zap.Error(err))
		if !b.wait(ctx) {
			return err
		}
	}
}

func isRefusal(err error) bool {
	_, ok := domain.AsError(err)
	return ok
}

// backoff waits longer and longer between retries, up to two seconds.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 50 * time.Millisecond} }

// wait waits for the next retry; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.d)
	defer t.Stop()
	b.d = min(2*b.d, 2*time.Second)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// groupHeap orders dispatch groups by deadline.
type groupHeap []*group

func (h groupHeap) Len() int           { return len(h) }
func (h groupHeap) Less(a, b int) bool { return h[a].deadline.Before(h[b].deadline) }
func (h groupHeap) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].index, h[b].index = a, b
}
func (h *groupHeap) Push(x any) {
	g := x.(*group)
	g.index = len(*h)
	*h = append(*h, g)
}
func (h *groupHeap) Pop() any {
	old := *h
	g := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return g
}
