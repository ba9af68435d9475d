package main

import (
	"context"
	"os"
	"time"

	"github.com/google/uuid"
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
	// holder names this instance by where it runs (leaseHolder); id is
	// holder, a space and a token of this process.
	holder, id string
	ttl        time.Duration
}

// newLease returns the lease key of root as this process, running as
// holder, takes it.
func newLease(rdb redis.UniversalClient, root, holder string, ttl time.Duration) *lease {
	return &lease{rdb: rdb, key: dispatchLeaseKey(root), holder: holder, id: holder + " " + uuid.NewString(), ttl: ttl}
}

// leaseHolder names an instance by its host name and the address its HTTP
// server listens on. No other live process on the host can listen there;
// the same instance restarted (a crash, kill -9) does, and takes back at
// once the lease its previous process held, instead of waiting for the
// expiry. Two hosts with one name (a fixed hostname in a pod template)
// each take it once at start; the one that loses it then stands by.
func leaseHolder(httpAddr string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return host + "/" + httpAddr
}

// extendScript renews the lease for ARGV[2] ms if ARGV[1] holds it.
var extendScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// takeBackScript gives the lease to ARGV[1] for ARGV[2] ms if its holder
// starts with ARGV[3]: this instance's previous process.
var takeBackScript = redis.NewScript(`local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[3])) == ARGV[3] then
	redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
	return 1
end
return 0`)

// releaseScript deletes the lease if ARGV[1] holds it.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// take takes the lease if it is free, or renews it if this process holds
// it: true when it holds it for ttl from now. first is the process's first
// try: it also takes back a lease its instance's previous process held.
func (l *lease) take(ctx context.Context, first bool) (bool, error) {
	ok, err := l.rdb.SetNX(ctx, l.key, l.id, l.ttl).Result()
	if err != nil || ok {
		return ok, err
	}
	ms := l.ttl.Milliseconds()
	if first {
		n, err := takeBackScript.Run(ctx, l.rdb, []string{l.key}, l.id, ms, l.holder+" ").Int()
		if err != nil || n == 1 {
			return n == 1, err
		}
	}
	n, err := extendScript.Run(ctx, l.rdb, []string{l.key}, l.id, ms).Int()
	return n == 1, err
}

// release gives the lease up, if this process holds it, so that another
// instance takes over at once rather than after the expiry.
func (l *lease) release(ctx context.Context) error {
	return releaseScript.Run(ctx, l.rdb, []string{l.key}, l.id).Err()
}
