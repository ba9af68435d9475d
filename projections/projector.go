package projections

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// Event is one decoded event as projectors see it.
type Event struct {
	Stream   string
	Revision uint64
	Position eventstore.Position
	Type     string
	Metadata eventstore.Metadata // OccurredAt is the time read models show and retention counts from
	Data     any                 // the value the codec registered for Type, e.g. device.Registered
}

// Projector turns events into changes to one projection's keys. The Writer
// calls it from one goroutine at a time.
//
// A projector may keep small, hot state in memory (templates and set
// definitions, say) and must then be able to rebuild it from its keys in
// Load: Apply changes it before the batch is committed, so after a failed
// batch the Writer calls Load again rather than trusting it.
type Projector interface {
	// Name is the projection's name in key names (see the package
	// documentation): lowercase letters, digits and dashes.
	Name() string
	// StreamPrefixes lists the stream-name prefixes of the events it
	// applies (e.g. "device-"); the Runner's server-side filter is their
	// union.
	StreamPrefixes() []string
	// Load rebuilds the in-memory state from the projection's keys.
	Load(ctx context.Context, r Reader) error
	// Apply appends to ops the changes events make, in order, each event
	// seeing the effect of the earlier ones. It may read the projection's
	// keys through r: the reads happen inside the batch's WATCH, so they see
	// exactly the state the batch commits on top of. Apply must not keep
	// events or ops after it returns.
	Apply(ctx context.Context, r Reader, events []Event, ops []Op) ([]Op, error)
}

// Reader reads the keys of one projection version; keys given to it are
// relative to that version's prefix, as in Op.Key.
//
// The Writer applies a batch while the previous one is still being
// committed; its Readers wait for that commit before reading a key the
// previous batch writes, so a projector always reads the state its batch
// goes on top of. Reads through Redis() get no such care: use them only
// for keys no batch of the projector writes.
type Reader struct {
	c      redis.Cmdable
	prefix string
	// settle, if set, waits for the commit in flight when it writes one
	// of the relative keys given.
	settle func(ctx context.Context, keys []string) error
}

// NewReader returns a Reader of the keys under prefix (a Prefix result):
// what the Writer hands to projectors, and what tests use to give a
// projector a state.
func NewReader(c redis.Cmdable, prefix string) Reader { return Reader{c: c, prefix: prefix} }

// Key returns the full Redis key of the relative key rel.
func (r Reader) Key(rel string) string { return r.prefix + rel }

// Redis returns the connection the Reader reads through, for reads the
// helpers below do not cover; prefix keys with Key.
func (r Reader) Redis() redis.Cmdable { return r.c }

// MGet returns the string values of the keys that exist among keys, by
// relative key, reading in pipelined chunks.
func (r Reader) MGet(ctx context.Context, keys []string) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	if r.settle != nil {
		if err := r.settle(ctx, keys); err != nil {
			return nil, err
		}
	}
	var cmds []*redis.SliceCmd
	var chunks [][]string
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for rest := keys; len(rest) > 0; {
			n := min(len(rest), argsPerCommand)
			full := make([]string, n)
			for i, k := range rest[:n] {
				full[i] = r.prefix + k
			}
			cmds = append(cmds, p.MGet(ctx, full...))
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mget %d keys under %s: %w", len(keys), r.prefix, err)
	}
	for i, cmd := range cmds {
		for j, v := range cmd.Val() {
			if s, ok := v.(string); ok {
				out[chunks[i][j]] = s
			}
		}
	}
	return out, nil
}

// MembersAfter returns at most count members of the sorted set key (whose
// scores are all 0) after after, in lexical order: "" starts at the first.
func (r Reader) MembersAfter(ctx context.Context, key, after string, count int64) ([]string, error) {
	if r.settle != nil {
		if err := r.settle(ctx, []string{key}); err != nil {
			return nil, err
		}
	}
	start := "-"
	if after != "" {
		start = "(" + after
	}
	ms, err := r.c.ZRangeArgs(ctx, redis.ZRangeArgs{Key: r.prefix + key, Start: start, Stop: "+", ByLex: true, Count: count}).Result()
	if err != nil {
		return nil, fmt.Errorf("zrange %s%s: %w", r.prefix, key, err)
	}
	return ms, nil
}

// walkChunk is how many members walkDocs reads at a time.
const walkChunk = 5000

// walkDocs calls fn with the members of the sorted set index (scores all
// 0), in lexical order, walkChunk at a time, each chunk with the
// documents, by member, of those that have one under keyOf(member). It
// reads the next chunk while fn runs on the current one, so fn must not
// read through r; no read is left running when it returns. fn's first
// error ends the walk and is returned as is.
func walkDocs(ctx context.Context, r Reader, index string, keyOf func(string) string, fn func(ids []string, docs map[string]string) error) error {
	type chunk struct {
		ids  []string
		docs map[string]string // by member
		err  error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fetch := func(after string) <-chan chunk {
		out := make(chan chunk, 1)
		go func() {
			ids, err := r.MembersAfter(ctx, index, after, walkChunk)
			if err != nil {
				out <- chunk{err: err}
				return
			}
			keys := make([]string, len(ids))
			for i, id := range ids {
				keys[i] = keyOf(id)
			}
			byKey, err := r.MGet(ctx, keys)
			docs := make(map[string]string, len(byKey))
			for i, id := range ids {
				if doc, ok := byKey[keys[i]]; ok {
					docs[id] = doc
				}
			}
			out <- chunk{ids: ids, docs: docs, err: err}
		}()
		return out
	}
	next := fetch("")
	defer func() {
		if next != nil {
			cancel()
			<-next // the read in flight ends before the walk returns
		}
	}()
	for {
		c := <-next
		next = nil
		if c.err != nil {
			return c.err
		}
		if len(c.ids) == walkChunk {
			next = fetch(c.ids[len(c.ids)-1])
		}
		if err := fn(c.ids, c.docs); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
	}
}

// Members returns every member of the sorted set key, in order.
func (r Reader) Members(ctx context.Context, key string) ([]string, error) {
	if r.settle != nil {
		if err := r.settle(ctx, []string{key}); err != nil {
			return nil, err
		}
	}
	ms, err := r.c.ZRange(ctx, r.prefix+key, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("zrange %s%s: %w", r.prefix, key, err)
	}
	return ms, nil
}
