package projections

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// scratchPrefix starts the name of a verification's scratch version,
// followed by its start time in Unix seconds and a random suffix.
const scratchPrefix = "verify-"

// VerifyConfig configures Verify; its fields are RebuildConfig's.
type VerifyConfig struct {
	Store      *eventstore.Client
	Codec      *eventstore.Codec
	Redis      redis.UniversalClient
	Root       string
	Projectors []Projector
	Logger     *zap.Logger
	// MaxSamples bounds the drifting keys described per projection
	// (default 20); all are counted.
	MaxSamples int
	// Attempts bounds how often the comparison is retried when the live
	// projection moved while it was read (default 5).
	Attempts int
	// BatchSize is the most events one batch of the scratch build holds
	// (default 8192).
	BatchSize int
}

// Drift is the outcome of verifying one projection.
type Drift struct {
	Projection string
	Version    string              // the live version compared
	Position   eventstore.Position // both versions had applied the log up to here
	Keys       int                 // keys of the live version compared (the checkpoint left out)
	// OnlyLive and OnlyRebuilt count the keys one version has and the
	// other lacks; Differ those both have with another type, content or
	// expiry time.
	OnlyLive, OnlyRebuilt, Differ int
	// Samples describe the first drifting keys found, at most MaxSamples.
	Samples []KeyDrift
}

// Drifted reports whether the versions differ.
func (d Drift) Drifted() bool { return d.OnlyLive+d.OnlyRebuilt+d.Differ > 0 }

// KeyDrift is one key that differs, described so that the difference
// shows however long the values are. For a hash both versions have,
// Fields are the fields that differ, and Live and Rebuilt are empty unless
// the key's type or expiry differs too ("hash expires at ms" against
// "hash"). For any other key, Live and Rebuilt are its content in each
// version, as "type content [expires at ms]" ("(missing)" when absent),
// cut to a few hundred bytes around the first difference.
type KeyDrift struct {
	Key           string // relative to the version's prefix
	Live, Rebuilt string
	Fields        []FieldDrift
}

// FieldDrift is a hash field that differs: its value in each version, cut
// around the first difference, "(missing)" when the version lacks it.
type FieldDrift struct {
	Field         string
	Live, Rebuilt string
}

