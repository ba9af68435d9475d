package dispatch_test

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

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// BenchmarkJobOverSimFleet measures a whole job over the simulated fleet:
// from CreateJob to every device's result recorded in the job stream,
// through the real command handler and embedded store, with the job's
// default batch size (FLEETJOBS_BENCH_BATCH sets another). 100,000
// devices; FLEETJOBS_BENCH_DEVICES sets another count (1000000 for the
// issue's million). It reports the seconds per job and the peak heap in
// use.
//
// Two runs in the same process, each on its own store: the job's batch
// size, and batches ten times as large. The Manager records several
// batches of a job per append (each its own event), so the batch size
// should matter little; each run logs how long the Manager's calls took on
// average.
//
//	go test ./dispatch -run '^$' -bench JobOverSimFleet -benchtime 1x -count 2
//	FLEETJOBS_BENCH_DEVICES=1000000 go test ./dispatch -run '^$' -bench JobOverSimFleet -benchtime 1x -timeout 10m
func BenchmarkJobOverSimFleet(b *testing.B) {
	n := benchEnv(b, "FLEETJOBS_BENCH_DEVICES", 100_000)
	batch := benchEnv(b, "FLEETJOBS_BENCH_BATCH", job.DefaultBatchSize)
	for _, pacing := range []struct {
		name  string
		batch int
	}{
		{fmt.Sprintf("batch=%d", batch), batch},
		{fmt.Sprintf("batch=%d", min(10*batch, job.MaxBatchSize)), min(10*batch, job.MaxBatchSize)},
	} {
		b.Run(pacing.name, func(b *testing.B) {
			e := MustEnv(b)
			m, t := mustRunTimed(b, e)
			ids := deviceIDs("vm", n)

			var peak uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				var ms runtime.MemStats
				for {
					runtime.ReadMemStats(&ms)
					peak = max(peak, ms.HeapInuse)
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			})
			b.ResetTimer()
			for i := range b.N {
				id := "bench-" + strconv.Itoa(i)
				MustCreate(b, e, id, ids, 30, pacing.batch)
				// The Manager counts an answer once RecordResults has
				// returned: the result is durable in the job stream. Its
				// counter is a cheap poll; reading the stream as it grows
				// would cost as much as another subscriber.
				for deadline := time.Now().Add(10 * time.Minute); m.Stats().Answers < (i+1)*n; {
					if time.Now().After(deadline) {
						b.Fatalf("job %s: %d answers recorded after 10 minutes", id, m.Stats().Answers-i*n)
					}
					time.Sleep(10 * time.Millisecond) // polling interval
				}
			}
			b.StopTimer()
			for i := range b.N {
				MustFollowToEnd(b, e, "bench-"+strconv.Itoa(i))
			}
			close(stop)
			wg.Wait()
			b.Logf("%s: %d dispatch records, %s each on average; %d sends, %s each; %d result records, %s each",
				pacing.name, t.dispatches.n.Load(), t.dispatches.avg(), t.sends.n.Load(), t.sends.avg(), t.results.n.Load(), t.results.avg())
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/job")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "devices/s")
		})
	}
}

func benchEnv(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// timings are the calls the Manager made to the command side and the
// transport, and how long they took.
type timings struct{ dispatches, sends, results timing }

type timing struct{ n, ns atomic.Int64 }

func (t *timing) since(t0 time.Time) { t.n.Add(1); t.ns.Add(int64(time.Since(t0))) }

func (t *timing) avg() time.Duration {
	if t.n.Load() == 0 {
		return 0
	}
	return (time.Duration(t.ns.Load() / t.n.Load())).Round(10 * time.Microsecond)
}

// timedOutcomes and timedTransport time the calls they pass on.
type timedOutcomes struct {
	outcomes
	t *timings
}

func (o timedOutcomes) RecordDispatches(ctx context.Context, m dispatch.Meta, cmds []job.RecordDispatch) error {
	defer o.t.dispatches.since(time.Now())
	return o.outcomes.RecordDispatches(ctx, m, cmds)
}

func (o timedOutcomes) RecordResults(ctx context.Context, m dispatch.Meta, jobID string, rs []job.DeviceResult) error {
	defer o.t.results.since(time.Now())
	return o.outcomes.RecordResults(ctx, m, jobID, rs)
}

type timedTransport struct {
	next dispatch.Transport
	t    *timings
}

func (tr timedTransport) Send(ctx context.Context, ds []dispatch.Delivery) error {
	defer tr.t.sends.since(time.Now())
	return tr.next.Send(ctx, ds)
}

// mustRunTimed is MustRun with every device succeeding, no log below
// warnings, and the Manager's calls timed.
func mustRunTimed(tb testing.TB, e *env) (*dispatch.Manager, *timings) {
	tb.Helper()
	answers := make(chan []dispatch.Answer, 64)
	fleet := sim.New(props{}, answers, sim.Config{})
	t := &timings{}
	cfg := dispatch.Config{
		Events: e.store, Codec: e.codec, Outcomes: timedOutcomes{outcomes{h: e.h}, t}, Transport: timedTransport{fleet, t}, Answers: answers,
		Now: time.Now, NewID: uuid.NewString, Logger: zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)),
	}
	m, err := dispatch.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = fleet.Run(ctx) })
	wg.Go(func() {
		if err := m.Run(ctx); err != nil {
			tb.Errorf("manager: %v", err)
		}
	})
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return m, t
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
