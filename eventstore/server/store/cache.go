package store

import "sync"

// stateCache is a bounded LRU of committed stream states. Only the writer
// goroutine inserts, and only states it has committed, so a cached state is
// never older than Pebble's; readers look up and fall back to Pebble on a
// miss without inserting (a reader's insert could race a commit and
// resurrect an older state).
type stateCache struct {
	mu    sync.Mutex
	cap   int
	items map[string]*cacheEntry
	head  cacheEntry // sentinel of the recency list: head.next is the newest
	// evictedSeq is the highest seq of an evicted entry (see
	// writer.prefetch).
	evictedSeq uint64
}

type cacheEntry struct {
	name string
	st   streamState
	// seq is the writer seq of the request that committed st, 0 when st
	// was read back from Pebble.
	seq        uint64
	prev, next *cacheEntry
}

func newStateCache(capacity int) *stateCache {
	c := &stateCache{cap: capacity, items: make(map[string]*cacheEntry, min(capacity, 1<<16))}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// get returns a copy of the cached state of name.
func (c *stateCache) get(name string) (streamState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[name]
	if !ok {
		return streamState{}, false
	}
	c.moveToFront(e)
	return e.st, true
}

// contains reports whether name is cached, without making it recent.
func (c *stateCache) contains(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.items[name]
	return ok
}

// evictedAfter reports whether an entry committed by a request of a seq
// above seq has been evicted.
func (c *stateCache) evictedAfter(seq uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evictedSeq > seq
}

// put stores st as the committed state of name, committed by the request
// of writer seq seq (0: read back from Pebble), evicting the least recently
// used entry when full (its state stays in Pebble).
func (c *stateCache) put(name string, st *streamState, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[name]; ok {
		e.st, e.seq = *st, max(e.seq, seq)
		c.moveToFront(e)
		return
	}
	var e *cacheEntry
	if len(c.items) >= c.cap {
		// Reuse the evicted entry: a steady stream of new names then
		// allocates nothing here.
		e = c.head.prev
		c.unlink(e)
		delete(c.items, e.name)
		c.evictedSeq = max(c.evictedSeq, e.seq)
	} else {
		e = &cacheEntry{}
	}
	e.name, e.st, e.seq = name, *st, seq
	c.items[name] = e
	c.linkFront(e)
}

func (c *stateCache) moveToFront(e *cacheEntry) {
	if c.head.next == e {
		return
	}
	c.unlink(e)
	c.linkFront(e)
}

func (c *stateCache) unlink(e *cacheEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (c *stateCache) linkFront(e *cacheEntry) {
	e.prev = &c.head
	e.next = c.head.next
	c.head.next.prev = e
	c.head.next = e
}
