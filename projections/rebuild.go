package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// RebuildKey returns the key naming the version a rebuild of projection
// name is writing, "{root}:{name}:rebuild": set when the rebuild starts,
// deleted in the MULTI/EXEC that switches the active key to it. While it
// is set, an interrupted rebuild is resumed by the next one from that
// version's checkpoint.
func RebuildKey(root, name string) string { return root + ":" + name + ":rebuild" }

// DefaultGrace is how long a rebuild keeps the versions it switched away
// from before deleting them: well beyond what a reader may still use them
// (a Queries' active-version cache, activeTTL; a Runner's ActivePoll).
const DefaultGrace = 10 * time.Second

// MinGrace is the shortest grace a rebuild may be given: twice as long as
// a Queries trusts the active version it read (activeTTL), so that no
// reader is left on a version whose keys are being deleted.
const MinGrace = 2 * activeTTL

// RebuildConfig configures Rebuild. Store, Codec, Redis, Root, Projectors
// and Logger are required.
type RebuildConfig struct {
	Store *eventstore.Client
	Codec *eventstore.Codec
	Redis redis.UniversalClient
	// Root is the key root the live projections use (KeyRoot by default).
	Root string
	// Projectors are fresh projectors of the projections to rebuild, each
	// at most once.
	Projectors []Projector
	Logger     *zap.Logger
	// Progress, when set, is called from Rebuild's goroutine about every
	// ProgressEvery (default 250ms) while the new versions are built.
	Progress      func(RebuildProgress)
	ProgressEvery time.Duration
	// Switched, when set, is called once the active keys name the new
	// versions, before the grace period.
	Switched func(RebuildResult)
	// Grace is how long the old versions are kept after the switch before
	// they are deleted; default DefaultGrace.
	Grace time.Duration
	// BatchSize is the Runner's batch size (0: its default).
	BatchSize int
}

// RebuildProgress is how far a rebuild has got.
type RebuildProgress struct {
	// Start is where this run began (a resumed rebuild starts at its
	// checkpoint), Position how far every new version has applied the
	// log, Head the last event of the log. Positions are byte offsets in
	// the log: (Position-Start)/(Head-Start) of Commit is the fraction done.
	Start, Position, Head eventstore.Position
	// Events is how many events this run applied.
	Events  uint64
	Elapsed time.Duration
}

// RebuildResult says what a rebuild did, per projection name.
type RebuildResult struct {
	From, To map[string]string // the versions switched from and to
	Resumed  map[string]bool   // the rebuild resumed an interrupted one
	Position eventstore.Position
	Events   uint64 // applied by this run
	Deleted  int    // keys of old versions deleted after the grace period
}

