package sim_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
)

func staticProps(p map[string]map[string]any) sim.Properties {
	return sim.PropertiesFunc(func(_ context.Context, ds []dispatch.Delivery) ([]map[string]any, error) {
		out := make([]map[string]any, len(ds))
		for i, d := range ds {
			out[i] = p[d.DeviceID]
		}
		return out, nil
	})
}

// MustFleet runs a fleet until the test ends.
func MustFleet(tb testing.TB, p sim.Properties, answers chan []dispatch.Answer, cfg sim.Config) *sim.Fleet {
	tb.Helper()
	f := sim.New(p, answers, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = f.Run(ctx) })
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

func deliveries(ids ...string) []dispatch.Delivery {
	out := make([]dispatch.Delivery, len(ids))
	for i, id := range ids {
		out[i] = dispatch.Delivery{JobID: "j1", DeviceID: id, JobType: "setting", Deadline: time.Now().Add(time.Minute)}
	}
	return out
}

func TestDevicesAnswerByTheirProperties(t *testing.T) {
	answers := make(chan []dispatch.Answer, 16)
	p := staticProps(map[string]map[string]any{
		"fails":    {sim.FailProperty: "compressor fault"},
		"offline":  {sim.OfflineProperty: true},
		"offline2": {sim.OfflineProperty: "true"},
		"online":   {sim.OfflineProperty: false, "city": "Seattle"},
	})
	if err := sim.New(p, answers, sim.Config{}).Send(context.Background(), nil); err != nil {
		t.Fatalf("empty send: %v", err)
	}
	f := MustFleet(t, p, answers, sim.Config{Rand: rand.New(rand.NewPCG(3, 4))})
	if err := f.Send(context.Background(), deliveries("fails", "offline", "offline2", "online", "unknown")); err != nil {
		t.Fatal(err)
	}
	var got []dispatch.Answer
	for len(got) < 3 {
		got = append(got, <-answers...)
	}
	sort.Slice(got, func(a, b int) bool { return got[a].DeviceID < got[b].DeviceID })
	want := []dispatch.Answer{
		{JobID: "j1", DeviceID: "fails", Error: "compressor fault"},
		{JobID: "j1", DeviceID: "online", Succeeded: true},
		{JobID: "j1", DeviceID: "unknown", Succeeded: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if n := f.Pending(); n != 0 {
		t.Errorf("%d answers still pending: offline devices must not be scheduled", n)
	}
}

func TestSendWaitsForRoomBeyondMaxPending(t *testing.T) {
	answers := make(chan []dispatch.Answer) // unbuffered: the test takes answers one batch at a time
	f := MustFleet(t, staticProps(nil), answers, sim.Config{MaxPending: 10, MinDelay: time.Millisecond, MaxDelay: time.Millisecond})
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("d%03d", i)
	}
	sent := make(chan error, 1)
	go func() { sent <- f.Send(context.Background(), deliveries(ids...)) }()
	seen := map[string]bool{}
	for len(seen) < len(ids) {
		for _, a := range <-answers {
			seen[a.DeviceID] = true
		}
		if n := f.Pending(); n > 10 {
			t.Fatalf("%d answers pending, above MaxPending 10", n)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMillionDevices sends a million deliveries in batches of 10,000
// and waits for every answer; it reports the peak heap in use.
func BenchmarkMillionDevices(b *testing.B) {
	const n, batch = 1_000_000, 10_000
	answers := make(chan []dispatch.Answer, 1024)
	f := MustFleet(b, staticProps(nil), answers, sim.Config{})
	ds := make([]dispatch.Delivery, n)
	for i := range ds {
		ds[i] = dispatch.Delivery{JobID: "j1", DeviceID: fmt.Sprintf("vm-%07d", i)}
	}
	var peak uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for range b.N {
		go func() {
			for i := 0; i < n; i += batch {
				_ = f.Send(context.Background(), ds[i:i+batch])
			}
		}()
		for got := 0; got < n; {
			got += len(<-answers)
			if got%(n/10) < batch {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
