package store_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// benchPayload is a typical small JSON event body.
var benchPayload = []byte(`{"jobId":"7f1c0f7e-2f0b-4b8e-9a55-0c7d3c1f9a10","deviceId":"device-000123","status":"succeeded","at":"2026-11-01T12:00:00Z"}`)

// storeKinds runs a benchmark against a disk store and the in-memory
// baseline, in the same run so that their ratio is meaningful.
func storeKinds(b *testing.B, fn func(b *testing.B, s *store.Store)) {
	for _, kind := range []struct {
		name     string
		inMemory bool
	}{{"disk", false}, {"mem", true}} {
		b.Run(kind.name, func(b *testing.B) {
			fn(b, MustOpen(b, store.Options{InMemory: kind.inMemory}))
		})
	}
}

func benchEvents(n int) []store.Proposed {
	events := make([]store.Proposed, n)
	for i := range events {
		events[i] = store.Proposed{ID: uuid.New(), Type: "DeviceOperationSucceeded", JSON: true, Data: benchPayload}
	}
	return events
}

// parallelAppend runs workers goroutines that share b.N appends of size
// events each, every worker on its own stream with exact expected revisions.
func parallelAppend(b *testing.B, s *store.Store, workers, size int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("bench-%d-%s", w, uuid.NewString())
			exp := store.Expected{Kind: store.ExpectNoStream}
			events := benchEvents(size)
			for next.Add(1) <= int64(b.N) {
				for i := range events {
					events[i].ID = uuid.New() // a retry would be idempotent, not a write
				}
				res, err := s.Append(context.Background(), stream, exp, events)
				if err != nil {
					b.Error(err)
					return
				}
				exp = store.Expected{Kind: store.ExpectRevision, Revision: res.LastRevision}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendSingleConcurrent: 32 goroutines appending one event at a
// time; group commit is what lets this beat one fsync per append.
func BenchmarkAppendSingleConcurrent(b *testing.B) {
	storeKinds(b, func(b *testing.B, s *store.Store) { parallelAppend(b, s, 32, 1) })
}

// BenchmarkAppendBatch100: 4 goroutines appending 100-event batches; one op
// is one batch.
func BenchmarkAppendBatch100(b *testing.B) {
	storeKinds(b, func(b *testing.B, s *store.Store) { parallelAppend(b, s, 4, 100) })
}

// BenchmarkReadAll reads $all forwards; one op is one record.
func BenchmarkReadAll(b *testing.B) {
	storeKinds(b, func(b *testing.B, s *store.Store) {
		const prefill = 100_000
		events := benchEvents(1000)
		for i := 0; i < prefill; i += len(events) {
			for j := range events {
				events[j].ID = uuid.New()
			}
			MustAppend(b, s, fmt.Sprintf("read-%d", i%7), any_, events...)
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		read := 0
		var sink int
		for read < b.N {
			err := s.ReadAll(ctx, 0, false, func(r store.Record) bool {
				sink += len(r.Data)
				read++
				return read < b.N
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
		_ = sink
	})
}

// BenchmarkAppendNewStreams is the store's side of a device import: 64
// goroutines each append two events (a registration and its key) to a new
// stream of its own, expecting no stream. One op is one append.
func BenchmarkAppendNewStreams(b *testing.B) {
	storeKinds(b, func(b *testing.B, s *store.Store) {
		meta := []byte(`{"commandId":"bench-import","correlationId":"bench-import","causationId":"bench-import","actor":"bench","occurredAt":"2026-11-25T10:00:00Z"}`)
		prefix := uuid.NewString()[:8]
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ReportAllocs()
		b.ResetTimer()
		for range 64 {
			wg.Go(func() {
				events := benchEvents(2)
				for i := range events {
					events[i].Metadata = meta
				}
				for {
					i := next.Add(1) - 1
					if i >= int64(b.N) {
						return
					}
					for j := range events {
						events[j].ID = uuid.New()
					}
					stream := fmt.Sprintf("device-%s-%08d", prefix, i)
					if _, err := s.Append(context.Background(), stream, noStream, events); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	})
}
