package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zapcore"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// RebuildConfig is the configuration of `fleetjobs rebuild`.
type RebuildConfig struct {
	// Projections are the names of the projections to rebuild or verify,
	// in projectionNames order; all of them by default.
	Projections []string
	// Verify compares the live projections with a scratch rebuild instead
	// of rebuilding them.
	Verify bool
	// Create allows a rebuild of a projection that has no active version
	// under KeyRoot: nothing was ever projected there (before serve's first
	// start), or KeyRoot is mistyped and the rebuild would be an orphan
	// copy that nothing reads or deletes.
	Create   bool
	Quiet    bool
	RedisURL string
	KeyRoot  string
	// Grace is how long the old versions are kept after the switch.
	Grace time.Duration
}

// projectionNames lists the projections serve runs, by name.
var projectionNames = []string{projections.DevicesProjection, projections.JobsProjection}

// newProjector returns a fresh projector of projection name.
func newProjector(name string) projections.Projector {
	if name == projections.JobsProjection {
		return projections.NewJobsProjector()
	}
	return projections.NewDevicesProjector(0)
}

// errDrift is the failure of `rebuild --verify` when a projection differs
// from its rebuild; the report is on stdout.
var errDrift = errors.New("drift found: the live projection differs from a rebuild of the log (rebuild it to repair)")

func rebuildFlags(getenv func(string) string) (*flag.FlagSet, func() (RebuildConfig, logSource, error)) {
	fs := newFlagSet("rebuild")
	var names listFlag
	fs.Var(&names, "projection", "rebuild only this projection (repeatable or comma-separated): "+strings.Join(projectionNames, ", ")+"; default all")
	verify := fs.Bool("verify", false, "compare the live projections key by key with a scratch rebuild and report drift, instead of rebuilding (exit 1 on drift)")
	create := fs.Bool("create", false, "build read models where none were ever projected under --redis-key-root (e.g. before the first serve start); without it, a projection with no active version there exits 2 (a mistyped --redis-key-root?)")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	redisURL := fs.String("redis-url", getenv("FLEETJOBS_REDIS_URL"), "the Redis serve keeps its read models in ($FLEETJOBS_REDIS_URL; required)")
	root := fs.String("redis-key-root", projections.KeyRoot, "the first segment of the read-model keys, as given to serve")
	grace := fs.Duration("grace", projections.DefaultGrace, "how long the old versions are kept after the switch, for readers still on them, before they are deleted")
	source := logSourceFlags(fs, getenv)
	return fs, func() (RebuildConfig, logSource, error) {
		c := RebuildConfig{Verify: *verify, Create: *create, Quiet: *quiet, RedisURL: *redisURL, KeyRoot: *root, Grace: *grace}
		for _, n := range names {
			if !slices.Contains(projectionNames, n) {
				return c, logSource{}, usageErrorf("unknown --projection %q: want one of %s", n, strings.Join(projectionNames, ", "))
			}
		}
		for _, n := range projectionNames {
			if len(names) == 0 || slices.Contains(names, n) {
				c.Projections = append(c.Projections, n)
			}
		}
		if c.RedisURL == "" {
			return c, logSource{}, usageErrorf("FLEETJOBS_REDIS_URL (or --redis-url) is not set: with the embedded Redis (the default) the read models live inside the serve process and are rebuilt from the log at every start, so there is nothing to rebuild; give the Redis serve uses")
		}
		if _, err := redisOptions(c.RedisURL); err != nil {
			return c, logSource{}, usageErrorf("invalid --redis-url: %v", err)
		}
		if c.KeyRoot == "" || strings.ContainsAny(c.KeyRoot, ": \t\n") {
			return c, logSource{}, usageErrorf("invalid --redis-key-root %q", c.KeyRoot)
		}
		if err := checkClusterKeyRoot(c.RedisURL, c.KeyRoot); err != nil {
			return c, logSource{}, usageErrorf("--redis-key-root %q: %v", c.KeyRoot, err)
		}
		if c.Grace < projections.MinGrace {
			return c, logSource{}, usageErrorf("invalid --grace %s: want at least %s (serve instances trust the active version they read for a second, and must not be left reading deleted keys), such as 10s", c.Grace, projections.MinGrace)
		}
		if c.Verify && flagSet(fs, "grace") {
			return c, logSource{}, usageErrorf("--grace is for a rebuild, not --verify (which deletes only its scratch keys)")
		}
		if c.Verify && c.Create {
			return c, logSource{}, usageErrorf("--create is for a rebuild, not --verify (which compares read models that exist)")
		}
		src, err := source()
		return c, src, err
	}
}