// Rebuild rebuilds projections from the log without downtime: it writes
// a new version of each beside the live one, from the start of $all (or,
// for an interrupted rebuild whose version RebuildKey still names, from
// that version's checkpoint: every batch was committed whole with its
// checkpoint, so resuming is exact), catches up with the head, and then,
// once every new version has applied at least as much of the log as the
// live one, switches the active keys to them in one MULTI/EXEC that
// WATCHes the live checkpoints (so no live commit slips in between). Live
// Runners following the projections (Targets without a Version) reopen on
// the new versions from their checkpoints: no event is lost or applied
// twice. After Grace, it deletes every version of the projections but the
// active one and one a rebuild is writing (SCAN and UNLINK in chunks),
// which also removes what crashed rebuilds and verifications left.
//
// An interrupted Rebuild (ctx cancelled, the process killed) leaves the
// live projections untouched; run it again to resume. Cancelled during the
// grace period, it returns ctx's error after the switch: the next rebuild
// deletes the old versions.
func Rebuild(ctx context.Context, cfg RebuildConfig) (RebuildResult, error) {
	res := RebuildResult{From: map[string]string{}, To: map[string]string{}, Resumed: map[string]bool{}}
	if err := checkRebuildConfig(&cfg); err != nil {
		return res, err
	}
	targets := make([]Target, 0, len(cfg.Projectors))
	for _, p := range cfg.Projectors {
		from, to, resumed, err := planVersion(ctx, cfg.Redis, cfg.Root, p.Name())
		if err != nil {
			return res, err
		}
		res.From[p.Name()], res.To[p.Name()], res.Resumed[p.Name()] = from, to, resumed
		targets = append(targets, Target{Projector: p, Version: to})
		cfg.Logger.Info("rebuilding projection", zap.String("projection", p.Name()),
			zap.String("live", from), zap.String("new", to), zap.Bool("resumed", resumed))
	}
	w, err := NewWriter(cfg.Redis, cfg.Logger, cfg.Root, targets...)
	if err != nil {
		return res, err
	}
	r, err := NewRunner(RunnerConfig{Store: cfg.Store, Codec: cfg.Codec, Writer: w, Logger: cfg.Logger, BatchSize: cfg.BatchSize})
	if err != nil {
		return res, err
	}
	var start eventstore.Position
	for i, p := range cfg.Projectors {
		cp, err := readCheckpoint(ctx, cfg.Redis, CheckpointKey(cfg.Root, p.Name(), res.To[p.Name()]))
		if err != nil {
			return res, err
		}
		if i == 0 || cp.Compare(start) < 0 {
			start = cp
		}
	}
	if err := build(ctx, cfg, r, start, &res); err != nil {
		return res, err
	}
	if cfg.Switched != nil {
		cfg.Switched(res)
	}
	t := time.NewTimer(cfg.Grace)
	select {
	case <-ctx.Done():
		t.Stop()
		return res, fmt.Errorf("switched, then interrupted before the old versions were deleted (the next rebuild deletes them): %w", context.Cause(ctx))
	case <-t.C:
	}
	for _, p := range cfg.Projectors {
		n, err := DeleteOldVersions(ctx, cfg.Redis, cfg.Root, p.Name(), time.Now())
		res.Deleted += n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func checkRebuildConfig(cfg *RebuildConfig) error {
	if cfg.Store == nil || cfg.Codec == nil || cfg.Redis == nil || cfg.Root == "" || len(cfg.Projectors) == 0 || cfg.Logger == nil {
		return errors.New("rebuild: Store, Codec, Redis, Root, Projectors and Logger are required")
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 250 * time.Millisecond
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	return nil
}

// planVersion picks the version a rebuild of projection name writes: the
// one RebuildKey names (an interrupted rebuild, resumed), else the next
// number after the active version with no checkpoint yet, recorded in
// RebuildKey. A projection nothing projected yet gets DefaultVersion
// active first (the empty version queries read anyway).
func planVersion(ctx context.Context, rdb redis.UniversalClient, root, name string) (from, to string, resumed bool, _ error) {
	if err := rdb.SetNX(ctx, ActiveKey(root, name), DefaultVersion, 0).Err(); err != nil {
		return "", "", false, fmt.Errorf("rebuild %s: %w", name, err)
	}
	from, err := rdb.Get(ctx, ActiveKey(root, name)).Result()
	if err != nil {
		return "", "", false, fmt.Errorf("rebuild %s: read active version: %w", name, err)
	}
	cur, err := rdb.Get(ctx, RebuildKey(root, name)).Result()
	switch {
	case err == nil && cur != from && checkName("version", cur) == nil:
		return from, cur, true, nil
	case err != nil && !errors.Is(err, redis.Nil):
		return "", "", false, fmt.Errorf("rebuild %s: read %s: %w", name, RebuildKey(root, name), err)
	}
	n, err := strconv.Atoi(from)
	if err != nil {
		n = 1
	}
	for {
		n++
		to = strconv.Itoa(n)
		exists, err := rdb.Exists(ctx, CheckpointKey(root, name, to)).Result()
		if err != nil {
			return "", "", false, fmt.Errorf("rebuild %s: %w", name, err)
		}
		if to != from && exists == 0 {
			break
		}
	}
	// Two rebuilds starting together agree on one version: the first to
	// record it wins, the other resumes it.
	if ok, err := rdb.SetNX(ctx, RebuildKey(root, name), to, 0).Result(); err != nil {
		return "", "", false, fmt.Errorf("rebuild %s: record version %s: %w", name, to, err)
	} else if !ok {
		if cur, err = rdb.Get(ctx, RebuildKey(root, name)).Result(); err != nil {
			return "", "", false, fmt.Errorf("rebuild %s: %w", name, err)
		}
		return from, cur, true, nil
	}
	return from, to, false, nil
}

// build runs r until the new versions have caught up and the switch
// committed.
func build(ctx context.Context, cfg RebuildConfig, r *Runner, from eventstore.Position, res *RebuildResult) error {
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(runCtx) // retries failures itself; reports them through Status
	}()
	defer func() {
		cancel()
		<-done
	}()
	start := time.Now()
	tick := time.NewTicker(cfg.ProgressEvery)
	defer tick.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("rebuild interrupted at %s (run it again to resume): %w", r.Position(), context.Cause(ctx))
		case <-tick.C:
		}
		st := r.Status()
		if st.Err != nil && (lastErr == nil || st.Err.Error() != lastErr.Error()) {
			cfg.Logger.Warn("rebuild retrying", zap.Error(st.Err))
		}
		lastErr = st.Err
		if cfg.Progress != nil {
			head, err := cfg.Store.Head(ctx)
			if err == nil {
				cfg.Progress(RebuildProgress{Start: from, Position: st.Position, Head: head, Events: st.EventsApplied, Elapsed: time.Since(start)})
			}
		}
		if !st.CaughtUp || st.Err != nil {
			continue
		}
		ok, err := trySwitch(ctx, cfg, res)
		if err != nil {
			return err
		}
		if ok {
			res.Position, res.Events = st.Position, st.EventsApplied
			return nil
		}
	}
}

