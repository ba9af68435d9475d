package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ErrCheckpointMoved is returned (wrapped) by Writer.Write when a
// checkpoint in Redis is not where this Writer left it: another runner
// (another fleetjobs instance on the same Redis) committed first. Nothing of
// the batch was written; Open the Writer again and resume from the new
// checkpoint.
var ErrCheckpointMoved = errors.New("projection checkpoint moved under this writer")

// ErrVersionSwitched is returned (wrapped) by Writer.Write when a
// projection this Writer follows (a Target without a Version) has another
// active version than the one it writes: a rebuild switched it. Nothing of
// the batch was written; Open the Writer again, which resumes on the new
// version from its checkpoint.
var ErrVersionSwitched = errors.New("projection active version switched under this writer")

// ErrNotOpen is returned by Writer.Write before Open, and after a Write
// failed: the projectors' in-memory state may no longer match Redis, so the
// Writer must be opened (reloaded) again.
var ErrNotOpen = errors.New("projection writer not open")

// Target is one projector and the version of its projection it writes.
type Target struct {
	Projector Projector
	// Version is the key-prefix version written (see the package
	// documentation), e.g. "1"; a rebuild writes a new one beside it.
	//
	// Empty means the active version, followed: Open writes the version
	// the active key names (making DefaultVersion active when none is),
	// every commit checks it is still the active one, and when a rebuild
	// has switched it the commit fails with ErrVersionSwitched and the next
	// Open resumes on the new version from its checkpoint. That is how the
	// live Runner of `serve` follows rebuilds.
	Version string
}

type target struct {
	p          Projector
	follow     bool   // Version was empty: version is the active one, read by Open
	version    string // "" until Open for a followed target
	prefix     string
	checkpoint eventstore.Position
}

// Writer applies batches of decoded events with a set of projectors and
// writes each batch's changes, and every projection's new checkpoint, in one
// MULTI/EXEC: a crash never applies an event twice or skips one.
//
// It WATCHes the checkpoint keys around each batch, so two Writers on the
// same keys (two fleetjobs instances) cannot both commit the same batch: the
// loser gets ErrCheckpointMoved and reopens. It WATCHes the active keys of
// the projections it follows too, so that after a rebuild's switch nothing
// more is written to the old version: ErrVersionSwitched, and it reopens on
// the new one. A Writer is not safe for
// concurrent use: one goroutine (the Runner's) drives it.
type Writer struct {
	rdb      redis.UniversalClient
	root     string
	log      *zap.Logger
	targets  []*target
	open     bool
	ops      []Op    // reused between batches
	inflight *commit // the batch being committed, if any

	events, batches uint64 // committed
}

// NewWriter returns a Writer of targets through rdb, under key root (KeyRoot
// unless several fleetjobs share the Redis). Projection names must be
// distinct; names and versions are checked to be usable in key names.
func NewWriter(rdb redis.UniversalClient, log *zap.Logger, root string, targets ...Target) (*Writer, error) {
	if len(targets) == 0 {
		return nil, errors.New("projection writer: no targets")
	}
	if root == "" {
		return nil, errors.New("projection writer: empty key root")
	}
	w := &Writer{rdb: rdb, log: log, root: root}
	seen := make(map[string]bool)
	for _, t := range targets {
		name := t.Projector.Name()
		if err := checkName("name", name); err != nil {
			return nil, err
		}
		if t.Version != "" {
			if err := checkName("version", t.Version); err != nil {
				return nil, err
			}
		}
		if seen[name] {
			return nil, fmt.Errorf("projection writer: projection %q given twice", name)
		}
		seen[name] = true
		tg := &target{p: t.Projector, follow: t.Version == "", version: t.Version}
		if !tg.follow {
			tg.prefix = Prefix(root, name, t.Version)
		}
		w.targets = append(w.targets, tg)
	}
	return w, nil
}

// Filter is the server-side filter covering every projector's streams.
func (w *Writer) Filter() eventstore.Filter {
	var f eventstore.Filter
	seen := make(map[string]bool)
	for _, t := range w.targets {
		for _, p := range t.p.StreamPrefixes() {
			if !seen[p] {
				seen[p] = true
				f.StreamPrefixes = append(f.StreamPrefixes, p)
			}
		}
	}
	return f
}