// Verify checks that each projection's live version is what a rebuild
// would make of the log: it builds a scratch version (named
// verify-{unix seconds}-{random}) from the start of $all up to exactly the
// live version's checkpoint, then compares the two key by key: type,
// content (string value; sorted-set members and scores; hash fields; set
// and list members) and absolute expiry time (PEXPIRETIME: the projectors
// compute expiries from event times, so they are deterministic), and
// deletes the scratch version.
//
// The live projection keeps moving while it is read: its checkpoint is
// read before and after the comparison, and a commit always moves it
// (every batch commits with its checkpoint in one MULTI/EXEC), so an
// unchanged checkpoint means the live keys read were those of one
// position. Otherwise the scratch version is caught up with the new
// checkpoint and the comparison done again, up to Attempts times. A key
// expiring between its two reads may show as drift: run it again.
func Verify(ctx context.Context, cfg VerifyConfig) ([]Drift, error) {
	if cfg.Store == nil || cfg.Codec == nil || cfg.Redis == nil || cfg.Root == "" || len(cfg.Projectors) == 0 || cfg.Logger == nil {
		return nil, errors.New("verify: Store, Codec, Redis, Root, Projectors and Logger are required")
	}
	if cfg.MaxSamples <= 0 {
		cfg.MaxSamples = 20
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 8192
	}
	var out []Drift
	for _, p := range cfg.Projectors {
		d, err := verifyOne(ctx, cfg, p)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	return out, nil
}

func verifyOne(ctx context.Context, cfg VerifyConfig, p Projector) (Drift, error) {
	name := p.Name()
	d := Drift{Projection: name}
	live, err := cfg.Redis.Get(ctx, ActiveKey(cfg.Root, name)).Result()
	if errors.Is(err, redis.Nil) {
		return d, fmt.Errorf("projection %s has no active version under %s: nothing projected yet (wrong --redis-key-root?)", name, cfg.Root)
	}
	if err != nil {
		return d, fmt.Errorf("read active version of projection %s: %w", name, err)
	}
	d.Version = live
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	scratch := scratchPrefix + strconv.FormatInt(time.Now().Unix(), 10) + "-" + hex.EncodeToString(rnd[:])
	w, err := NewWriter(cfg.Redis, cfg.Logger, cfg.Root, Target{Projector: p, Version: scratch})
	if err != nil {
		return d, err
	}
	defer func() {
		// Whatever happened, and even when interrupted: the scratch keys go.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := deleteVersion(dctx, cfg.Redis, Prefix(cfg.Root, name, scratch)); err != nil {
			cfg.Logger.Warn("verify: scratch version left behind (the next rebuild deletes it)", zap.String("version", scratch), zap.Error(err))
		}
	}()
	liveCP := CheckpointKey(cfg.Root, name, live)
	for range cfg.Attempts {
		at, err := readCheckpoint(ctx, cfg.Redis, liveCP)
		if err != nil {
			return d, err
		}
		if err := buildTo(ctx, cfg, w, at); err != nil {
			return d, fmt.Errorf("verify %s: build scratch version: %w", name, err)
		}
		got, err := compareVersions(ctx, cfg.Redis, Prefix(cfg.Root, name, live), Prefix(cfg.Root, name, scratch), cfg.MaxSamples)
		if err != nil {
			return d, fmt.Errorf("verify %s: %w", name, err)
		}
		after, err := readCheckpoint(ctx, cfg.Redis, liveCP)
		if err != nil {
			return d, err
		}
		if after != at {
			cfg.Logger.Debug("verify: the live projection moved while compared; again", zap.String("projection", name))
			continue
		}
		if v, err := cfg.Redis.Get(ctx, ActiveKey(cfg.Root, name)).Result(); err != nil || v != live {
			return d, fmt.Errorf("verify %s: the active version changed from %s while verifying (a rebuild?): run it again", name, live)
		}
		got.Projection, got.Version, got.Position = name, live, at
		return got, nil
	}
	return d, fmt.Errorf("verify %s: the live projection moved during each of %d comparisons; run it again when it is quieter", name, cfg.Attempts)
}

// errReached ends buildTo's subscription.
var errReached = errors.New("reached the position")

// buildTo applies the log with w up to exactly position until (the live
// checkpoint), from w's own checkpoint.
func buildTo(ctx context.Context, cfg VerifyConfig, w *Writer, until eventstore.Position) error {
	from, err := w.Open(ctx)
	if err != nil {
		return err
	}
	if from.Compare(until) >= 0 {
		return nil
	}
	var batch []Event
	bytes := 0 // of batch's events' data: bounded as the Runner bounds it
	write := func(ctx context.Context, through eventstore.Position) error {
		err := w.Write(ctx, batch, through)
		batch, bytes = nil, 0
		return err
	}
	err = cfg.Store.SubscribeAll(ctx, from, w.Filter(), eventstore.Handler{
		Event: func(ctx context.Context, rec eventstore.Recorded) error {
			if rec.Position.Compare(until) > 0 {
				return errReached
			}
			data, err := rec.Decode(cfg.Codec)
			switch {
			case errors.Is(err, eventstore.ErrUnknownEventType):
				// Skipped by the live Runner too.
			case err != nil:
				return fmt.Errorf("decode %s@%d (%s): %w", rec.Stream, rec.Revision, rec.Type, err)
			default:
				batch = append(batch, Event{Stream: rec.Stream, Revision: rec.Revision, Position: rec.Position,
					Type: rec.Type, Metadata: rec.Metadata, Data: data})
				bytes += len(rec.Data)
			}
			if len(batch) >= cfg.BatchSize || bytes >= DefaultBatchBytes {
				if err := write(ctx, rec.Position); err != nil {
					return err
				}
			}
			if rec.Position == until {
				return errReached
			}
			return nil
		},
		Checkpoint: func(_ context.Context, p eventstore.Position) error {
			if p.Compare(until) >= 0 {
				return errReached
			}
			return nil
		},
		// The live checkpoint is at most the head: caught up, every event
		// up to it was delivered.
		CaughtUp: func(context.Context) error { return errReached },
	})
	if !errors.Is(err, errReached) {
		return err
	}
	return write(ctx, until)
}

