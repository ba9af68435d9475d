package stress_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// Every benchmark here but AppendNewStreams counts events, not calls: b.N is
// the number of events, so `-benchtime=200000x` means 200,000 events, and
// each reports events/s. AppendNewStreams counts appends (appends/s).
// Each runs its baseline as a sibling sub-benchmark in the same run, because
// absolute figures on these shared machines mean little across runs.

// storeMode is a way to run the embedded server.
type storeMode struct {
	name     string
	inMemory bool
}

// storeModes are the durable store and its in-memory twin: the same gRPC
// server and client with no disk, i.e. the ceiling the durable store is
// measured against.
func storeModes() []storeMode {
	return []storeMode{{name: "disk"}, {name: "mem", inMemory: true}}
}

func (m storeMode) options(tb testing.TB) server.Options {
	if m.inMemory {
		return server.Options{InMemory: true}
	}
	return server.Options{Dir: tb.TempDir()}
}

func reportEventsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchPayload is shared by all benchmark events: building JSON per event
// would measure fmt, not the store.
func benchPayload() []byte { return payload("bench", 0) }

// appendEvents appends b.N events from `writers` goroutines, `batch` events
// per append (the last one may be shorter), each writer to its own stream
// with expected revision Any.
func appendEvents(b *testing.B, c *esdb.Client, writers, batch int) {
	data := benchPayload()
	var next atomic.Int64
	total := int64(b.N)
	var failed atomic.Bool
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			stream := fmt.Sprintf("bench-w%d-%s", w, uuid.NewString()[:8])
			events := make([]esdb.EventData, 0, batch)
			for !failed.Load() {
				end := next.Add(int64(batch))
				start := end - int64(batch)
				if start >= total {
					return
				}
				n := int(min(end, total) - start)
				events = events[:0]
				for range n {
					events = append(events, esdb.EventData{EventID: uuid.New(), EventType: "BenchEvent", ContentType: esdb.ContentTypeJson, Data: data})
				}
				if _, err := c.AppendToStream(context.Background(), stream, esdb.AppendToStreamOptions{}, events...); err != nil {
					failed.Store(true)
					b.Errorf("writer %d: append: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	reportEventsPerSec(b)
}

// BenchmarkAppendSingle32Writers: 32 goroutines sharing one client append
// one event per call. "fsync-loop" is what a store that fsyncs each append on
// its own tops out at; group commit must beat it by a wide margin and get
// close (>= 75%) to "mem".
func BenchmarkAppendSingle32Writers(b *testing.B) {
	for _, m := range storeModes() {
		b.Run(m.name, func(b *testing.B) {
			srv := MustStartServer(b, m.options(b))
			appendEvents(b, MustClient(b, srv.Addr()), 32, 1)
		})
	}
	b.Run("fsync-loop", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "fsync-loop"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 256)
		b.ResetTimer()
		for range b.N {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportEventsPerSec(b)
	})
}

// BenchmarkAppendSingleFewWriters: 1 and 4 goroutines appending one event
// per call on disk, where each append waits for its own sync: what a quiet
// service sees (latency, not throughput, bounds it).
func BenchmarkAppendSingleFewWriters(b *testing.B) {
	for _, writers := range []int{1, 4} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			srv := MustStartServer(b, storeModes()[0].options(b))
			appendEvents(b, MustClient(b, srv.Addr()), writers, 1)
		})
	}
}

// BenchmarkAppendBatch100x4Writers: 4 goroutines append 100 events per call.
func BenchmarkAppendBatch100x4Writers(b *testing.B) {
	for _, m := range storeModes() {
		b.Run(m.name, func(b *testing.B) {
			srv := MustStartServer(b, m.options(b))
			appendEvents(b, MustClient(b, srv.Addr()), 4, 100)
		})
	}
}

// BenchmarkAppendNewStreams64Writers is the shape of a device import:
// 64 goroutines sharing one client each append to a stream of its own,
// never written before, expecting no stream; events=2 is a registration
// that also records the device's key in the same append. b.N counts
// appends (streams) here, not events, and the figure is appends/s.
func BenchmarkAppendNewStreams64Writers(b *testing.B) {
	for _, events := range []int{1, 2} {
		for _, m := range storeModes() {
			b.Run(fmt.Sprintf("events=%d/%s", events, m.name), func(b *testing.B) {
				srv := MustStartServer(b, m.options(b))
				appendNewStreams(b, MustClient(b, srv.Addr()), 64, events)
			})
		}
	}
}

