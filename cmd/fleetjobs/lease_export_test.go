package main

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is the dispatch lease, for its test in package main_test.
type Lease struct{ l *lease }

// NewLease returns the lease key of root as instance id holds it.
func NewLease(rdb redis.UniversalClient, root, id string, ttl time.Duration) Lease {
	return Lease{&lease{rdb: rdb, key: dispatchLeaseKey(root), id: id, ttl: ttl}}
}

func (l Lease) Take(ctx context.Context) (bool, error) { return l.l.take(ctx) }
func (l Lease) Release(ctx context.Context) error      { return l.l.release(ctx) }
func (l Lease) Key() string                            { return l.l.key }
