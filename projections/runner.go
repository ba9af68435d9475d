package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// RunnerConfig configures a Runner. Store, Codec, Writer and Logger are
// required; zero durations and sizes take the defaults named.
type RunnerConfig struct {
	Store  *eventstore.Client
	Codec  *eventstore.Codec // decodes every event type of the projectors' streams
	Writer *Writer
	Logger *zap.Logger
	Now    func() time.Time // default time.Now

	// BatchSize is the most events one batch (one MULTI/EXEC) holds.
	// Default 8192: big batches amortise the per-batch round trips and
	// make Redis's work per event smallest (the benchmark's figures).
	BatchSize int
	// BatchBytes bounds the event data one batch holds. Default
	// DefaultBatchBytes. A
	// job's targeting events name a thousand devices each: a catch-up
	// batch of BatchSize of them would be one MULTI/EXEC of millions of
	// commands, longer for Redis to run than the client waits for an
	// answer, failing again on every retry.
	BatchBytes int
	// MaxDelay is the longest a batch stays open while events keep
	// trickling in; a batch is also written as soon as the subscription
	// has nothing more to hand over, or a checkpoint arrives. Default 50ms.
	MaxDelay time.Duration
	// MinBackoff and MaxBackoff bound the wait before resubscribing after
	// a failure; it doubles on each consecutive failure. Defaults 100ms, 5s.
	MinBackoff, MaxBackoff time.Duration
	// ActivePoll is how often an idle Runner checks whether a rebuild
	// switched a projection it follows (a Target without a Version); a
	// busy one learns it from its next commit. Default 500ms: it must stay
	// well under RebuildConfig.Grace, after which the old version is
	// deleted.
	ActivePoll time.Duration
}

// DefaultBatchBytes is the most event data a batch holds by default
// (RunnerConfig.BatchBytes).
const DefaultBatchBytes = 4 << 20

// Status is a Runner's progress and health, for /readyz and /metrics.
type Status struct {
	// Position is the position in $all up to which every projection has
	// applied events.
	Position eventstore.Position
	// CaughtUp is true once the subscription has delivered the history and
	// everything it delivered is applied; false again while resubscribing.
	CaughtUp bool
	// Err is the failure the Runner is recovering from (subscription
	// dropped, Redis unreachable, event it cannot decode...), nil when
	// healthy.
	Err error
	// EventsApplied and Batches count since the Runner was built.
	EventsApplied uint64
	Batches       uint64
}

// Lag is how far the projections are behind the log.
type Lag struct {
	Head     eventstore.Position // the last event in $all
	Position eventstore.Position // applied up to here
	// Bytes is Head.Commit - Position.Commit: the log's positions are byte
	// offsets, so this is how much of the log is yet to be read (events of
	// streams no projector reads included, until a checkpoint passes them).
	Bytes uint64
}

// Runner is the one runner of all projectors: it subscribes to $all from
// the stored checkpoint with a server-side filter covering the projectors'
// streams, decodes the events, groups them into batches and has the Writer
// commit each batch with its checkpoint. It resubscribes, with backoff, when
// the subscription drops or a batch fails, and says how far it has got
// (Position, WaitFor, Status, Lag).
type Runner struct {
	cfg RunnerConfig

	mu       sync.Mutex
	pos      eventstore.Position
	changed  chan struct{} // closed and replaced whenever pos moves
	status   Status
	versions map[string]string // projection name -> version written, as of the last Open
	// first is closed when the Runner first caught up: everything its
	// projections' streams held when it started is applied.
	first     chan struct{}
	firstOnce sync.Once
}

// NewRunner returns a Runner; start it with Run.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.Store == nil || cfg.Codec == nil || cfg.Writer == nil || cfg.Logger == nil {
		return nil, errors.New("projection runner: Store, Codec, Writer and Logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 8192
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = DefaultBatchBytes
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 50 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	if cfg.ActivePoll <= 0 {
		cfg.ActivePoll = 500 * time.Millisecond
	}
	return &Runner{cfg: cfg, changed: make(chan struct{}), versions: make(map[string]string), first: make(chan struct{})}, nil
}

