package projections_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

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
// dropped. Both report events/s of the log.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 bash .ci/testenv.sh go test -run '^$' -bench RebuildLog -benchtime 1x -count 2 -timeout 30m ./projections/
func BenchmarkRebuildLog(b *testing.B) {
	events := 200_000
	if v := os.Getenv("FLEETJOBS_BENCH_EVENTS"); v != "" {
		var err error
		if events, err = strconv.Atoi(v); err != nil || events <= 0 {
			b.Fatalf("FLEETJOBS_BENCH_EVENTS=%q: want a positive number", v)
		}
	}
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
			for _, p := range []string{projections.DevicesProjection, projections.JobsProjection} {
				MustDeleteKeys(b, rdb, projections.Prefix(root, p, version)+"*")
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(stats.Events*b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(0, "ns/op")
	})
}
