package benchlog_test

import (
	"context"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest/benchlog"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// BenchmarkReadLog reads the whole generated log three ways, each
// reporting events/s: "store" with store.ReadAll alone (no gRPC),
// "read" and "subscribe" through the official client against the embedded
// server on disk ($all read forwards, and a catch-up subscription to $all
// until the last event), decoding nothing of the events: the ceilings of
// the export and of a projection rebuild.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 go test -run '^$' -bench ReadLog -benchtime 1x -count 2 -timeout 30m ./eventstore/eventstoretest/benchlog
func BenchmarkReadLog(b *testing.B) {
	ctx := context.Background()
	dir, stats, err := benchlog.Cached(ctx, benchlog.EventsFromEnv(b))
	if err != nil {
		b.Fatal(err)
	}

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
	conf.Logger = func(esdb.LogLevel, string, ...any) {}
	es, err := esdb.NewClient(conf)
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()

	b.Run("read", func(b *testing.B) { benchlog.BenchClientRead(b, es) })

	b.Run("subscribe", func(b *testing.B) {
		cpu0 := benchlog.CPUTime(b)
		n := 0
		for range b.N {
			sub, err := es.SubscribeToAll(ctx, esdb.SubscribeToAllOptions{From: esdb.Start{}})
			if err != nil {
				b.Fatal(err)
			}
			for got := 0; got < stats.Events; {
				m := sub.Recv()
				switch {
				case m.SubscriptionDropped != nil:
					b.Fatalf("dropped after %d events: %v", got, m.SubscriptionDropped.Error)
				case m.EventAppeared != nil:
					got++
				}
			}
			n += stats.Events
			sub.Close()
		}
		benchlog.ReportRate(b, n, cpu0)
	})
}

// BenchmarkWrite generates the log (what Cached does on its first run) into
// a temporary directory and reports events/s written.
//
//	FLEETJOBS_BENCH_EVENTS=5000000 go test -run '^$' -bench Write -benchtime 1x ./eventstore/eventstoretest/benchlog
func BenchmarkWrite(b *testing.B) {
	cpu0 := benchlog.CPUTime(b)
	n := 0
	for range b.N {
		st, err := benchlog.Write(context.Background(), b.TempDir(), benchlog.EventsFromEnv(b))
		if err != nil {
			b.Fatal(err)
		}
		n += st.Events
	}
	benchlog.ReportRate(b, n, cpu0)
}