// FirstCaughtUp is closed once the Runner has caught up for the first
// time: its read models then hold every event of its projections' streams
// recorded before it started (a Runner that later loses Redis's writes
// applies them again; FirstCaughtUp stays closed).
func (r *Runner) FirstCaughtUp() <-chan struct{} { return r.first }

// Version returns the version of projection name the Runner writes: for a
// followed projection the active one as of the Runner's last (re)open, ""
// before the first or for a projection it does not write. Every version it
// names holds at least what Position says is applied, so Queries reading
// it (WithVersions) keep read-your-writes across a rebuild's switch, and a
// switched-from version is still there (RebuildConfig.Grace).
func (r *Runner) Version(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.versions[name]
}

// Position returns the position up to which every projection has applied
// events.
func (r *Runner) Position() eventstore.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

// Status returns the Runner's progress and health.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Position = r.pos
	return s
}

// Err returns the failure the Runner is recovering from, nil when healthy.
func (r *Runner) Err() error { return r.Status().Err }

// Lag compares the applied position with the head of the log.
func (r *Runner) Lag(ctx context.Context) (Lag, error) {
	head, err := r.cfg.Store.Head(ctx)
	if err != nil {
		return Lag{}, fmt.Errorf("projection lag: %w", err)
	}
	l := Lag{Head: head, Position: r.Position()}
	if head.Commit > l.Position.Commit {
		l.Bytes = head.Commit - l.Position.Commit
	}
	return l, nil
}

// WaitFor returns nil once every projection has applied the log up to token
// (read-your-writes: token is the position a command returned), or ctx's
// error if that comes first. A token is the position of an event of one of
// the projectors' streams, so a running Runner reaches it.
func (r *Runner) WaitFor(ctx context.Context, token eventstore.Position) error {
	for {
		r.mu.Lock()
		pos, changed := r.pos, r.changed
		r.mu.Unlock()
		if pos.Compare(token) >= 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for projections to reach %s (at %s): %w", token, pos, ctx.Err())
		}
	}
}

// advance records the Writer's progress (committed batches only).
func (r *Runner) advance(w *Writer) {
	pos := w.Position()
	events, batches := w.Committed()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.EventsApplied, r.status.Batches = events, batches
	if pos.Compare(r.pos) > 0 {
		r.pos = pos
		close(r.changed)
		r.changed = make(chan struct{})
	}
}

func (r *Runner) setHealth(caughtUp bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.CaughtUp, r.status.Err = caughtUp, err
}

// movedWarnAfter is how many commits in a row a Runner loses to another
// writer, without one of its own, before it warns.
const movedWarnAfter = 50