// errNotYet says a new version has not applied as much as the live one.
var errNotYet = errors.New("the new version is behind the live one")

// errFound and errNone end noEventsBetween's subscription.
var (
	errFound = errors.New("an event in the range")
	errNone  = errors.New("no event in the range")
)

// trySwitch switches every projection of res to its new version in one
// MULTI/EXEC, if each new version has applied at least as much of the log
// as the live one; it WATCHes the active, rebuild and both checkpoint keys,
// so a live commit or another switch in between fails it (false: try again
// after the next batch).
//
// A new version behind the live checkpoint with no event of its streams
// in between counts as level, and its checkpoint is set to the live one in
// the switch: the live Runner, which reads every projection's streams,
// moves the checkpoint past events this projection's subscription never
// delivers (a job event for the devices projection), and a filtered
// subscription reports such progress only now and then.
func trySwitch(ctx context.Context, cfg RebuildConfig, res *RebuildResult) (bool, error) {
	rdb, root := cfg.Redis, cfg.Root
	names := make([]string, 0, len(res.To))
	prefixes := make(map[string][]string, len(cfg.Projectors))
	for _, p := range cfg.Projectors {
		names = append(names, p.Name())
		prefixes[p.Name()] = p.StreamPrefixes()
	}
	var keys []string
	for _, n := range names {
		keys = append(keys, ActiveKey(root, n), RebuildKey(root, n),
			CheckpointKey(root, n, res.From[n]), CheckpointKey(root, n, res.To[n]))
	}
	// Outside the transaction (it reads the log): which new versions are
	// behind with nothing of theirs to apply.
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return false, fmt.Errorf("switch to the rebuilt versions: %w", err)
	}
	lift := make(map[string]eventstore.Position)
	for i, n := range names {
		live, built, err := positionsOf(vals[4*i+2], vals[4*i+3])
		if err != nil {
			return false, err
		}
		if built.Compare(live) >= 0 {
			continue
		}
		none, err := noEventsBetween(ctx, cfg.Store, prefixes[n], built, live)
		if err != nil || !none {
			return false, err
		}
		lift[n] = live
	}
	err = rdb.Watch(ctx, func(tx *redis.Tx) error {
		vals, err := tx.MGet(ctx, keys...).Result()
		if err != nil {
			return err
		}
		for i, n := range names {
			active, _ := vals[4*i].(string)
			rebuilding, _ := vals[4*i+1].(string)
			if active != res.From[n] || rebuilding != res.To[n] {
				return fmt.Errorf("projection %s: active version %q, rebuild %q while switching from %s to %s: another rebuild ran meanwhile; run it again",
					n, active, rebuilding, res.From[n], res.To[n])
			}
			live, built, err := positionsOf(vals[4*i+2], vals[4*i+3])
			if err != nil {
				return err
			}
			if to, ok := lift[n]; ok && to == live && built.Compare(live) < 0 {
				continue // checked above, for these very checkpoints (WATCHed since)
			}
			if built.Compare(live) < 0 {
				return errNotYet
			}
			delete(lift, n)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, n := range names {
				p.Set(ctx, ActiveKey(root, n), res.To[n], 0)
				p.Del(ctx, RebuildKey(root, n))
				if to, ok := lift[n]; ok {
					p.Set(ctx, CheckpointKey(root, n, res.To[n]), to.String(), 0)
				}
			}
			return nil
		})
		return err
	}, keys...)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errNotYet), errors.Is(err, redis.TxFailedErr):
		return false, nil
	}
	return false, fmt.Errorf("switch to the rebuilt versions: %w", err)
}

