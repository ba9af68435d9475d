// Like eventstore's TestConcurrentCallsWhileTheStoreIsDown, this test makes
// the official client close its connection under calls waiting for it,
// which the race detector reports (the library's close and send of its
// channel; survive in package eventstore): it does not run under -race.

//go:build !race

package main_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// TestServeOutlivesAnEventStoreOutage: serve on an external event store
// that goes away keeps running (the official client used to panic in it
// within a second), says so once per part rather than at every retry, and
// is ready again when the store is back.
func TestServeOutlivesAnEventStoreOutage(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	store, err := server.Start(ctx, server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr := store.Addr()
	url, root := MustRedisURL(t)
	cfg := ServeConfig(t, url, root)
	cfg.EventStoreURL = store.URL()
	cfg.Devices = "mqtt" // the dispatcher and the broker's key watcher both follow the log
	core, logs := observer.New(zap.DebugLevel)
	m := MustServe(t, cfg, zap.New(core))

	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	// Until the dispatcher has retried a few times (its backoff reaches 2 s).
	retries := func() int { return logs.FilterMessageSnippet("dispatch: job subscription").Len() }
	for deadline := time.Now().Add(time.Minute); retries() < 4; {
		if time.Now().After(deadline) {
			t.Fatalf("the dispatcher has not resubscribed 4 times within a minute of the store going away: %d", retries())
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	// Commands and the history (read from the log) answer 503, for a
	// client to try again, not 500.
	api := m.HTTPURL() + fjhttp.APIBase
	for _, r := range []struct{ method, path string }{{http.MethodPut, "/device-templates/fridge"}, {http.MethodGet, "/jobs/j1/history"}} {
		var body any
		if r.method == http.MethodPut {
			body = simTemplate
		}
		a := Do(t, r.method, api+r.path, body, nil)
		if a.Status != http.StatusServiceUnavailable || a.Header.Get("Retry-After") == "" || a.Header.Get("Content-Type") != fjhttp.MIMEProblem {
			t.Errorf("%s %s with the store down: %d, Retry-After %q, %s; want 503 problem+json with Retry-After",
				r.method, r.path, a.Status, a.Header.Get("Retry-After"), a.Header.Get("Content-Type"))
		}
	}
	warnings := logs.Filter(func(e observer.LoggedEntry) bool { return e.Level >= zapcore.WarnLevel })
	for _, part := range []string{"dispatch: job subscription", "mqtt key watcher"} {
		if n := warnings.FilterMessageSnippet(part).Len(); n > 1 {
			t.Errorf("%d warnings from %q during one outage, want at most 1", n, part)
		}
	}

	again, err := server.Start(ctx, server.Options{Dir: dir, Listen: addr})
	if err != nil {
		t.Fatalf("restart the store on %s: %v", addr, err)
	}
	defer again.Close()
	MustBeReady(t, m.HTTPURL())
}
