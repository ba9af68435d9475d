package commands

import (
	"hash/maphash"
	"sync"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// snapshot is an aggregate's state at a revision of its stream. Snapshots
// of the device aggregates are immutable once built: the cache hands the
// same one to concurrent commands, and each builds a new one for what it
// appends. A job's state is mutable (job.Evolve changes it in place, so a
// result costs O(1) at a million devices): its snapshots never enter the
// cache; the job's worker owns them, one goroutine at a time.
type snapshot struct {
	state  any  // the aggregate's state type S
	exists bool // the stream has events; rev and pos are meaningful
	rev    uint64
	pos    eventstore.Position // of the event at rev
	// marks are the command IDs of the stream's latest commands, newest
	// last, with the position of each one's last event: a retried command
	// is answered from them without deciding again.
	marks []mark
}

type mark struct {
	commandID string
	pos       eventstore.Position
}

// maxMarks is how many recent commands a snapshot remembers per stream.
// Retries come soon after the original, so a few are enough.
const maxMarks = 8

// expected is the revision an append decided on s must expect.
func (s *snapshot) expected() eventstore.Revision {
	if !s.exists {
		return eventstore.NoStream()
	}
	return eventstore.Exact(s.rev)
}

// recorded returns the position of command id's events if the stream has
// them among its latest commands.
func (s *snapshot) recorded(id string) (eventstore.Position, bool) {
	for i := len(s.marks) - 1; i >= 0; i-- {
		if s.marks[i].commandID == id {
			return s.marks[i].pos, true
		}
	}
	return eventstore.Position{}, false
}

// mark records that command id's events end at pos. It copies the marks:
// the slice may be shared with the snapshot s was built from.
func (s *snapshot) mark(id string, pos eventstore.Position) {
	if id == "" {
		return
	}
	n := len(s.marks)
	if n > 0 && s.marks[n-1].commandID == id {
		m := make([]mark, n)
		copy(m, s.marks)
		m[n-1].pos = pos
		s.marks = m
		return
	}
	keep := s.marks
	if n >= maxMarks {
		keep = keep[n-maxMarks+1:]
	}
	m := make([]mark, len(keep), len(keep)+1)
	copy(m, keep)
	s.marks = append(m, mark{commandID: id, pos: pos})
}

// cache keeps snapshots by stream name, bounded: when a shard is full an
// arbitrary entry is dropped (a miss only costs a read of the stream).
type cache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 64

type cacheShard struct {
	mu sync.Mutex
	m  map[string]*snapshot
}

func newCache(size int) *cache {
	c := &cache{seed: maphash.MakeSeed(), perShard: (size + cacheShards - 1) / cacheShards}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*snapshot)
	}
	return c
}

func (c *cache) shard(stream string) *cacheShard {
	return &c.shards[maphash.String(c.seed, stream)%cacheShards]
}

// get returns the cached snapshot of stream, or nil.
func (c *cache) get(stream string) *snapshot {
	if c.perShard == 0 {
		return nil
	}
	sh := c.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[stream]
}

// put caches s unless a snapshot at a later revision is cached already.
func (c *cache) put(stream string, s *snapshot) {
	if c.perShard == 0 || !s.exists {
		return
	}
	sh := c.shard(stream)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[stream]; ok {
		if old.rev > s.rev {
			return
		}
	} else if len(sh.m) >= c.perShard {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[stream] = s
}
