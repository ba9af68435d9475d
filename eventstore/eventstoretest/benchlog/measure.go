package benchlog

import (
	"context"
	"errors"
	"io"
	"math"
	"syscall"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// CPUTime is the user and system CPU time this process has used.
func CPUTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ReportRate reports n events over the benchmark's time as events/s, and
// the CPU time the whole process spent per event since cpu0 (CPUTime at the
// start) as cpu-ns/event: on a shared 2-core machine the events/s of a run
// depend on what else runs, the CPU an event costs much less so.
func ReportRate(b *testing.B, n int, cpu0 time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	if n > 0 {
		b.ReportMetric(float64(CPUTime(b)-cpu0)/float64(n), "cpu-ns/event")
	}
	b.ReportMetric(0, "ns/op")
}

// BenchStoreRead is the "store" baseline: the whole log of dir read with
// store.ReadAll alone (no gRPC, no client), b.N times.
func BenchStoreRead(b *testing.B, dir string) {
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	cpu0 := CPUTime(b)
	n := 0
	for range b.N {
		if err := s.ReadAll(context.Background(), 0, false, func(store.Record) bool { n++; return true }); err != nil {
			b.Fatal(err)
		}
	}
	ReportRate(b, n, cpu0)
}

// BenchClientRead is the client baseline: $all read forwards through the
// official client, decoding nothing of the events, b.N times.
func BenchClientRead(b *testing.B, es *esdb.Client) {
	cpu0 := CPUTime(b)
	n := 0
	for range b.N {
		rs, err := es.ReadAll(context.Background(), esdb.ReadAllOptions{From: esdb.Start{}}, math.MaxUint64)
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
	ReportRate(b, n, cpu0)
}
