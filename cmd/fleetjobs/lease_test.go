package main_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"

	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// TestTwoInstancesDispatchOnce runs the production shape: two serve
// instances on one event log, one Redis and one Mosquitto. One dispatches
// (it holds the dispatch lease); the other stands by, ready, and records
// the answers the shared subscription hands it. Every device is sent the
// job once and has one result. When the dispatching instance stops, the
// other takes over and runs the next job.
func TestTwoInstancesDispatchOnce(t *testing.T) {
	u := MustMosquittoURL(t)
	t.Parallel()
	b := broker{name: "mosquitto", url: u}
	// The event store of a deployment: outside both instances.
	srv := eventstoretest.MustStartServer(t)
	cfg1 := MQTTServeConfig(t, b)
	cfg1.EventStoreURL = srv.URL()
	cfg1.DispatchLease = 1500 * time.Millisecond
	core1, logs1 := observer.New(zap.InfoLevel)
	m1 := MustServe(t, cfg1, zap.New(core1))
	cfg2 := cfg1
	cfg2.DataDir = t.TempDir()
	core2, logs2 := observer.New(zap.InfoLevel)
	m2 := MustServe(t, cfg2, zap.New(core2))
	leader := func(base string) float64 { return MustMetric(t, base, "fleetjobs_dispatch_leader") }
	MustPoll(t, "one instance dispatches", func() bool { return leader(m1.HTTPURL())+leader(m2.HTTPURL()) == 1 })
	first, second := m1, m2
	firstLogs, secondLogs := logs1, logs2
	if leader(m2.HTTPURL()) == 1 {
		first, second = m2, m1
		firstLogs, secondLogs = logs2, logs1
	}
	took := func(logs *observer.ObservedLogs) int {
		return logs.FilterMessageSnippet("took the dispatch lease").FilterLevelExact(zap.InfoLevel).Len()
	}
	if n := took(firstLogs); n != 1 {
		t.Errorf("the dispatching instance said %d times that it took the lease, want 1: %v", n, firstLogs.All())
	}

	p := "two" + tag()
	ds := append(devices(p+"-ok", "ok", 40), devices(p+"-bad", "fail", 4)...)
	api, token, keys := MustMQTTFleet(t, m1.HTTPURL(), ds)
	MustAgents(t, b, u, keys, ds)
	MustCreateSimJob(t, api, token, "j-two", 30, 4)
	MustJobEndsAs(t, api, "j-two", "failed", fjhttp.JobCounts{Total: 44, Succeeded: 40, Failed: 4})
	es := MustEventStore(t, m1)
	once := make(map[string]int, len(ds))
	for _, d := range ds {
		once[d.id] = 1
	}
	s := MustReadJobStream(t, es, "j-two")
	if diff := cmp.Diff(once, s.dispatched); diff != "" {
		t.Errorf("dispatches per device (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(once, s.results); diff != "" {
		t.Errorf("results per device (-want +got):\n%s", diff)
	}
	if n := MustMetric(t, second.HTTPURL(), "fleetjobs_dispatch_devices_dispatched_total"); n != 0 {
		t.Errorf("the standing-by instance dispatched %v devices", n)
	}
	if n := MustMetric(t, second.HTTPURL(), "fleetjobs_dispatch_answers_total"); n == 0 {
		t.Error("the standing-by instance recorded no answer: the shared subscription gave it none, or it dropped them")
	}
	MustStatus(t, Do(t, http.MethodGet, second.HTTPURL()+"/readyz", nil, nil), http.StatusOK)

	// The dispatching instance stops: the other takes over.
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if n := took(secondLogs); n != 0 {
		t.Errorf("the standing-by instance said %d times that it took the lease, want 0", n)
	}
	MustPoll(t, "the other instance dispatches", func() bool { return leader(second.HTTPURL()) == 1 })
	if n := took(secondLogs); n != 1 {
		t.Errorf("the instance that took over said %d times that it took the lease, want 1: %v", n, secondLogs.All())
	}
	api = second.HTTPURL() + fjhttp.APIBase
	MustCreateSimJob(t, api, token, "j-after", 30, 4)
	MustJobEndsAs(t, api, "j-after", "failed", fjhttp.JobCounts{Total: 44, Succeeded: 40, Failed: 4})
	es = MustEventStore(t, second)
	if diff := cmp.Diff(once, MustReadJobStream(t, es, "j-after").results); diff != "" {
		t.Errorf("results per device of the next job (-want +got):\n%s", diff)
	}
}

// TestDispatchLease: one holder at a time; the holder renews; another
// instance takes the lease once it expires, and the old holder then knows
// it lost it; a release frees it at once, and only the holder's release;
// a restarted instance (same host and address, a new process) takes its
// lease back at once on its first try, and only on that one.
func TestDispatchLease(t *testing.T) {
	t.Parallel()
	url, root := MustRedisURL(t)
	rdb := MustRedisClient(t, url)
	ctx := context.Background()
	const ttl = 300 * time.Millisecond
	a, b := main.NewLease(rdb, root, "host/a:1", ttl), main.NewLease(rdb, root, "host/b:1", ttl)
	take := func(l main.Lease, first, want bool, what string) {
		t.Helper()
		got, err := l.Take(ctx, first)
		if err != nil || got != want {
			t.Fatalf("%s: took %t (%v), want %t", what, got, err, want)
		}
	}
	take(a, true, true, "a, the lease free")
	take(b, true, false, "b, while a holds it")
	take(a, false, true, "a renewing")
	MustPoll(t, "a's lease expired", func() bool {
		_, err := rdb.Get(ctx, a.Key()).Result()
		return errors.Is(err, redis.Nil)
	})
	take(b, false, true, "b, after a's lease expired")
	take(a, false, false, "a, after b took the lease")
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	take(b, false, true, "b, after a released a lease it no longer held")

	// b's instance restarts: its new process takes the lease back at once.
	b2 := main.NewLease(rdb, root, "host/b:1", ttl)
	take(b2, false, false, "b restarted, not its first try")
	take(a, true, false, "a, another instance, on its first try")
	take(b2, true, true, "b restarted, on its first try")
	take(b, false, false, "b's old process, after its restart took the lease")
	if err := b2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	take(a, false, true, "a, once b released")
}
