package conformance_test

import (
	"os"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/eventstore/conformance"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// kurrentDBURLEnv names the environment variable holding a connection
// string for a real KurrentDB to run the suite against as well.
const kurrentDBURLEnv = "FLEETJOBS_TEST_KURRENTDB_URL"

// TestEmbedded runs the suite against our embedded server, with the
// guarantees only our server makes.
func TestEmbedded(t *testing.T) {
	srv := MustStart(t, server.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	conformance.Run(t, Connector(srv.URL()),
		conformance.WithServerVersion(esdb.ServerVersion{Major: 24, Minor: 10, Patch: 0}),
		conformance.WithoutPersistentSubscriptions(),
		conformance.WithIdempotentPositions(),
	)
}

// TestKurrentDB runs the suite against a real KurrentDB when one is
// configured: the suite is the contract, and KurrentDB is its reference.
func TestKurrentDB(t *testing.T) {
	url := os.Getenv(kurrentDBURLEnv)
	if url == "" {
		t.Skipf("%s is not set; set it to a connection string (e.g. esdb://127.0.0.1:2113?tls=false) to run the suite against a real KurrentDB", kurrentDBURLEnv)
	}
	conformance.Run(t, Connector(url))
}

// MustStart starts an embedded server for the test and closes it when the
// test ends.
func MustStart(tb testing.TB, opts server.Options) *server.Embedded {
	tb.Helper()
	srv, err := server.Start(tb.Context(), opts)
	if err != nil {
		tb.Fatalf("start embedded server in %s: %v", opts.Dir, err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close embedded server: %v", err)
		}
	})
	return srv
}

// Connector returns a connect function for conformance.Run: each call makes
// a new client for url, closed when its test ends.
func Connector(url string) func(t *testing.T) *esdb.Client {
	return func(t *testing.T) *esdb.Client {
		t.Helper()
		conf, err := esdb.ParseConnectionString(url)
		if err != nil {
			t.Fatalf("parse connection string %q: %v", url, err)
		}
		// The client logs every dropped subscription and failed call at
		// error level to stdout; the tests assert on those themselves.
		conf.Logger = esdb.NoopLogging()
		c, err := esdb.NewClient(conf)
		if err != nil {
			t.Fatalf("new client for %q: %v", url, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
}
