package benchlog_test

import (
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

// BenchmarkReadLog reads the whole generated log three ways, each
// reporting events/s: "store" with store.ReadAll alone (no gRPC),
// "read" and "subscribe" through the official client against the embedded
// server on disk ($all read forwards, and a catch-up subscription to $all
// until the last event), decoding nothing of the events: the ceilings of
// the export and of a projection rebuild.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 go test -run '^$' -bench ReadLog -benchtime 1x -count 2 -timeout 30m ./eventstore/eventstoretest/benchlog
func BenchmarkReadLog(b *testing.B) {
	ctx := context.Background()
	dir, stats, err := benchlog.Cached(ctx, benchlog.EventsFromEnv(b))
	if err != nil {
		b.Fatal(err)
	}

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
	conf.Logger = func(esdb.LogLevel, string, ...any) {}
	es, err := esdb.NewClient(conf)
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()

	b.Run("read", func(b *testing.B) {
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

	b.Run("subscribe", func(b *testing.B) {
		cpu0 := cpuTime(b)
		n := 0
		for range b.N {
			sub, err := es.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
			if err != nil {
				b.Fatal(err)
			}
			for got := 0; got < stats.Events; {
				m := sub.Recv()
				switch {
				case m.SubscriptionDropped != nil:
					b.Fatalf("dropped after %d events: %v", got, m.SubscriptionDropped.Error)
				case m.EventAppeared != nil:
					got++
				}
			}
			n += stats.Events
			sub.Close()
		}
		reportRate(b, n, cpu0)
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

// BenchmarkWrite generates the log (what Cached does on its first run) into
// a temporary directory and reports events/s written.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 go test -run '^$' -bench Write -benchtime 1x ./eventstore/eventstoretest/benchlog
func BenchmarkWrite(b *testing.B) {
	cpu0 := cpuTime(b)
	n := 0
	for range b.N {
		st, err := benchlog.Write(context.Background(), b.TempDir(), benchlog.EventsFromEnv(b))
		if err != nil {
			b.Fatal(err)
		}
		n += st.Events
	}
	reportRate(b, n, cpu0)
}
