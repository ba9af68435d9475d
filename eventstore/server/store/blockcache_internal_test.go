package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/google/uuid"
)

// TestBlockCacheKeepsBlocks: Pebble reserves its memtables' memory inside
// the block cache, so a cache sized without them keeps no block at all once
// the memtables have grown to their full size and one of them waits to be
// released (flushed while an iterator still reads it): every lookup of a
// stream's state then reads the file system. Here repeated lookups of
// flushed states must be served from the cache.
func TestBlockCacheKeepsBlocks(t *testing.T) {
	s := mustOpenInternal(t, Options{StateCacheSize: 1})
	appendTo := func(stream string) {
		ev := Proposed{ID: uuid.New(), Type: "E", JSON: true, Data: []byte("{}")}
		if _, err := s.Append(context.Background(), stream, Expected{Kind: ExpectAny}, []Proposed{ev}); err != nil {
			t.Fatal(err)
		}
	}
	// Each memtable that fills up doubles the next one's size, up to
	// memTableSize: fill them with keys no reader of the store looks at.
	junk := make([]byte, 1<<20)
	for i := range 3 * memTableSize >> 20 {
		if err := s.db.Set(fmt.Appendf(nil, "zz-test-%d", i), junk, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	it, err := s.db.NewIter(nil) // keeps the current memtable once flushed
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for i := range 200 {
		appendTo(fmt.Sprintf("s-%d", i))
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	before := s.db.Metrics().BlockCache
	for range 3 {
		for i := range 200 {
			if _, err := s.loadState(fmt.Sprintf("s-%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := s.db.Metrics().BlockCache
	hits, misses := m.Hits-before.Hits, m.Misses-before.Misses
	if m.Count == 0 || hits < 2*misses {
		t.Errorf("600 lookups of 200 flushed states: %d blocks cached, %d hits, %d misses; want blocks kept and mostly hits", m.Count, hits, misses)
	}
}
