package dispatch_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// BenchmarkJobOverSimFleet measures a whole job over the simulated fleet:
// from CreateJob to every device's result recorded in the job stream,
// through the real command handler and embedded store. 100,000 devices;
// FLEETJOBS_BENCH_DEVICES sets another count (1000000 for the issue's
// million). It reports the seconds per job and the peak heap in use.
//
//	go test ./dispatch -run '^$' -bench JobOverSimFleet -benchtime 1x
//	FLEETJOBS_BENCH_DEVICES=1000000 go test ./dispatch -run '^$' -bench JobOverSimFleet -benchtime 1x -timeout 10m
func BenchmarkJobOverSimFleet(b *testing.B) {
	n := 100_000
	if v := os.Getenv("FLEETJOBS_BENCH_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("FLEETJOBS_BENCH_DEVICES=%q: want a positive count", v)
		}
	}
	e := MustEnv(b)
	MustRun(b, e, props{}, nil, nil)
	ids := deviceIDs("vm", n)

	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	b.ResetTimer()
	for i := range b.N {
		id := "bench-" + strconv.Itoa(i)
		MustCreate(b, e, id, ids, 30, job.MaxBatchSize/10)
		MustFollowToEnd(b, e, id)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/job")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "devices/s")
}

// MustFollowToEnd reads job id's stream as it grows until the job is
// finished, folding it once (re-reading a million-device stream per poll
// would measure the poll).
func MustFollowToEnd(tb testing.TB, e *env, id string) {
	tb.Helper()
	var s *job.State
	var from uint64
	deadline := time.Now().Add(10 * time.Minute)
	for s == nil || !s.Status.Finished() {
		err := e.store.ReadStream(context.Background(), eventstore.JobStream(id), from, func(r eventstore.Recorded) error {
			v, err := r.Decode(e.codec)
			if err != nil {
				return err
			}
			s = job.Evolve(s, v.(job.Event))
			from = r.Revision + 1
			return nil
		})
		if err != nil {
			tb.Fatalf("read job %s: %v", id, err)
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s not finished after 10 minutes", id)
		}
		if s == nil || !s.Status.Finished() {
			time.Sleep(20 * time.Millisecond) // polling interval
		}
	}
	if c := s.Counts(); s.Status != job.StatusCompleted || c.Succeeded != c.Total {
		tb.Fatalf("job %s: %s, counts %+v", id, s.Status, c)
	}
}
