package store_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// TestLargeStreamReadsInBoundedMemory reads a long stream forwards and
// backwards and $all, checking that allocations do not grow with the number
// of records (the read streams through iterators).
func TestLargeStreamReadsInBoundedMemory(t *testing.T) {
	total := 200_000
	if testing.Short() || raceEnabled {
		total = 20_000
	}
	s := MustOpen(t, store.Options{})
	const batch = 1000
	data := []byte(`{"device":"d-000000","status":"succeeded"}`)
	events := make([]store.Proposed, batch)
	for i := 0; i < total; i += batch {
		for j := range events {
			events[j] = ev("DeviceOperationSucceeded", "")
			events[j].Data = data
		}
		MustAppend(t, s, "big", any_, events...)
	}

	cases := []struct {
		name string
		read func(fn store.ReadFunc) error
	}{
		{"stream forwards", func(fn store.ReadFunc) error {
			return s.ReadStream(context.Background(), "big", 0, false, fn)
		}},
		{"stream backwards", func(fn store.ReadFunc) error {
			return s.ReadStream(context.Background(), "big", store.End, true, fn)
		}},
		{"all forwards", func(fn store.ReadFunc) error {
			return s.ReadAll(context.Background(), 0, false, fn)
		}},
		{"all backwards", func(fn store.ReadFunc) error {
			return s.ReadAll(context.Background(), store.End, true, fn)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			n := 0
			var prev uint64
			err := tc.read(func(r store.Record) bool {
				if n > 0 && (r.Position > prev) != (tc.name == "stream forwards" || tc.name == "all forwards") {
					t.Errorf("record %d at position %d after %d: out of order", n, r.Position, prev)
					return false
				}
				prev = r.Position
				n++
				return true
			})
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if n != total {
				t.Fatalf("read %d records, want %d", n, total)
			}
			mallocs := after.Mallocs - before.Mallocs
			bytes := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d records: %d allocations, %d bytes allocated", n, mallocs, bytes)
			// Per-record allocation would be >= total; allow a little for
			// iterators and Pebble's block handling. Under -race Pebble
			// checks invariants and allocates per step, so only count.
			if !raceEnabled && mallocs > uint64(total/10) {
				t.Errorf("%d allocations for %d records: reads allocate per record", mallocs, total)
			}
		})
	}
}
