package projections_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// BenchmarkRebuildCommand measures `fleetjobs rebuild` and `--verify` on a log
// of one job with FLEETJOBS_BENCH_REBUILD_DEVICES devices (default 20000)
// and a result for each, against its baseline: a Runner catching up from
// scratch, which is what serve does at start with an empty Redis. Rebuild
// does that too, plus the switch and deleting the old version (grace 1ms).
//
//	bash .ci/testenv.sh go test ./projections -run '^$' -bench BenchmarkRebuildCommand -benchtime 3x
func BenchmarkRebuildCommand(b *testing.B) {
	n := 20000
	if v := os.Getenv("FLEETJOBS_BENCH_REBUILD_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatalf("FLEETJOBS_BENCH_REBUILD_DEVICES: %v", err)
		}
	}
	es := MustStore(b)
	rdb, root := MustRedis(b)
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("dev-%06d", i)
	}
	evs := createJob("big", "Big", at, ids...)
	MustAppendAt(b, es, "job-big", evs[0])
	for i := 0; i < n; i += 1000 {
		tds := evs[1].data.(job.DevicesTargeted).Devices[i:min(i+1000, n)]
		MustAppendAt(b, es, "job-big", jobEvent{at, job.DevicesTargeted{JobID: "big", Devices: tds}})
	}
	var head eventstore.Position
	for i := 0; i < n; i += 1000 {
		var res []jobEvent
		for _, id := range ids[i:min(i+1000, n)] {
			res = append(res, jobEvent{at, job.OperationSucceeded{JobID: "big", DeviceID: id}})
		}
		head = MustAppendAt(b, es, "job-big", res...)
	}
	events := float64(n + n/1000 + 1)
	ctx := context.Background()
	projectors := func() []projections.Projector {
		return []projections.Projector{projections.NewDevicesProjector(0), projections.NewJobsProjector()}
	}

	b.Run("catch-up (baseline)", func(b *testing.B) {
		for i := range b.N {
			version := fmt.Sprintf("base%d", i)
			var targets []projections.Target
			for _, p := range projectors() {
				targets = append(targets, projections.Target{Projector: p, Version: version})
			}
			w, err := projections.NewWriter(rdb, zap.NewNop(), root, targets...)
			if err != nil {
				b.Fatal(err)
			}
			r, err := projections.NewRunner(projections.RunnerConfig{Store: es, Codec: eventstore.NewCatalogCodec(), Writer: w, Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = r.Run(rctx) }()
			MustReach(b, r, head)
			cancel()
			<-done
			b.StopTimer()
			MustDeleteKeys(b, rdb, root+":*:"+version+":*")
			b.StartTimer()
		}
		b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("rebuild", func(b *testing.B) {
		for range b.N {
			if _, err := projections.Rebuild(ctx, projections.RebuildConfig{Store: es, Codec: eventstore.NewCatalogCodec(),
				Redis: rdb, Root: root, Projectors: projectors(), Logger: zap.NewNop(), Grace: time.Millisecond}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("verify", func(b *testing.B) {
		var keys int
		for range b.N {
			ds, err := projections.Verify(ctx, projections.VerifyConfig{Store: es, Codec: eventstore.NewCatalogCodec(),
				Redis: rdb, Root: root, Projectors: projectors(), Logger: zap.NewNop()})
			if err != nil {
				b.Fatal(err)
			}
			keys = 0
			for _, d := range ds {
				if d.Drifted() {
					b.Fatalf("drift: %+v", d)
				}
				keys += d.Keys
			}
		}
		b.ReportMetric(events*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(keys), "keys")
	})
}