// compareVersions compares the keys under two prefixes, the checkpoint
// left out, reading a SCAN chunk of each at a time.
func compareVersions(ctx context.Context, rdb redis.UniversalClient, live, rebuilt string, maxSamples int) (Drift, error) {
	var d Drift
	note := func(rel string, l, r keyState) {
		if len(d.Samples) < maxSamples {
			d.Samples = append(d.Samples, keyDrift(rel, l, r))
		}
	}
	err := scanKeys(ctx, rdb, globEscape(live)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		rels := relKeys(keys, live)
		l, err := describeKeys(ctx, c, live, rels)
		if err != nil {
			return err
		}
		r, err := describeKeys(ctx, c, rebuilt, rels)
		if err != nil {
			return err
		}
		for i, rel := range rels {
			d.Keys++
			switch {
			case r[i].desc == missing:
				d.OnlyLive++
				note(rel, l[i], r[i])
			case l[i].desc != r[i].desc:
				d.Differ++
				note(rel, l[i], r[i])
			}
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	err = scanKeys(ctx, rdb, globEscape(rebuilt)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		rels := relKeys(keys, rebuilt)
		cmds := make([]*redis.IntCmd, len(rels))
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, rel := range rels {
				cmds[i] = p.Exists(ctx, live+rel)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("compare %s: %w", rebuilt, err)
		}
		for i, rel := range rels {
			if cmds[i].Val() == 0 {
				d.OnlyRebuilt++
				if len(d.Samples) < maxSamples {
					desc, err := describeKeys(ctx, c, rebuilt, []string{rel})
					if err != nil {
						return err
					}
					note(rel, keyState{desc: missing}, desc[0])
				}
			}
		}
		return nil
	})
	return d, err
}

// relKeys returns keys relative to prefix, the checkpoint left out (the
// two versions may stop at different server checkpoints of no event).
func relKeys(keys []string, prefix string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if rel := strings.TrimPrefix(k, prefix); rel != checkpointKey {
			out = append(out, rel)
		}
	}
	return out
}

// missing describes a key, or a hash field, that does not exist.
const missing = "(missing)"

// maxDescribed bounds a key's description in a KeyDrift: contents are
// compared in full, then cut for display.
const maxDescribed = 300

// keyState is a key as compared: desc is "type content" with " expires at
// {ms}" when it has an expiry, or missing. A hash also has its fields, and
// meta, its description without the content.
type keyState struct {
	desc string
	hash map[string]string
	meta string
}

// keyDrift describes key rel, which differs between the versions l and r.
func keyDrift(rel string, l, r keyState) KeyDrift {
	k := KeyDrift{Key: rel}
	if l.hash == nil || r.hash == nil {
		k.Live, k.Rebuilt = cutAround(l.desc, r.desc)
		return k
	}
	fields := make([]string, 0, len(l.hash)+len(r.hash))
	for f := range l.hash {
		fields = append(fields, f)
	}
	for f := range r.hash {
		if _, ok := l.hash[f]; !ok {
			fields = append(fields, f)
		}
	}
	slices.Sort(fields)
	for _, f := range fields {
		lv, lok := l.hash[f]
		rv, rok := r.hash[f]
		if lok && rok && lv == rv {
			continue
		}
		fd := FieldDrift{Field: f, Live: missing, Rebuilt: missing}
		if lok {
			fd.Live = strconv.Quote(lv)
		}
		if rok {
			fd.Rebuilt = strconv.Quote(rv)
		}
		fd.Live, fd.Rebuilt = cutAround(fd.Live, fd.Rebuilt)
		k.Fields = append(k.Fields, fd)
	}
	if l.meta != r.meta {
		k.Live, k.Rebuilt = l.meta, r.meta
	}
	return k
}