// Open reads every projection's checkpoint and loads the projectors'
// in-memory state, and returns where to resume: the lowest checkpoint (each
// projection is then only given the events after its own). A projection
// without an active version gets the one this Writer writes, so a new
// deployment serves its first projection without a separate step; an
// existing pointer is left alone (a rebuild's new version is switched to by
// the rebuild, not here). A followed target (no Version) writes the active
// version, DefaultVersion when there was none.
func (w *Writer) Open(ctx context.Context) (eventstore.Position, error) {
	w.abandon()
	for _, t := range w.targets {
		name := t.p.Name()
		want := t.version
		if t.follow {
			want = DefaultVersion
		}
		if err := w.rdb.SetNX(ctx, ActiveKey(w.root, name), want, 0).Err(); err != nil {
			return eventstore.Position{}, fmt.Errorf("activate projection %s version %s: %w", name, want, err)
		}
		if t.follow {
			v, err := w.rdb.Get(ctx, ActiveKey(w.root, name)).Result()
			if err != nil {
				return eventstore.Position{}, fmt.Errorf("read active version of projection %s: %w", name, err)
			}
			if err := checkName("version", v); err != nil {
				return eventstore.Position{}, fmt.Errorf("active version of projection %s: %w", name, err)
			}
			if v != t.version && t.version != "" {
				w.log.Info("projection follows its rebuilt version", zap.String("projection", name),
					zap.String("from", t.version), zap.String("to", v))
			}
			t.version, t.prefix = v, Prefix(w.root, name, v)
		}
		cp, err := readCheckpoint(ctx, w.rdb, CheckpointKey(w.root, name, t.version))
		if err != nil {
			return eventstore.Position{}, err
		}
		t.checkpoint = cp
		if err := t.p.Load(ctx, NewReader(w.rdb, t.prefix)); err != nil {
			return eventstore.Position{}, fmt.Errorf("load projection %s version %s: %w", name, t.version, err)
		}
	}
	w.open = true
	w.log.Debug("projections opened", zap.Stringer("from", w.Position()), zap.Int("projections", len(w.targets)))
	return w.Position(), nil
}

// Version returns the version of projection name this Writer writes (for
// a followed projection, the one the last Open found active), "" for a
// projection it does not write or before the first Open.
func (w *Writer) Version(name string) string {
	for _, t := range w.targets {
		if t.p.Name() == name {
			return t.version
		}
	}
	return ""
}

// Switched reports whether a projection this Writer follows has another
// active version now than the one it writes: a rebuild switched it, and
// the Writer should be opened again. The Runner asks while idle, so that it
// moves to the new version (and says so through Runner.Version) before the
// old one is deleted.
func (w *Writer) Switched(ctx context.Context) (bool, error) {
	keys, want := w.activeKeys()
	if len(keys) == 0 {
		return false, nil
	}
	vals, err := w.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return false, fmt.Errorf("read active versions: %w", err)
	}
	return activeMoved(vals, want) != "", nil
}

// CheckIdle tells whether the projections' keys in Redis are still where
// this Writer left them, for a Runner that has nothing to write: nil if
// they are; ErrVersionSwitched (wrapped) if a rebuild switched a followed
// projection to another version; ErrCheckpointMoved (wrapped) if a
// checkpoint moved or an active key vanished: another writer committed,
// or Redis lost writes (restarted from an older copy, flushed). Either
// way the Writer must be opened again, from the checkpoints Redis has: a
// commit would find the same, but an idle Runner makes none, and it would
// meanwhile claim a position whose writes Redis no longer holds.
func (w *Writer) CheckIdle(ctx context.Context) error {
	active, want := w.activeKeys()
	keys := append([]string(nil), active...)
	expected := make([]eventstore.Position, 0, len(w.targets))
	for _, t := range w.targets {
		keys = append(keys, CheckpointKey(w.root, t.p.Name(), t.version))
		expected = append(expected, t.checkpoint)
	}
	vals, err := w.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return fmt.Errorf("read checkpoints: %w", err)
	}
	switch moved := activeMoved(vals[:len(active)], want); moved {
	case "":
	case "(none)":
		return fmt.Errorf("while idle: the active version of a projection is gone: %w", ErrCheckpointMoved)
	default:
		return fmt.Errorf("while idle: active version %s: %w", moved, ErrVersionSwitched)
	}
	if err := checkCheckpoints(keys[len(active):], vals[len(active):], expected); err != nil {
		return fmt.Errorf("while idle: %w", err)
	}
	return nil
}

// activeKeys returns the active keys of the followed targets and the
// versions this Writer writes for them.
func (w *Writer) activeKeys() (keys, versions []string) {
	for _, t := range w.targets {
		if t.follow {
			keys = append(keys, ActiveKey(w.root, t.p.Name()))
			versions = append(versions, t.version)
		}
	}
	return keys, versions
}

