package projections_test

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest/benchlog"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
	"github.com/fleetjobs/fleetjobs/projections"
)

// BenchmarkRebuildLog runs every projection from the start of a generated
// production-like log (package benchlog; FLEETJOBS_BENCH_EVENTS events,
// default 200,000) into a fresh key prefix of the real Redis
// (FLEETJOBS_TEST_REDIS_URL), through a Runner subscribed to the embedded
// event store on disk over gRPC, until the Runner's position is the head of
// the log. Beside it, in the same run, "subscribe" is the Runner's
// subscription alone: the same filter and decoding, events counted and
// dropped, and "rebuild" is Rebuild of both projections (what `fleetjobs
// rebuild` runs) from the start to the switch. All report events/s of the
// log; "runner" and "rebuild" also the CPU time per event of this process
// and of redis-server (see cpuMeter), which show which side bounds them.
// All three run with the garbage collector at GOGC=400 unless GOGC is set,
// as `fleetjobs rebuild` does (cmd/fleetjobs, readerGC).
//
//	FLEETJOBS_BENCH_EVENTS=5000000 bash .ci/testenv.sh go test -run '^$' -bench RebuildLog -benchtime 1x -count 2 -timeout 30m ./projections/
func BenchmarkRebuildLog(b *testing.B) {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	events := benchlog.EventsFromEnv(b)
	ctx := context.Background()
	rdb, root := MustRedis(b)
	dir, stats, err := benchlog.Cached(ctx, events)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := server.Start(ctx, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	codec := eventstore.NewCatalogCodec()
	es, err := eventstore.Dial(srv.URL(), eventstore.WithCodec(codec))
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	head, err := es.Head(ctx)
	if err != nil {
		b.Fatal(err)
	}
	newWriter := func(version string) *projections.Writer {
		w, err := projections.NewWriter(rdb, zap.NewNop(), root,
			projections.Target{Projector: projections.NewDevicesProjector(0), Version: version},
			projections.Target{Projector: projections.NewJobsProjector(), Version: version})
		if err != nil {
			b.Fatal(err)
		}
		return w
	}

	b.Run("subscribe", func(b *testing.B) {
		filter := newWriter("unused").Filter()
		for range b.N {
			ctx, cancel := context.WithCancel(ctx)
			var last eventstore.Position
			err := es.SubscribeAll(ctx, eventstore.Position{}, filter, eventstore.Handler{
				Event: func(_ context.Context, rec eventstore.Recorded) error {
					if _, err := rec.Decode(codec); err != nil {
						return err
					}
					last = rec.Position
					return nil
				},
				Checkpoint: func(_ context.Context, p eventstore.Position) error {
					last = p
					return nil
				},
				CaughtUp: func(context.Context) error {
					if last.Compare(head) < 0 {
						return fmt.Errorf("caught up at %s, before the head %s", last, head)
					}
					cancel()
					return nil
				},
			})
			cancel()
			if err != nil && ctx.Err() == nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(stats.Events*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(0, "ns/op")
	})

	b.Run("runner", func(b *testing.B) {
		cpu := startCPU(b, rdb)
		for i := range b.N {
			version := fmt.Sprintf("rebuild%d", i)
			r, err := projections.NewRunner(projections.RunnerConfig{Store: es, Codec: codec,
				Writer: newWriter(version), Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			waitCtx, waitCancel := context.WithTimeout(ctx, 20*time.Minute)
			err = r.WaitFor(waitCtx, head)
			waitCancel()
			cancel()
			<-done
			if err != nil {
				b.Fatalf("%v (status %+v)", err, r.Status())
			}
			b.StopTimer()
			cpu.pause()
			for _, p := range []string{projections.DevicesProjection, projections.JobsProjection} {
				MustDeleteKeys(b, rdb, projections.Prefix(root, p, version)+"*")
			}
			cpu.resume()
			b.StartTimer()
		}
		b.ReportMetric(float64(stats.Events*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(0, "ns/op")
		cpu.report(stats.Events * b.N)
	})

	// rebuild is `fleetjobs rebuild` of both projections: Rebuild from
	// the start of the log to the switch (grace 1ms), each run into a key
	// root of its own.
	b.Run("rebuild", func(b *testing.B) {
		cpu := startCPU(b, rdb)
		for i := range b.N {
			broot := fmt.Sprintf("%s-rebuild%d", root, i)
			res, err := projections.Rebuild(ctx, projections.RebuildConfig{Store: es, Codec: codec, Redis: rdb, Root: broot,
				Projectors: []projections.Projector{projections.NewDevicesProjector(0), projections.NewJobsProjector()},
				Logger:     zap.NewNop(), Grace: time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			if res.Position.Compare(head) < 0 {
				b.Fatalf("rebuilt up to %s, before the head %s", res.Position, head)
			}
			b.StopTimer()
			cpu.pause()
			MustDeleteKeys(b, rdb, broot+":*")
			cpu.resume()
			b.StartTimer()
		}
		b.ReportMetric(float64(stats.Events*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(0, "ns/op")
		cpu.report(stats.Events * b.N)
	})
}

// cpuMeter measures the CPU time the benchmark's process and the Redis
// server spend, which on these shared 2-core machines says more than the
// wall clock when other work competes: "go-µs/event" (this process: the
// embedded event store, the client's decoding, the projectors, go-redis)
// and "redis-µs/event" (redis-server, from INFO cpu).
type cpuMeter struct {
	b               *testing.B
	rdb             *redis.Client
	goCPU, redisCPU time.Duration
	goAt, redisAt   time.Duration
}

func startCPU(b *testing.B, rdb *redis.Client) *cpuMeter {
	m := &cpuMeter{b: b, rdb: rdb}
	m.resume()
	return m
}

// resume starts counting again, once Redis has freed what was deleted
// meanwhile (UNLINK frees in a background thread, whose CPU INFO counts).
func (m *cpuMeter) resume() {
	waitLazyFree(m.b, m.rdb)
	m.goAt, m.redisAt = benchlog.CPUTime(m.b), redisCPU(m.b, m.rdb)
}

func (m *cpuMeter) pause() {
	m.goCPU += benchlog.CPUTime(m.b) - m.goAt
	m.redisCPU += redisCPU(m.b, m.rdb) - m.redisAt
}

func (m *cpuMeter) report(events int) {
	m.pause()
	m.b.ReportMetric(float64(m.goCPU.Microseconds())/float64(events), "go-µs/event")
	m.b.ReportMetric(float64(m.redisCPU.Microseconds())/float64(events), "redis-µs/event")
}

func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("redis INFO cpu %s: %v", k, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// waitLazyFree waits until Redis has no object left to free in the
// background.
func waitLazyFree(b *testing.B, rdb *redis.Client) {
	deadline := time.Now().Add(time.Minute)
	for {
		info, err := rdb.Info(context.Background(), "memory").Result()
		if err != nil {
			b.Fatal(err)
		}
		pending := ""
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "lazyfree_pending_objects:"); ok {
				pending = v
			}
		}
		if pending == "0" || pending == "" {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("redis still frees %s objects after a minute", pending)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}
