package eventstoretest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// MustStartServer starts a real embedded event store on a free loopback port
// with its data in tb.TempDir(), and closes it when the test ends. Its
// warnings and errors go to the test log.
func MustStartServer(tb testing.TB) *server.Embedded {
	tb.Helper()
	return MustStartServerIn(tb, tb.TempDir())
}

// MustStartServerIn is MustStartServer on a given data directory, for tests
// that restart a store on the same data.
func MustStartServerIn(tb testing.TB, dir string) *server.Embedded {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{
		Dir:    dir,
		Listen: "127.0.0.1:0",
		Logger: zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)),
	})
	if err != nil {
		tb.Fatalf("start embedded event store in %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close embedded event store: %v", err)
		}
	})
	return srv
}

// MustDial dials url with opts and closes the client when the test ends.
func MustDial(tb testing.TB, url string, opts ...eventstore.Option) *eventstore.Client {
	tb.Helper()
	c, err := eventstore.Dial(url, opts...)
	if err != nil {
		tb.Fatalf("dial %s: %v", url, err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("close event store client: %v", err)
		}
	})
	return c
}

// MustStart starts an embedded event store (MustStartServer) and returns a
// Client dialled to it: the usual start of a test of code that uses the
// event log.
func MustStart(tb testing.TB, opts ...eventstore.Option) *eventstore.Client {
	tb.Helper()
	srv := MustStartServer(tb)
	return MustDial(tb, srv.URL(), opts...)
}
