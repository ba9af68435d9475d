package projections_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

// benchEvents returns the setup (3 templates, 2 sets each) and n device
// events: n/2 DeviceRegistered then n/2 DevicePropertiesChanged of the
// same devices, with consecutive positions.
func benchEvents(n int) (setup, devices []projections.Event) {
	pos := uint64(0)
	ev := func(stream string, data any) projections.Event {
		pos++
		return projections.Event{Stream: stream, Position: eventstore.Position{Commit: pos, Prepare: pos}, Data: data,
			Metadata: eventstore.Metadata{OccurredAt: time.Date(2026, 11, 2, 10, 0, 0, int(pos), time.UTC)}}
	}
	templates := []string{"vending", "kiosk", "fridge"}
	for _, t := range templates {
		setup = append(setup, ev("template-"+t, device.TemplatePublished{TemplateID: t, Name: t, Properties: []device.Capability{
			{Name: "city", Schema: device.SchemaString}, {Name: "temp", Schema: device.SchemaNumber}}}))
		setup = append(setup, ev("deviceset-"+t+"-cold", device.SetDefined{SetID: t + "-cold", Name: "cold", TemplateID: t,
			Conditions: []device.Condition{{Property: "temp", Op: device.OpLt, Value: 5.0}}}))
		setup = append(setup, ev("deviceset-"+t+"-seattle", device.SetDefined{SetID: t + "-seattle", Name: "seattle", TemplateID: t,
			Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}}))
	}
	cities := []string{"Seattle", "Portland", "Tacoma", "Spokane"}
	for i := range n / 2 {
		id := fmt.Sprintf("dev-%07d", i)
		devices = append(devices, ev("device-"+id, device.Registered{DeviceID: id, Name: "Device " + id,
			TemplateID: templates[i%3], Properties: map[string]any{"city": cities[i%4], "temp": float64(i % 10)}}))
	}
	for i := range n / 2 {
		id := fmt.Sprintf("dev-%07d", i)
		devices = append(devices, ev("device-"+id, device.PropertiesChanged{DeviceID: id,
			Properties: map[string]any{"city": cities[(i+1)%4], "temp": float64((i * 7) % 10)}}))
	}
	return setup, devices
}

// BenchmarkProjectDeviceEvents measures the devices projection's apply and
// write path into the real Redis (FLEETJOBS_TEST_REDIS_URL), on pre-decoded
// events (so neither the event store nor decoding is measured), and beside
// it the same commands sent one per op through go-redis pipelines of 64
// (the redis-benchmark -P 64 equivalent). Run:
//
//	bash .ci/testenv.sh go test -run '^$' -bench BenchmarkProjectDeviceEvents -benchtime 3x ./projections/
func BenchmarkProjectDeviceEvents(b *testing.B) {
	const n = 100_000
	rdb, root := MustRedis(b)
	setup, events := benchEvents(n)
	ctx := context.Background()

	b.Run("writer", func(b *testing.B) {
		var elapsed time.Duration
		for i := range b.N {
			b.StopTimer()
			w, err := projections.NewWriter(rdb, zap.NewNop(), root, projections.Target{
				Projector: projections.NewDevicesProjector(0), Version: fmt.Sprintf("w%d", i)})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Open(ctx); err != nil {
				b.Fatal(err)
			}
			if err := w.Write(ctx, setup, setup[len(setup)-1].Position); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			const batch = 8192
			for j := 0; j < len(events); j += batch {
				evs := events[j:min(j+batch, len(events))]
				if err := w.Submit(ctx, evs, evs[len(evs)-1].Position); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			elapsed += time.Since(start)
			b.StopTimer()
			MustDeleteKeys(b, rdb, projections.Prefix(root, "devices", fmt.Sprintf("w%d", i))+"*")
			b.StartTimer()
		}
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
	})

	b.Run("pipeline64-baseline", func(b *testing.B) {
		// The same ops, as the pure projector produces them, one command
		// each, 64 per round trip, no transaction.
		s := projections.DeviceState{Templates: map[string]projections.Template{}, Sets: map[string]projections.DeviceSet{},
			Devices: map[string]projections.Device{}}
		var ops []projections.Op
		for _, e := range setup {
			ops = projections.ApplyDeviceEvent(&s, e, ops)
		}
		ops = ops[:0]
		for _, e := range events {
			ops = projections.ApplyDeviceEvent(&s, e, ops)
		}
		var elapsed time.Duration
		for i := range b.N {
			prefix := projections.Prefix(root, "devices", fmt.Sprintf("p%d", i))
			start := time.Now()
			for j := 0; j < len(ops); j += 64 {
				_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					projections.QueueEach(ctx, p, prefix, ops[j:min(j+64, len(ops))])
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			elapsed += time.Since(start)
			b.StopTimer()
			MustDeleteKeys(b, rdb, prefix+"*")
			b.StartTimer()
		}
		b.ReportMetric(float64(len(ops)*b.N)/elapsed.Seconds(), "ops/s")
		b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
	})
}