// noEventsBetween reports whether the log has no event of the streams
// with these prefixes after from, up to and including through.
func noEventsBetween(ctx context.Context, store *eventstore.Client, prefixes []string, from, through eventstore.Position) (bool, error) {
	err := store.SubscribeAll(ctx, from, eventstore.Filter{StreamPrefixes: prefixes}, eventstore.Handler{
		Event: func(_ context.Context, rec eventstore.Recorded) error {
			if rec.Position.Compare(through) <= 0 {
				return errFound
			}
			return errNone
		},
		Checkpoint: func(_ context.Context, p eventstore.Position) error {
			if p.Compare(through) >= 0 {
				return errNone
			}
			return nil
		},
		// through is a position the live Runner was given, so at most
		// the head: caught up, everything up to it was delivered.
		CaughtUp: func(context.Context) error { return errNone },
	})
	switch {
	case errors.Is(err, errNone):
		return true, nil
	case errors.Is(err, errFound):
		return false, nil
	}
	return false, fmt.Errorf("read the log after %s: %w", from, err)
}

// positionsOf parses the live and the new checkpoint read from Redis.
func positionsOf(live, built any) (eventstore.Position, eventstore.Position, error) {
	l, err := positionOf(live)
	if err != nil {
		return l, l, err
	}
	b, err := positionOf(built)
	return l, b, err
}

func positionOf(v any) (eventstore.Position, error) {
	s, ok := v.(string)
	if !ok {
		return eventstore.Position{}, nil
	}
	return eventstore.ParsePosition(s)
}

// scratchTTL is how long a verification's scratch version is left alone
// by DeleteOldVersions: a verification running meanwhile still uses it.
const scratchTTL = 6 * time.Hour

// DeleteOldVersions deletes the keys of every version of projection name
// but the active one, the one a rebuild is writing (RebuildKey) and the
// scratch versions of verifications started in the last six hours (their
// names carry their start time), SCANning and UNLINKing in chunks, and
// returns how many keys it deleted. The active and rebuild keys are read
// again for every chunk, so a rebuild starting meanwhile keeps its
// version.
func DeleteOldVersions(ctx context.Context, rdb redis.UniversalClient, root, name string, now time.Time) (int, error) {
	base := root + ":" + name + ":"
	var mu sync.Mutex
	deleted := 0
	err := scanKeys(ctx, rdb, globEscape(base)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		keep, err := rdb.MGet(ctx, ActiveKey(root, name), RebuildKey(root, name)).Result()
		if err != nil {
			return err
		}
		var del []string
		for _, k := range keys {
			v, _, ok := strings.Cut(strings.TrimPrefix(k, base), ":")
			if !ok || v == keep[0] || v == keep[1] || liveScratch(v, now) {
				continue // the active or rebuild key itself, or a version in use
			}
			del = append(del, k)
		}
		if len(del) == 0 {
			return nil
		}
		if err := c.Unlink(ctx, del...).Err(); err != nil {
			return err
		}
		mu.Lock()
		deleted += len(del)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return deleted, fmt.Errorf("delete old versions of projection %s: %w", name, err)
	}
	return deleted, nil
}

// liveScratch reports whether version is a verification's scratch version
// started less than scratchTTL before now.
func liveScratch(version string, now time.Time) bool {
	rest, ok := strings.CutPrefix(version, scratchPrefix)
	if !ok {
		return false
	}
	sec, _, _ := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(sec, 10, 64)
	return err == nil && now.Sub(time.Unix(n, 0)) < scratchTTL
}

// scanKeys calls fn with the keys matching pattern, a SCAN chunk (up to a
// thousand) at a time, with the connection of the node holding them (every
// master of a Redis Cluster, concurrently).
func scanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string, fn func(context.Context, redis.Cmdable, []string) error) error {
	scan := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return fmt.Errorf("scan %s: %w", pattern, err)
			}
			if len(keys) > 0 {
				if err := fn(ctx, c, keys); err != nil {
					return err
				}
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, rdb)
}

// globEscape escapes the SCAN MATCH pattern characters of s.
func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
