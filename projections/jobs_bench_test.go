package projections_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// jobBenchEvents returns the setup of one job of n devices (created,
// targeted in events of job.MaxDevicesPerEvent, started) and its n
// DeviceOperationSucceeded events, with consecutive positions.
func jobBenchEvents(n int) (setup, results []projections.Event) {
	pos := uint64(0)
	ev := func(data any) projections.Event {
		pos++
		return projections.Event{Stream: "job-big", Position: eventstore.Position{Commit: pos, Prepare: pos}, Data: data,
			Metadata: eventstore.Metadata{OccurredAt: time.Date(2026, 11, 2, 10, 0, 0, int(pos), time.UTC)}}
	}
	setup = append(setup, ev(job.Created{JobID: "big", Name: "Big", DeviceSetID: "all", Type: job.TypeCommand,
		Operations: []job.Operation{{Name: "reboot", Value: map[string]any{}}}, DeviceCount: n, TimeoutSeconds: 30, BatchSize: 100}))
	for i := 0; i < n; i += job.MaxDevicesPerEvent {
		var ds []job.TargetedDevice
		for j := i; j < min(i+job.MaxDevicesPerEvent, n); j++ {
			id := fmt.Sprintf("dev-%07d", j)
			ds = append(ds, job.TargetedDevice{DeviceID: id, Name: "Device " + id})
		}
		setup = append(setup, ev(job.DevicesTargeted{JobID: "big", Devices: ds}))
	}
	setup = append(setup, ev(job.Started{JobID: "big"}))
	for i := range n {
		results = append(results, ev(job.OperationSucceeded{JobID: "big", DeviceID: fmt.Sprintf("dev-%07d", i)}))
	}
	return setup, results
}

// BenchmarkProjectJobResults measures the jobs projection's apply and
// write path for the results of one job of a million devices into the real
// Redis (FLEETJOBS_TEST_REDIS_URL), on pre-decoded events, then the
// latency of a 100-row page of that job's devices (unfiltered, and of one
// status) through Queries.JobDevices. Run:
//
//	bash .ci/testenv.sh go test -run '^$' -bench BenchmarkProjectJobResults -benchtime 1x ./projections/
func BenchmarkProjectJobResults(b *testing.B) {
	const n = 1_000_000
	rdb, root := MustRedis(b)
	setup, results := jobBenchEvents(n)
	ctx := context.Background()
	var elapsed time.Duration
	for i := range b.N {
		b.StopTimer()
		version := fmt.Sprintf("b%d", i)
		MustDeleteKeys(b, rdb, projections.Prefix(root, projections.JobsProjection, "*"))
		MustDeleteKeys(b, rdb, projections.ActiveKey(root, projections.JobsProjection))
		w, err := projections.NewWriter(rdb, zap.NewNop(), root, projections.Target{
			Projector: projections.NewJobsProjector(), Version: version})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Open(ctx); err != nil {
			b.Fatal(err)
		}
		// Batches as the Runner cuts them: 8,192 result events, or 64
		// targeting events of 1,000 devices (its BatchBytes).
		write := func(evs []projections.Event, batch int) {
			for j := 0; j < len(evs); j += batch {
				part := evs[j:min(j+batch, len(evs))]
				if err := w.Submit(ctx, part, part[len(part)-1].Position); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		write(setup, 64)
		b.StartTimer()
		start := time.Now()
		write(results, 8192)
		elapsed += time.Since(start)
		b.StopTimer()
	}
	b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")

	// Page latency on the last version written, walking the succeeded
	// devices 50 pages at a time from the top. The devices projection is
	// empty here, so every device reads as deleted: the check is made all
	// the same.
	q := projections.NewQueries(rdb, root, func() time.Time { return time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC) })
	const pages = 2000
	lat := make([]time.Duration, 0, pages)
	req := projections.PageRequest{Limit: 100}
	for k := range pages {
		if k%50 == 0 {
			req.Cursor = "" // restart from the top now and then, else walk on
		}
		t := time.Now()
		p, err := q.JobDevices(ctx, "big", job.DeviceSucceeded, req)
		lat = append(lat, time.Since(t))
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Items) != 100 {
			b.Fatalf("page of %d devices, want 100", len(p.Items))
		}
		req.Cursor = p.Next
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "page-p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "page-p99-µs")
	b.StartTimer()
}