// runRebuild is `fleetjobs rebuild`.
func runRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, load := rebuildFlags(getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, src, err := load()
	if err != nil {
		return err
	}
	logger := newLogger(stderr, zapcore.WarnLevel)
	defer func() { _ = logger.Sync() }()
	routeRedisLogs(logger) // before the first dial: its failures are ours to tell
	rdb, _, err := openRedis(cfg.RedisURL)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("redis at %s does not answer: %w", redactURL(cfg.RedisURL), err)
	}
	if cfg.Verify || !cfg.Create {
		if err := checkProjected(ctx, rdb, cfg); err != nil {
			return err
		}
	}
	es, release, err := openLog(ctx, src)
	if err != nil {
		return err
	}
	defer release()
	defer readerGC()()
	codec := eventstore.NewCatalogCodec()
	store := eventstore.New(es, eventstore.WithCodec(codec))
	ps := make([]projections.Projector, len(cfg.Projections))
	for i, n := range cfg.Projections {
		ps[i] = newProjector(n)
	}

	if cfg.Verify {
		drifts, err := projections.Verify(ctx, projections.VerifyConfig{
			Store: store, Codec: codec, Redis: rdb, Root: cfg.KeyRoot, Projectors: ps, Logger: logger,
		})
		if err != nil {
			return err
		}
		return reportDrift(stdout, drifts)
	}

	bar := newProgressBar(stderr, cfg.Quiet)
	start := time.Now()
	res, err := projections.Rebuild(ctx, projections.RebuildConfig{
		Store: store, Codec: codec, Redis: rdb, Root: cfg.KeyRoot, Projectors: ps, Logger: logger,
		Grace: cfg.Grace, Progress: bar.update,
		Switched: func(res projections.RebuildResult) {
			bar.done()
			fmt.Fprintf(stdout, "switched %s at %s: %d events in %s; deleting the old versions in %s\n",
				versions(cfg.Projections, res), res.Position, res.Events, time.Since(start).Round(time.Millisecond), cfg.Grace)
		},
	})
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted %d keys of old versions\n", res.Deleted)
	return nil
}

// checkProjected refuses, as a usage error, a verification of a projection
// that has no active version under cfg.KeyRoot (there is nothing to
// compare: a mistyped root, not drift), and a rebuild of one, unless
// cfg.Create: no serve
// reads such read models and nothing would ever delete them, so a
// mistyped --redis-key-root would leave a whole orphan copy in Redis.
func checkProjected(ctx context.Context, rdb redis.UniversalClient, cfg RebuildConfig) error {
	for _, name := range cfg.Projections {
		n, err := rdb.Exists(ctx, projections.ActiveKey(cfg.KeyRoot, name)).Result()
		if err != nil {
			return fmt.Errorf("read active version of projection %s: %w", name, err)
		}
		switch {
		case n > 0:
		case cfg.Verify:
			return usageErrorf("projection %s has no active version under --redis-key-root %q: nothing was ever projected there, so there is nothing to verify (wrong --redis-key-root, or the database of --redis-url?)", name, cfg.KeyRoot)
		default:
			return usageErrorf("projection %s has no active version under --redis-key-root %q: nothing was ever projected there, and no serve would read the rebuild (wrong --redis-key-root?); give --create to build read models where none exist yet, e.g. before the first serve start", name, cfg.KeyRoot)
		}
	}
	return nil
}