// cutAround cuts two different texts to at most maxDescribed bytes each,
// around the first byte where they differ (with a little before it for
// context), marking what was cut with "...".
func cutAround(a, b string) (string, string) {
	if len(a) <= maxDescribed && len(b) <= maxDescribed {
		return a, b
	}
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	start := max(0, i-maxDescribed/5)
	return cutFrom(a, start), cutFrom(b, start)
}

// cutFrom returns maxDescribed bytes of s from about byte start, on rune
// boundaries, with "..." where it cut.
func cutFrom(s string, start int) string {
	if start >= len(s) {
		start = max(0, len(s)-maxDescribed)
	}
	for start > 0 && !utf8.RuneStart(s[start]) {
		start--
	}
	end := min(len(s), start+maxDescribed)
	for end < len(s) && !utf8.RuneStart(s[end]) {
		end--
	}
	out := s[start:end]
	if start > 0 {
		out = "..." + out
	}
	if end < len(s) {
		out += "..."
	}
	return out
}

// describeKeys returns the state of each relative key under prefix.
func describeKeys(ctx context.Context, c redis.Cmdable, prefix string, rels []string) ([]keyState, error) {
	types := make([]*redis.StatusCmd, len(rels))
	exp := make([]*redis.DurationCmd, len(rels))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rel := range rels {
			types[i] = p.Type(ctx, prefix+rel)
			exp[i] = p.PExpireTime(ctx, prefix+rel)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("describe keys under %s: %w", prefix, err)
	}
	vals := make([]func() string, len(rels))
	hashes := make([]*redis.MapStringStringCmd, len(rels))
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, rel := range rels {
			k := prefix + rel
			switch types[i].Val() {
			case "string":
				cmd := p.Get(ctx, k)
				vals[i] = func() string { return strconv.Quote(cmd.Val()) }
			case "zset":
				cmd := p.ZRangeWithScores(ctx, k, 0, -1)
				vals[i] = func() string { return fmt.Sprint(cmd.Val()) }
			case "hash":
				cmd := p.HGetAll(ctx, k)
				hashes[i] = cmd
				vals[i] = func() string { return sortedMap(cmd.Val()) }
			case "set":
				cmd := p.SMembers(ctx, k)
				vals[i] = func() string { m := cmd.Val(); slices.Sort(m); return fmt.Sprint(m) }
			case "list":
				cmd := p.LRange(ctx, k, 0, -1)
				vals[i] = func() string { return fmt.Sprint(cmd.Val()) }
			default:
				vals[i] = func() string { return "" }
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("describe keys under %s: %w", prefix, err)
	}
	out := make([]keyState, len(rels))
	for i := range rels {
		t := types[i].Val()
		if t == "none" {
			out[i] = keyState{desc: missing}
			continue
		}
		expiry := ""
		if at := exp[i].Val(); at > 0 {
			expiry = " expires at " + strconv.FormatInt(at.Milliseconds(), 10)
		}
		out[i] = keyState{desc: t + " " + vals[i]() + expiry, meta: t + expiry}
		if hashes[i] != nil {
			out[i].hash = hashes[i].Val()
		}
	}
	return out, nil
}

func sortedMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Quote(k) + ":" + strconv.Quote(m[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// deleteVersion deletes every key under prefix.
func deleteVersion(ctx context.Context, rdb redis.UniversalClient, prefix string) error {
	return scanKeys(ctx, rdb, globEscape(prefix)+"*", func(ctx context.Context, c redis.Cmdable, keys []string) error {
		return c.Unlink(ctx, keys...).Err()
	})
}