// Run projects until ctx ends, then returns nil. Failures are retried with
// backoff: the first of a run of failures is logged (at warn) and every one
// is reported by Status until the Runner has caught up again.
func (r *Runner) Run(ctx context.Context) error {
	backoff := r.cfg.MinBackoff
	failing := false
	moved := 0 // commits lost to another writer in a row, without progress
	for {
		progressed, err := r.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrVersionSwitched) {
			// A rebuild switched a projection: reopen on the new version
			// at once. Not a failure: health and backoff stay as they are.
			r.cfg.Logger.Debug("projections reopen on a switched version", zap.Error(err))
			continue
		}
		if errors.Is(err, ErrCheckpointMoved) {
			// Another instance committed first (several serve instances
			// project the same log into one Redis): reopen from its
			// checkpoint after MinBackoff, which skips what it commits
			// meanwhile instead of racing it for every batch, while this
			// Runner's position (which its instance's consistency waits
			// read) stays a moment behind. Not a failure: /readyz would
			// flap on every race. Losing many in a row without a commit
			// of its own is worth a word: two deployments on different
			// logs sharing one key root look like this.
			if progressed {
				moved = 0
			}
			moved++
			if moved == movedWarnAfter {
				r.cfg.Logger.Warn("projections: another writer keeps moving the checkpoint and this one has committed nothing since; is another deployment, on another event log, using this Redis key root?",
					zap.Int("times", moved), zap.Error(err))
			} else {
				r.cfg.Logger.Debug("projections reopen after another writer's commit", zap.Error(err))
			}
			if !pause(ctx, r.cfg.MinBackoff) {
				return nil
			}
			continue
		}
		moved = 0
		r.setHealth(false, err)
		if progressed {
			backoff, failing = r.cfg.MinBackoff, false
		}
		if !failing {
			r.cfg.Logger.Warn("projections stopped; resubscribing from the checkpoint", zap.Error(err))
			failing = true
		} else {
			r.cfg.Logger.Debug("projections still failing", zap.Error(err), zap.Duration("backoff", backoff))
		}
		if !pause(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// pause waits d; false if ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type msgKind uint8

const (
	msgEvent      msgKind = iota + 1
	msgCheckpoint         // the store considered everything up to pos
	msgSkip               // an event no projector knows: only its position counts
	msgCaughtUp
	msgEnd // the subscription ended with err
)

type message struct {
	kind msgKind
	ev   Event
	size int // the event's stored data, in bytes
	pos  eventstore.Position
	err  error
}

// runOnce opens the Writer, subscribes from its position and applies until
// something fails. It reports whether it committed anything.
func (r *Runner) runOnce(ctx context.Context) (progressed bool, _ error) {
	w := r.cfg.Writer
	from, err := w.Open(ctx)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	for _, t := range w.targets {
		r.versions[t.p.Name()] = t.version
	}
	if from.Compare(r.pos) < 0 {
		// Redis holds less than this Runner applied: it lost writes (it
		// restarted from an older copy, or was flushed). Consistency
		// waits must not pass on what is no longer there: they wait for
		// the log to be applied again from here.
		r.cfg.Logger.Warn("projections: Redis has lost read-model writes (restarted from an older copy, or flushed?); applying the log again from its checkpoint",
			zap.Stringer("applied", r.pos), zap.Stringer("checkpoint", from))
		r.pos = from
		r.status.CaughtUp = false // /readyz: not ready until applied again
	}
	r.mu.Unlock()
	r.advance(w)
	poll := time.NewTicker(r.cfg.ActivePoll)
	defer poll.Stop()

	subCtx, cancel := context.WithCancel(ctx)
	msgs := make(chan message, 2*r.cfg.BatchSize)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := r.subscribe(subCtx, from, msgs)
		select {
		case msgs <- message{kind: msgEnd, err: err}:
		case <-subCtx.Done():
		}
	}()
	defer wg.Wait()
	defer cancel()
	defer w.abandon() // no commit outlives the run (ctx ends it soon if it is over)

	var (
		batch    []Event
		bytes    int // of batch's events' data
		through  eventstore.Position
		opened   time.Time
		pending  bool // batch or through not yet written
		caughtUp bool
	)
	// submit hands the batch to the Writer, which applies it while the
	// previous one commits; flush also waits for that commit.
	submit := func() error {
		if !pending {
			return nil
		}
		err := w.Submit(ctx, batch, through)
		r.advance(w)
		if err != nil {
			return err
		}
		progressed = true
		// A new slice: the one submitted may still be read.
		batch, bytes, pending = make([]Event, 0, len(batch)), 0, false
		return nil
	}
	flush := func() error {
		if err := submit(); err != nil {
			return err
		}
		err := w.Flush(ctx)
		r.advance(w)
		return err
	}
	for {
		var m message
		select {
		case m = <-msgs:
		default:
			if !caughtUp && pending {
				// Catching up, the history comes a little slower than
				// it is applied: wait for more (up to MaxDelay since
				// the batch opened) rather than commit a few events at
				// a time, a round trip each.
				var more bool
				if m, more = awaitMessage(ctx, msgs, r.cfg.MaxDelay-r.cfg.Now().Sub(opened)); more {
					break
				}
			}
			// The subscription has nothing more right now: write what
			// we have rather than wait for a full batch.
			if err := flush(); err != nil {
				return progressed, err
			}
			idle := true
			for idle {
				select {
				case m = <-msgs:
					idle = false
				case <-poll.C:
					if err := w.CheckIdle(ctx); err != nil {
						return progressed, err
					}
				case <-ctx.Done():
					return progressed, ctx.Err()
				}
			}
		}
		switch m.kind {
		case msgEvent, msgSkip:
			if !pending {
				opened = r.cfg.Now()
			}
			if m.kind == msgEvent {
				batch = append(batch, m.ev)
				bytes += m.size
			}
			through, pending = m.pos, true
			if len(batch) >= r.cfg.BatchSize || bytes >= r.cfg.BatchBytes || r.cfg.Now().Sub(opened) >= r.cfg.MaxDelay {
				if err := submit(); err != nil {
					return progressed, err
				}
			}
		case msgCheckpoint:
			if m.pos.Compare(through) > 0 && m.pos.Compare(w.Position()) > 0 {
				if !pending {
					opened = r.cfg.Now()
				}
				through, pending = m.pos, true
			}
			// While catching up, the batch goes when full or MaxDelay
			// old, as for events: a checkpoint comes every few events.
			if caughtUp {
				if err := submit(); err != nil {
					return progressed, err
				}
			}
		case msgCaughtUp:
			if err := flush(); err != nil {
				return progressed, err
			}
			caughtUp = true
			r.setHealth(true, nil)
			r.firstOnce.Do(func() { close(r.first) })
			r.cfg.Logger.Debug("projections caught up", zap.Stringer("position", w.Position()))
		case msgEnd:
			// What arrived before the end is valid: keep it.
			if err := flush(); err != nil {
				return progressed, err
			}
			if m.err == nil {
				m.err = errors.New("subscription ended")
			}
			return progressed, m.err
		}
	}
}

// subscribe runs the subscription, decoding events and handing them to the
// apply loop through msgs (decoding here overlaps it with the writes).
func (r *Runner) subscribe(ctx context.Context, from eventstore.Position, msgs chan<- message) error {
	send := func(m message) error {
		select {
		case msgs <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	unknown := make(map[string]bool) // event types already warned about
	return r.cfg.Store.SubscribeAll(ctx, from, r.cfg.Writer.Filter(), eventstore.Handler{
		Event: func(ctx context.Context, rec eventstore.Recorded) error {
			data, err := rec.Decode(r.cfg.Codec)
			if errors.Is(err, eventstore.ErrUnknownEventType) {
				// Written by a newer fleetjobs: this one cannot project
				// it, and must not stop every read model over it.
				if !unknown[rec.Type] {
					unknown[rec.Type] = true
					r.cfg.Logger.Warn("projections skip an event type they do not know",
						zap.String("type", rec.Type), zap.String("stream", rec.Stream))
				}
				return send(message{kind: msgSkip, pos: rec.Position})
			}
			if err != nil {
				return fmt.Errorf("decode %s@%d (%s): %w", rec.Stream, rec.Revision, rec.Type, err)
			}
			return send(message{kind: msgEvent, pos: rec.Position, size: len(rec.Data), ev: Event{
				Stream: rec.Stream, Revision: rec.Revision, Position: rec.Position,
				Type: rec.Type, Metadata: rec.Metadata, Data: data,
			}})
		},
		Checkpoint: func(_ context.Context, p eventstore.Position) error {
			return send(message{kind: msgCheckpoint, pos: p})
		},
		CaughtUp: func(context.Context) error {
			return send(message{kind: msgCaughtUp})
		},
	})
}

// awaitMessage receives the next message if one comes within d.
func awaitMessage(ctx context.Context, msgs <-chan message, d time.Duration) (message, bool) {
	if d <= 0 {
		return message{}, false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case m := <-msgs:
		return m, true
	case <-t.C:
	case <-ctx.Done():
	}
	return message{}, false
}