// versions says "devices 1 -> 2, jobs 1 -> 2".
func versions(names []string, res projections.RebuildResult) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %s -> %s", n, res.From[n], res.To[n])
		if res.Resumed[n] {
			parts[i] += " (resumed)"
		}
	}
	return strings.Join(parts, ", ")
}

// reportDrift prints the verification of each projection and returns
// errDrift if any differs.
func reportDrift(w io.Writer, drifts []projections.Drift) error {
	drifted := false
	for _, d := range drifts {
		if !d.Drifted() {
			fmt.Fprintf(w, "%s version %s at %s: %d keys, identical to a rebuild\n", d.Projection, d.Version, d.Position, d.Keys)
			continue
		}
		drifted = true
		fmt.Fprintf(w, "%s version %s at %s: %d keys, DRIFT: %d differ, %d only in the live version, %d only in the rebuild\n",
			d.Projection, d.Version, d.Position, d.Keys, d.Differ, d.OnlyLive, d.OnlyRebuilt)
		for _, s := range d.Samples {
			fmt.Fprintf(w, "  %s\n", s.Key)
			if s.Live != "" || s.Rebuilt != "" {
				fmt.Fprintf(w, "    live:    %s\n    rebuilt: %s\n", s.Live, s.Rebuilt)
			}
			for _, f := range s.Fields {
				fmt.Fprintf(w, "    %s: %s → %s\n", strconv.Quote(f.Field), f.Live, f.Rebuilt)
			}
		}
		if n := d.Differ + d.OnlyLive + d.OnlyRebuilt; n > len(d.Samples) {
			fmt.Fprintf(w, "  ... and %d more\n", n-len(d.Samples))
		}
	}
	if drifted {
		return errDrift
	}
	return nil
}

// progressBar shows a rebuild's progress on stderr: a bar redrawn in place
// when stderr is a terminal, else a plain line every progressLineEvery;
// nothing with --quiet.
type progressBar struct {
	w        io.Writer
	terminal bool
	last     time.Time
	drawn    bool
}

// progressLineEvery spaces the plain progress lines written when stderr is
// not a terminal (a log file, CI).
const progressLineEvery = 5 * time.Second

func newProgressBar(stderr io.Writer, quiet bool) *progressBar {
	if quiet {
		return &progressBar{}
	}
	if t := progressWriter(stderr); t != nil {
		return &progressBar{w: t, terminal: true}
	}
	return &progressBar{w: stderr}
}

// update draws p: the share of the log applied (by position: positions
// are byte offsets), the events applied, events/s and the time left at the
// rate so far.
func (b *progressBar) update(p projections.RebuildProgress) {
	if b.w == nil {
		return
	}
	now := time.Now()
	if !b.terminal && now.Sub(b.last) < progressLineEvery {
		return
	}
	b.last = now
	frac := 1.0
	if total := float64(p.Head.Commit) - float64(p.Start.Commit); total > 0 {
		frac = min(1, max(0, (float64(p.Position.Commit)-float64(p.Start.Commit))/total))
	}
	secs := p.Elapsed.Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.Events) / secs
	}
	left := "?"
	if frac > 0 && frac < 1 {
		left = time.Duration(float64(time.Second) * secs * (1 - frac) / frac).Round(time.Second).String()
	} else if frac >= 1 {
		left = "0s (catching up)"
	}
	if !b.terminal {
		fmt.Fprintf(b.w, "rebuild: %3.0f%%, %d events, %.0f events/s, about %s left\n", 100*frac, p.Events, rate, left)
		return
	}
	const width = 30
	n := int(frac * width)
	fmt.Fprintf(b.w, "\rrebuild [%s%s] %3.0f%%  %d events  %.0f events/s  %s left ",
		strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, p.Events, rate, left)
	b.drawn = true
}

// done ends the bar's line.
func (b *progressBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
		b.drawn = false
	}
}