// activeMoved returns the first of the active keys read (vals, in the
// order of want) that does not name the version wanted, "" if none.
func activeMoved(vals []any, want []string) string {
	for i, v := range vals {
		if s, _ := v.(string); s != want[i] {
			if s == "" {
				return "(none)"
			}
			return s
		}
	}
	return ""
}

// Position is how far every projection has got: the lowest checkpoint
// committed.
func (w *Writer) Position() eventstore.Position {
	var low eventstore.Position
	for i, t := range w.targets {
		if i == 0 || t.checkpoint.Compare(low) < 0 {
			low = t.checkpoint
		}
	}
	return low
}

func readCheckpoint(ctx context.Context, c redis.Cmdable, key string) (eventstore.Position, error) {
	s, err := c.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return eventstore.Position{}, nil
	}
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	p, err := eventstore.ParsePosition(s)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("read checkpoint %s: %w", key, err)
	}
	return p, nil
}

// commit is a batch being committed in the background.
type commit struct {
	done     chan struct{}
	err      error // set before done is closed
	plans    []*plan
	expected []eventstore.Position // each target's checkpoint before the batch
	through  eventstore.Position
	events   int
}

// Write applies events (in $all order, all after the Writer's Position) and
// commits their changes with every checkpoint set to through, which must be
// at or after the last event (a server checkpoint may carry it further).
// With no events it only moves the checkpoints. Each projection gets only
// the events of its streams after its own checkpoint. Write is Submit then
// Flush: it returns once the batch is committed.
//
// Errors: ErrNotOpen; ErrCheckpointMoved (wrapped) when another writer
// committed first; a projector's error; Redis errors. After any error
// nothing of the failed batch is in Redis, and the Writer must be opened
// again.
func (w *Writer) Write(ctx context.Context, events []Event, through eventstore.Position) error {
	if err := w.Submit(ctx, events, through); err != nil {
		return err
	}
	return w.Flush(ctx)
}

// Submit is Write without waiting for the commit: it applies events while
// the previous batch is still being committed (so the projectors' work and
// Redis's overlap), then waits for that previous commit, starts committing
// this batch in the background and returns. Flush waits for it. Position
// and Committed count only committed batches. ctx must last until the
// commit ends. Errors are Write's, including the previous batch's.
func (w *Writer) Submit(ctx context.Context, events []Event, through eventstore.Position) error {
	if !w.open {
		return ErrNotOpen
	}
	if n := len(events); n > 0 && through.Compare(events[n-1].Position) < 0 {
		through = events[n-1].Position
	}
	w.open = false // until this batch commits: Apply changes in-memory state

	plans := make([]*plan, len(w.targets))
	for i, t := range w.targets {
		evs := t.eventsOf(events)
		if len(evs) == 0 {
			continue
		}
		r := Reader{c: w.rdb, prefix: t.prefix, settle: func(ctx context.Context, keys []string) error {
			if w.inflight == nil || w.inflight.plans[i] == nil {
				return nil
			}
			for _, k := range keys {
				if _, ok := w.inflight.plans[i].keys[k]; ok {
					return w.settle()
				}
			}
			return nil
		}}
		ops, err := t.p.Apply(ctx, r, evs, w.ops[:0])
		if err != nil {
			w.abandon()
			return fmt.Errorf("apply %d events to projection %s: %w", len(evs), t.p.Name(), err)
		}
		plans[i] = newPlan(len(ops))
		for _, op := range ops {
			plans[i].add(op)
		}
		clear(ops)
		w.ops = ops[:0]
	}
	if err := w.settle(); err != nil {
		return err
	}
	c := &commit{done: make(chan struct{}), plans: plans, through: through, events: len(events),
		expected: make([]eventstore.Position, len(w.targets))}
	for i, t := range w.targets {
		c.expected[i] = t.checkpoint
	}
	w.inflight = c
	go func() {
		defer close(c.done)
		c.err = w.commit(ctx, c)
	}()
	w.open = true
	return nil
}

// Flush waits for the batch Submit started, if any. After an error the
// Writer must be opened again.
func (w *Writer) Flush(ctx context.Context) error {
	if w.inflight == nil {
		return nil
	}
	if err := w.settle(); err != nil {
		w.open = false
		return err
	}
	return nil
}

// Committed returns how many events and batches the Writer has committed
// since it was built.
func (w *Writer) Committed() (events, batches uint64) { return w.events, w.batches }

