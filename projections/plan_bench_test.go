package projections_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/projections"
)

// BenchmarkPlan measures the Go side of writing a batch, without Redis:
// folding a batch's ops into a plan and queueing its commands on a
// pipeline that is then discarded. The batches are the Runner's: 8,192
// results of one job, and 64 targeting events of 1,000 devices. It reports
// ns and allocations per event.
//
//	go test -run '^$' -bench BenchmarkPlan -benchmem ./projections/
func BenchmarkPlan(b *testing.B) {
	setup, results := jobBenchEvents(8192 * 8)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled: the pipeline is discarded
	defer rdb.Close()
	for _, c := range []struct {
		name   string
		events []projections.Event
	}{
		{"results", results[:8192]},
		{"targeting", setup[:65]},
	} {
		b.Run(c.name, func(b *testing.B) {
			// The ops as the jobs projector makes them, from its state after
			// the whole setup.
			s := projections.NewJobState(nil, setup[0].Metadata.OccurredAt)
			var ops []projections.Op
			for _, e := range setup {
				ops = projections.ApplyJobEvent(s, e, ops[:0])
			}
			ops = ops[:0]
			for _, e := range c.events {
				ops = projections.ApplyJobEvent(s, e, ops)
			}
			ops = projections.FlushJobState(s, ops)
			pipe := rdb.Pipeline()
			b.ReportAllocs()
			for b.Loop() {
				projections.QueuePlanned(ctx, pipe, "fj:jobs:1:", ops)
				pipe.Discard()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.events)), "ns/event")
		})
	}
}
