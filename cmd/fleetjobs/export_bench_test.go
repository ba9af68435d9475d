package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest/benchlog"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// BenchmarkExport runs the code of `fleetjobs export` (Export) over a
// generated production-like log (package benchlog: device registrations
// and property changes, jobs with their targeting, dispatch and results),
// through the official client against the embedded server on disk, to
// io.Discard. Beside it, in the same run: "store" reads the same log with
// store.ReadAll alone (no gRPC, no client), and "client" reads $all through
// the same client without encoding anything (what the export cannot beat).
// Each reports events/s; one iteration reads the whole log.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 go test -run '^$' -bench Export -benchtime 1x -count 2 -timeout 30m ./cmd/fleetjobs
func BenchmarkExport(b *testing.B) {
	ctx := context.Background()
	start := time.Now()
	dir, stats, err := benchlog.Cached(ctx, benchlog.EventsFromEnv(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("log of %d events (%d devices, %d jobs) in %s, ready after %s: %v", stats.Events, stats.Devices, stats.Jobs, dir,
		time.Since(start).Round(time.Millisecond), stats.ByType)

	b.Run("store", func(b *testing.B) {
		s, err := store.Open(store.Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ResetTimer()
		cpu0 := cpuTime(b)
		n := 0
		for range b.N {
			if err := s.ReadAll(ctx, 0, false, func(store.Record) bool { n++; return true }); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, n, cpu0)
	})

	srv, err := server.Start(ctx, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	conf, err := esdb.ParseConnectionString(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	es, err := esdb.NewClient(conf)
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()

	b.Run("client", func(b *testing.B) {
		cpu0 := cpuTime(b)
		n := 0
		for range b.N {
			rs, err := es.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Start{}}, math.MaxUint64)
			if err != nil {
				b.Fatal(err)
			}
			for {
				_, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			rs.Close()
		}
		reportRate(b, n, cpu0)
	})

	b.Run("export", func(b *testing.B) {
		defer exportGC()() // as runExport does
		cpu0 := cpuTime(b)
		var n uint64
		for range b.N {
			w := bufio.NewWriterSize(io.Discard, 256<<10)
			got, err := Export(ctx, es, ExportConfig{}, w, nil)
			if err != nil {
				b.Fatal(err)
			}
			n += got
		}
		reportRate(b, int(n), cpu0)
	})
}

// reportRate reports n events over the benchmark's time as events/s, and
// the CPU time the whole process spent per event since cpu0 (cpuTime at the
// start) as cpu-ns/event: on a shared 2-core machine the events/s of a run
// depend on what else runs, the CPU an event costs much less so.
func reportRate(b *testing.B, n int, cpu0 time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	if n > 0 {
		b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(n), "cpu-ns/event")
	}
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