// settle waits for the commit in flight and records its outcome.
func (w *Writer) settle() error {
	c := w.inflight
	if c == nil {
		return nil
	}
	<-c.done
	w.inflight = nil
	if c.err != nil {
		w.open = false
		return c.err
	}
	for _, t := range w.targets {
		if c.through.Compare(t.checkpoint) > 0 {
			t.checkpoint = c.through
		}
	}
	w.events += uint64(c.events)
	w.batches++
	return nil
}

// abandon waits for the commit in flight, whatever its outcome: the
// Writer is being reset.
func (w *Writer) abandon() {
	if w.inflight != nil {
		<-w.inflight.done
		w.inflight = nil
	}
	w.open = false
}

// commit writes c in one MULTI/EXEC, under a WATCH of the checkpoints and
// of the active keys of the followed projections: a rebuild's switch
// between the check and EXEC fails the commit, so nothing is written to a
// version no longer active (the rebuilt one has, or will get, those events).
func (w *Writer) commit(ctx context.Context, c *commit) error {
	keys := make([]string, len(w.targets))
	for i, t := range w.targets {
		keys[i] = t.prefix + checkpointKey
	}
	active, versions := w.activeKeys()
	watched := append(keys[:len(keys):len(keys)], active...)
	err := w.rdb.Watch(ctx, func(tx *redis.Tx) error {
		// One read of the checkpoints and active keys: no round trip
		// more than without followed projections.
		vals, err := tx.MGet(ctx, watched...).Result()
		if err != nil {
			return fmt.Errorf("read checkpoints: %w", err)
		}
		if v := activeMoved(vals[len(keys):], versions); v != "" {
			return fmt.Errorf("commit batch through %s: active version is now %s: %w", c.through, v, ErrVersionSwitched)
		}
		if err := checkCheckpoints(keys, vals[:len(keys)], c.expected); err != nil {
			return err
		}
		cmds, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, t := range w.targets {
				if c.plans[i] != nil {
					c.plans[i].queue(ctx, pipe, t.prefix)
				}
				if c.through.Compare(c.expected[i]) > 0 {
					pipe.Set(ctx, keys[i], c.through.String(), 0)
				}
			}
			return nil
		})
		if errors.Is(err, redis.TxFailedErr) {
			return fmt.Errorf("commit batch through %s: %w", c.through, ErrCheckpointMoved)
		}
		if err != nil {
			return fmt.Errorf("commit batch through %s: %w", c.through, firstErr(cmds, err))
		}
		return nil
	}, watched...)
	if errors.Is(err, ErrCheckpointMoved) && len(active) > 0 {
		// EXEC failed on a WATCHed key: say which kind of change it was,
		// so that the Runner reopens at once after a switch.
		if moved, serr := w.Switched(ctx); serr == nil && moved {
			return fmt.Errorf("commit batch through %s: %w", c.through, ErrVersionSwitched)
		}
	}
	return err
}

// checkCheckpoints fails with ErrCheckpointMoved unless the checkpoints
// read (vals, of keys) are those this Writer last wrote or read.
func checkCheckpoints(keys []string, vals []any, expected []eventstore.Position) error {
	for i := range keys {
		var got eventstore.Position
		if s, ok := vals[i].(string); ok {
			var err error
			if got, err = eventstore.ParsePosition(s); err != nil {
				return fmt.Errorf("read checkpoint %s: %w", keys[i], err)
			}
		}
		if got != expected[i] {
			return fmt.Errorf("checkpoint %s is %s, this writer expected %s: %w", keys[i], got, expected[i], ErrCheckpointMoved)
		}
	}
	return nil
}

// eventsOf returns the events of t's streams after t's checkpoint.
func (t *target) eventsOf(events []Event) []Event {
	prefixes := t.p.StreamPrefixes()
	var out []Event
	all := true
	for i, e := range events {
		keep := e.Position.Compare(t.checkpoint) > 0 && hasPrefix(e.Stream, prefixes)
		if keep && all {
			continue
		}
		if all { // first event dropped: copy the ones kept so far
			all = false
			out = append(out, events[:i]...)
		}
		if keep {
			out = append(out, e)
		}
	}
	if all {
		return events
	}
	return out
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// firstErr finds the failed command of a transaction, which names what
// Redis refused, rather than EXEC's summary.
func firstErr(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
			return fmt.Errorf("%s: %w", c.Name(), c.Err())
		}
	}
	return err
}
