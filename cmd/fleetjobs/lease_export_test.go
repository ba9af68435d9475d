package main

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lease is the dispatch lease, for its test in package main_test.
type Lease struct{ l *lease }

// NewLease returns the lease key of root as a process of the instance
// holder takes it.
func NewLease(rdb redis.UniversalClient, root, holder string, ttl time.Duration) Lease {
	return Lease{newLease(rdb, root, holder, ttl)}
}

func (l Lease) Take(ctx context.Context, first bool) (bool, error) { return l.l.take(ctx, first) }
func (l Lease) Release(ctx context.Context) error                  { return l.l.release(ctx) }
func (l Lease) Key() string                                        { return l.l.key }
