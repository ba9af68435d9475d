package commands_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain/job"
)

// benchDevices is the size of the benchmark's job: FLEETJOBS_BENCH_DEVICES,
// else small enough for a quick `go test -bench`.
func benchDevices(tb testing.TB) int {
	tb.Helper()
	s := os.Getenv("FLEETJOBS_BENCH_DEVICES")
	if s == "" {
		return 20_000
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("FLEETJOBS_BENCH_DEVICES=%q: want a positive number of devices", s)
	}
	return n
}

// heapInUse returns the heap in use after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// BenchmarkRecordResultsMillion records a result for every device of a
// running job through the command path, durably, into the embedded event
// store on disk (a million devices with FLEETJOBS_BENCH_DEVICES=1000000;
// 1% fail, with "timed out"), as the dispatcher would (batches of 1,000
// from 16 goroutines) and as devices answering one by one would (4,096
// goroutines of single results). It reports results/s, and the heap the
// job's state holds (MiB: the heap freed when the Handler, whose worker
// holds it, is closed).
//
//	FLEETJOBS_BENCH_DEVICES=1000000 go test -run '^$' -bench RecordResultsMillion -benchtime 1x ./commands
func BenchmarkRecordResultsMillion(b *testing.B) {
	n := benchDevices(b)
	b.Run("batches=1000x16", func(b *testing.B) { benchmarkResults(b, n, 16, 1000) })
	b.Run("single=4096", func(b *testing.B) { benchmarkResults(b, n, 4096, 1) })
}

func benchmarkResults(b *testing.B, n, callers, batch int) {
	ctx := context.Background()
	store := MustStore(b)
	ids := deviceIDs(n)
	var rate, stateMiB float64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		h := MustHandler(b, store)
		id := fmt.Sprintf("bench-%d", i)
		mustCreateBig(b, h, id, ids)
		if _, err := h.StartJob(ctx, commands.Meta{}, job.Start{JobID: id}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()

		var next, events atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		for range callers {
			wg.Go(func() {
				rs := make([]job.DeviceResult, 0, batch)
				for {
					lo := int(next.Add(int64(batch))) - batch
					if lo >= n {
						return
					}
					rs = rs[:0]
					for j := lo; j < min(lo+batch, n); j++ {
						r := job.DeviceResult{DeviceID: ids[j], Status: job.DeviceSucceeded}
						if j%100 == 0 {
							r = job.DeviceResult{DeviceID: ids[j], Status: job.DeviceFailed, Error: "timed out"}
						}
						rs = append(rs, r)
					}
					meta := commands.Meta{CommandID: fmt.Sprintf("delivery-%s-%d", id, lo), Actor: "dispatcher"}
					var res commands.Result
					var err error
					if batch == 1 {
						res, err = h.RecordResult(ctx, meta, id, rs[0])
					} else {
						res, err = h.RecordResults(ctx, meta, id, rs)
					}
					if err != nil {
						failed.Store(err)
						return
					}
					events.Add(int64(res.Events))
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)

		b.StopTimer()
		if err := failed.Load(); err != nil {
			b.Fatal(err)
		}
		if got := events.Load(); got != int64(n)+1 {
			b.Fatalf("recorded %d events, want %d results and JobFailed", got, n+1)
		}
		rate = float64(n) / elapsed.Seconds()
		held := heapInUse()
		if err := h.Close(); err != nil {
			b.Fatal(err)
		}
		stateMiB = float64(held-min(held, heapInUse())) / (1 << 20)
		b.StartTimer()
	}
	b.ReportMetric(rate, "results/s")
	b.ReportMetric(stateMiB, "state-MiB")
}

// mustCreateBig creates job id on the devices ids, with names, through
// CreateJob; the Create and its members are garbage once it returns.
func mustCreateBig(tb testing.TB, h *commands.Handler, id string, ids []string) {
	tb.Helper()
	c := newJob(id, 0, 0)
	c.Members = make([]job.TargetedDevice, len(ids))
	for i, d := range ids {
		c.Members[i] = job.TargetedDevice{DeviceID: d, Name: "Vending machine " + d}
	}
	if _, err := h.CreateJob(context.Background(), commands.Meta{}, c); err != nil {
		tb.Fatalf("create %s: %v", id, err)
	}
}
