package commands_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain/device"
)

// BenchmarkImportDevices imports batches of 10,000 new devices into the
// embedded event store (the command side of the 100,000-device import
// target) and reports devices recorded per second.
func BenchmarkImportDevices(b *testing.B) {
	for _, w := range []int{64, 128, 256, 512} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchmarkImport(b, commands.WithWorkers(w)) })
	}
}

func benchmarkImport(b *testing.B, opts ...commands.Option) {
	ctx := context.Background()
	h := MustHandler(b, MustStore(b), opts...)
	MustPublish(b, h)
	const batch = 10_000
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		in := make([]device.Register, batch)
		for j := range in {
			in[j] = reg(fmt.Sprintf("b%d-%05d", i, j), float64(j))
		}
		if _, err := h.ImportDevices(ctx, commands.Meta{}, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "devices/s")
}
