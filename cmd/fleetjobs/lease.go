package main

import (
	"context"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// dispatchLeaseKey is the Redis key, under the read models' key root, that
// names the instance dispatching jobs. Like the dispatcher's checkpoint it
// is not a projection key: a rebuild leaves it alone.
func dispatchLeaseKey(root string) string { return root + ":dispatch:lease" }

// defaultDispatchLease is how long the dispatching instance holds the lease
// without renewing it: after a crash another instance takes over within
// this time. It renews every third of it.
const defaultDispatchLease = 10 * time.Second

// lease is the right to dispatch, among the serve instances that share one
// event log and one Redis: a key holding the holder's ID, with an expiry
// the holder keeps renewing. Correctness never rests on it (a device drops
// a delivery it got twice, and a device's first recorded result stands):
// it spares every instance sending every job. Two holders for a moment (a
// holder paused past the expiry) send some deliveries twice, nothing worse.
type lease struct {
	rdb redis.UniversalClient
	key string
	id  string // this instance
	ttl time.Duration
}

// leaseHolder is the ID an instance holds the lease under: its host name
// and the address its HTTP server listens on, which no other live instance
// shares and the same instance has again when it restarts (a crash, kill
// -9), so that it takes its lease back at once instead of waiting for the
// expiry.
func leaseHolder(httpAddr string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return host + "/" + httpAddr
}

// extendScript renews the lease for ARGV[2] ms if ARGV[1] holds it.
var extendScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// releaseScript deletes the lease if ARGV[1] holds it.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// take takes the lease if it is free, or renews it if this instance holds
// it: true when this instance holds it for ttl from now.
func (l *lease) take(ctx context.Context) (bool, error) {
	ok, err := l.rdb.SetNX(ctx, l.key, l.id, l.ttl).Result()
	if err != nil || ok {
		return ok, err
	}
	n, err := extendScript.Run(ctx, l.rdb, []string{l.key}, l.id, l.ttl.Milliseconds()).Int()
	return n == 1, err
}

// release gives the lease up, if this instance holds it, so that another
// instance takes over at once rather than after the expiry.
func (l *lease) release(ctx context.Context) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.key}, l.id).Err()
}
