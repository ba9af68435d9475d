package store

// These tests live inside package store: they hold a request between its
// prefetch and its turn in the writer, which no caller of the API can do
// on purpose.

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
)

// prefetched returns an append of one event to stream, expecting no
// stream, whose state has been prefetched (it is not cached).
func prefetched(t *testing.T, s *Store, stream string) *request {
	t.Helper()
	r := &request{
		kind:   opAppend,
		stream: stream,
		exp:    Expected{Kind: ExpectNoStream},
		events: []Proposed{{ID: uuid.New(), Type: "E", JSON: true, Data: []byte("{}")}},
		done:   make(chan struct{}, 1),
	}
	s.w.prefetch(r)
	if !r.prefetched {
		t.Fatalf("%s: not prefetched", stream)
	}
	return r
}

func mustOpenInternal(t *testing.T, opts Options) *Store {
	t.Helper()
	opts.Dir = t.TempDir()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func appendOne(t *testing.T, s *Store, stream string, exp Expected) {
	t.Helper()
	ev := Proposed{ID: uuid.New(), Type: "E", JSON: true, Data: []byte("{}")}
	if _, err := s.Append(context.Background(), stream, exp, []Proposed{ev}); err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
}

// TestPrefetchedStateIsNotUsedOnceStale: the stream is written, and its
// state evicted from the cache, between the prefetch of an append and its
// turn in the writer. The prefetched "no stream" is stale then, and the
// append must be refused against the stream's actual revision.
func TestPrefetchedStateIsNotUsedOnceStale(t *testing.T) {
	s := mustOpenInternal(t, Options{StateCacheSize: 1})
	r := prefetched(t, s, "x")

	appendOne(t, s, "x", Expected{Kind: ExpectNoStream}) // x@0, cached
	appendOne(t, s, "y", Expected{Kind: ExpectNoStream}) // evicts x

	s.w.do(r)
	var wev *WrongExpectedVersionError
	if !errors.As(r.err, &wev) || wev.CurrentNoStream || wev.CurrentRevision != 0 {
		t.Fatalf("append on a stale prefetch: result %+v, error %v; want a wrong expected version, current revision 0", r.res, r.err)
	}
}

// TestPrefetchedStateIsUsedWhileCurrent: other streams written and
// evicted meanwhile do not matter, as long as no entry committed after the
// prefetch was evicted.
func TestPrefetchedStateIsUsedWhileCurrent(t *testing.T) {
	s := mustOpenInternal(t, Options{StateCacheSize: 2})
	appendOne(t, s, "a", Expected{Kind: ExpectNoStream})
	appendOne(t, s, "b", Expected{Kind: ExpectNoStream})
	appendOne(t, s, "c", Expected{Kind: ExpectNoStream}) // evicts a, committed before the prefetch
	r := prefetched(t, s, "x")
	if s.states.evictedAfter(r.preSeq) {
		t.Fatalf("evictions before the prefetch make it stale")
	}
	appendOne(t, s, "b", Expected{Kind: ExpectRevision}) // b stays cached: nothing evicted

	s.w.do(r)
	if r.err != nil || r.res.LastRevision != 0 {
		t.Fatalf("append on a current prefetch: result %+v, error %v; want revision 0", r.res, r.err)
	}
	if s.states.evictedAfter(r.preSeq) {
		t.Fatalf("test premise: an entry committed after the prefetch was evicted")
	}
}
