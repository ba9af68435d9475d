package main

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest/benchlog"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// BenchmarkExport runs the code of `fleetjobs export` (Export) over a
// generated production-like log (package benchlog: device registrations
// and property changes, jobs with their targeting, dispatch and results),
// through the official client against the embedded server on disk, to
// io.Discard. Beside it, in the same run: "store" reads the same log with
// store.ReadAll alone (no gRPC, no client), and "client" reads $all through
// the same client without encoding anything (what the export cannot beat).
// Each reports events/s; one iteration reads the whole log.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 go test -run '^$' -bench Export -benchtime 1x -count 2 -timeout 30m ./cmd/fleetjobs
func BenchmarkExport(b *testing.B) {
	ctx := context.Background()
	start := time.Now()
	dir, stats, err := benchlog.Cached(ctx, benchlog.EventsFromEnv(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("log of %d events (%d devices, %d jobs) in %s, ready after %s: %v", stats.Events, stats.Devices, stats.Jobs, dir,
		time.Since(start).Round(time.Millisecond), stats.ByType)

	b.Run("store", func(b *testing.B) { benchlog.BenchStoreRead(b, dir) })

	srv, err := server.Start(ctx, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	conf, err := esdb.ParseConnectionString(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	es, err := esdb.NewClient(conf)
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()

	b.Run("client", func(b *testing.B) { benchlog.BenchClientRead(b, es) })

	b.Run("export", func(b *testing.B) {
		defer readerGC()() // as runExport does
		cpu0 := benchlog.CPUTime(b)
		var n uint64
		for range b.N {
			w := bufio.NewWriterSize(io.Discard, 256<<10)
			got, err := Export(ctx, es, ExportConfig{}, w, nil)
			if err != nil {
				b.Fatal(err)
			}
			n += got.N
		}
		benchlog.ReportRate(b, int(n), cpu0)
	})
}