// appendNewStreams appends to b.N new streams from `writers` goroutines,
// `events` events per append, each with the user metadata fleetjobs
// writes.
func appendNewStreams(b *testing.B, c *esdb.Client, writers, events int) {
	data := benchPayload()
	meta := []byte(`{"commandId":"bench-import","correlationId":"bench-import","causationId":"bench-import","actor":"bench","occurredAt":"2026-11-25T10:00:00Z"}`)
	prefix := uuid.NewString()[:8]
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			batch := make([]esdb.EventData, events)
			for !failed.Load() {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				for j := range batch {
					batch[j] = esdb.EventData{EventID: uuid.New(), EventType: "BenchEvent", ContentType: esdb.ContentTypeJson, Data: data, Metadata: meta}
				}
				stream := fmt.Sprintf("device-%s-%08d", prefix, i)
				if _, err := c.AppendToStream(context.Background(), stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, batch...); err != nil {
					failed.Store(true)
					b.Errorf("writer %d: append to %s: %v", w, stream, err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// filledStore is a server whose log is grown on demand and kept across the
// b.N ramp-up runs of one sub-benchmark, so that each run only pays for the
// events it adds.
type filledStore struct {
	client *esdb.Client
	count  int
}

// ensure grows the log to at least n events, in 500-event appends from 4
// writers (the fastest way in; not timed).
func (f *filledStore) ensure(b *testing.B, n int) {
	b.Helper()
	if f.count >= n {
		return
	}
	data := benchPayload()
	missing := int64(n - f.count)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := range 4 {
		wg.Go(func() {
			stream := fmt.Sprintf("fill-%d-%s", w, uuid.NewString()[:8])
			for !failed.Load() {
				end := next.Add(500)
				start := end - 500
				if start >= missing {
					return
				}
				events := make([]esdb.EventData, min(end, missing)-start)
				for i := range events {
					events[i] = esdb.EventData{EventID: uuid.New(), EventType: "FillEvent", ContentType: esdb.ContentTypeJson, Data: data}
				}
				if _, err := f.client.AppendToStream(context.Background(), stream, esdb.AppendToStreamOptions{}, events...); err != nil {
					failed.Store(true)
					b.Errorf("fill: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		b.FailNow()
	}
	f.count = n
}

// benchFilled runs fn in a sub-benchmark per store mode, over a log that holds
// at least b.N events. The server lives as long as parent.
func benchFilled(parent *testing.B, fn func(b *testing.B, c *esdb.Client)) {
	for _, m := range storeModes() {
		var fs *filledStore
		parent.Run(m.name, func(b *testing.B) {
			if fs == nil {
				fs = mustStartFilled(b, parent, m)
			}
			b.StopTimer()
			fs.ensure(b, b.N)
			b.StartTimer()
			fn(b, fs.client)
			b.StopTimer()
			reportEventsPerSec(b)
		})
	}
}

// mustStartFilled starts a server and its client whose lifetime is owner's
// (the parent benchmark), while failures are reported on b, the goroutine
// that runs.
func mustStartFilled(b, owner *testing.B, m storeMode) *filledStore {
	b.Helper()
	opts := server.Options{Listen: "127.0.0.1:0", InMemory: m.inMemory}
	if !m.inMemory {
		dir, err := os.MkdirTemp("", "stress-bench-")
		if err != nil {
			b.Fatal(err)
		}
		owner.Cleanup(func() { _ = os.RemoveAll(dir) })
		opts.Dir = dir
	}
	srv, err := server.Start(context.Background(), opts)
	if err != nil {
		b.Fatalf("start server: %v", err)
	}
	owner.Cleanup(func() { _ = srv.Close() })
	c, err := dialClient(srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	owner.Cleanup(func() { _ = c.Close() })
	return &filledStore{client: c}
}

// BenchmarkReadAllForwards reads b.N events of $all forwards in one read.
func BenchmarkReadAllForwards(b *testing.B) {
	benchFilled(b, func(b *testing.B, c *esdb.Client) {
		rs, err := c.ReadAll(context.Background(), esdb.ReadAllOptions{From: esdb.Start{}}, uint64(b.N))
		if err != nil {
			b.Fatal(err)
		}
		defer rs.Close()
		n := 0
		for {
			_, err := rs.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatalf("after %d events: %v", n, err)
			}
			n++
		}
		if n != b.N {
			b.Fatalf("read %d events, want %d", n, b.N)
		}
	})
}

// BenchmarkSubscribeAllCatchUp subscribes to $all from the start and stops
// after b.N events: the catch-up path of a projection rebuild.
func BenchmarkSubscribeAllCatchUp(b *testing.B) {
	benchFilled(b, func(b *testing.B, c *esdb.Client) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		sub, err := c.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		for n := 0; n < b.N; {
			m := sub.Recv()
			switch {
			case m.SubscriptionDropped != nil:
				b.Fatalf("dropped after %d events: %v", n, m.SubscriptionDropped.Error)
			case m.EventAppeared != nil:
				n++
			}
		}
	})
}
