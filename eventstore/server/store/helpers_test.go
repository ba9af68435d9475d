package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// Expectation shorthands.
var (
	any_     = store.Expected{Kind: store.ExpectAny}
	noStream = store.Expected{Kind: store.ExpectNoStream}
	exists   = store.Expected{Kind: store.ExpectStreamExists}
)

func rev(r uint64) store.Expected { return store.Expected{Kind: store.ExpectRevision, Revision: r} }

// MustOpen opens a store in a fresh temporary directory (or in memory) and
// closes it when the test ends.
func MustOpen(tb testing.TB, opts store.Options) *store.Store {
	tb.Helper()
	if !opts.InMemory && opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	s, err := store.Open(opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

// MustAppend appends and fails the test on error.
func MustAppend(tb testing.TB, s *store.Store, stream string, exp store.Expected, events ...store.Proposed) store.AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), stream, exp, events)
	if err != nil {
		tb.Fatalf("Append(%q, %v): %v", stream, exp, err)
	}
	return res
}

// MustDelete soft-deletes and fails the test on error.
func MustDelete(tb testing.TB, s *store.Store, stream string, exp store.Expected) store.DeleteResult {
	tb.Helper()
	res, err := s.Delete(context.Background(), stream, exp)
	if err != nil {
		tb.Fatalf("Delete(%q, %v): %v", stream, exp, err)
	}
	return res
}

// MustTombstone tombstones and fails the test on error.
func MustTombstone(tb testing.TB, s *store.Store, stream string, exp store.Expected) store.DeleteResult {
	tb.Helper()
	res, err := s.Tombstone(context.Background(), stream, exp)
	if err != nil {
		tb.Fatalf("Tombstone(%q, %v): %v", stream, exp, err)
	}
	return res
}

// ev builds a JSON event with a fresh ID.
func ev(typ, data string) store.Proposed {
	return store.Proposed{ID: uuid.New(), Type: typ, JSON: true, Data: []byte(data)}
}

// evID builds an event with a fixed ID, for idempotency cases.
func evID(id byte, typ string) store.Proposed {
	return store.Proposed{ID: [16]byte{15: id, 0: 0xee}, Type: typ, Data: []byte(typ)}
}

// seen is the part of a Record most tests compare.
type seen struct {
	Rev  uint64
	Type string
	Data string
}

// readStream reads a whole stream and copies what it saw.
func readStream(tb testing.TB, s *store.Store, stream string, from uint64, backwards bool) ([]seen, error) {
	tb.Helper()
	var out []seen
	err := s.ReadStream(context.Background(), stream, from, backwards, func(r store.Record) bool {
		out = append(out, seen{r.Revision, r.Type, string(r.Data)})
		return true
	})
	return out, err
}

// MustReadStream reads a whole stream and fails the test on error.
func MustReadStream(tb testing.TB, s *store.Store, stream string, from uint64, backwards bool) []seen {
	tb.Helper()
	out, err := readStream(tb, s, stream, from, backwards)
	if err != nil {
		tb.Fatalf("ReadStream(%q, %d, %v): %v", stream, from, backwards, err)
	}
	return out
}

// MustReadAll reads $all, copying every record.
func MustReadAll(tb testing.TB, s *store.Store, from uint64, backwards bool) []store.Record {
	tb.Helper()
	var out []store.Record
	err := s.ReadAll(context.Background(), from, backwards, func(r store.Record) bool {
		r.Data = append([]byte(nil), r.Data...)
		r.Metadata = append([]byte(nil), r.Metadata...)
		out = append(out, r)
		return true
	})
	if err != nil {
		tb.Fatalf("ReadAll(%d, %v): %v", from, backwards, err)
	}
	return out
}

// checkErr reports a mismatch between got and want: typed store errors are
// compared field by field, sentinels with errors.Is, nil with nil.
func checkErr(got, want error) string {
	switch w := want.(type) {
	case nil:
		if got != nil {
			return fmt.Sprintf("unexpected error: %v", got)
		}
		return ""
	case *store.WrongExpectedVersionError:
		var g *store.WrongExpectedVersionError
		if !errors.As(got, &g) {
			return fmt.Sprintf("error %v, want %v", got, want)
		}
		return cmp.Diff(w, g)
	case *store.StreamDeletedError:
		var g *store.StreamDeletedError
		if !errors.As(got, &g) {
			return fmt.Sprintf("error %v, want %v", got, want)
		}
		return cmp.Diff(w, g)
	default:
		if !errors.Is(got, want) {
			return fmt.Sprintf("error %v, want %v", got, want)
		}
		return ""
	}
}

// fakeClock is a settable clock for $maxAge cases.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
