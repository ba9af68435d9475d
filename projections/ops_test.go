package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/projections"
)

// randomOps returns n ops over a few keys of each type, with every kind of
// op, so that reductions (a key deleted then written again, a member added
// then removed, increments after a set...) all occur, and runs of one kind
// on one key (half the ops repeat the previous op's key and kind, if it may
// run: ZADD, ZREM, HSET) with repeated members. Sorted sets and
// hashes get expiries only at the end, and only if expire: see ExpireAt for
// why.
func randomOps(rng *rand.Rand, n int, expire bool) []projections.Op {
	at := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	ops := make([]projections.Op, n)
	for i := range ops {
		k := rng.IntN(3)
		m := fmt.Sprintf("m%d", rng.IntN(4))
		if i > 0 && rng.IntN(2) == 0 {
			prev := ops[i-1]
			switch prev.Kind {
			case projections.OpZAdd:
				ops[i] = projections.ZAdd(prev.Key, float64(rng.IntN(3)), m)
				continue
			case projections.OpZRem:
				ops[i] = projections.ZRem(prev.Key, m)
				continue
			case projections.OpHSet:
				ops[i] = projections.HSet(prev.Key, m, fmt.Sprint(rng.IntN(10)))
				continue
			}
		}
		switch rng.IntN(3) {
		case 0: // strings
			key := fmt.Sprintf("s%d", k)
			switch rng.IntN(4) {
			case 0, 1:
				ops[i] = projections.Set(key, fmt.Sprintf("v%d", rng.IntN(100)))
			case 2:
				ops[i] = projections.Del(key)
			default:
				ops[i] = projections.ExpireAt(key, at.Add(time.Duration(rng.IntN(1000))*time.Second))
			}
		case 1: // sorted sets
			key := fmt.Sprintf("z%d", k)
			switch rng.IntN(5) {
			case 0, 1:
				ops[i] = projections.ZAdd(key, float64(rng.IntN(3)), m)
			case 2:
				ops[i] = projections.ZRem(key, m)
			default:
				ops[i] = projections.Del(key)
			}
		default: // hashes
			key := fmt.Sprintf("h%d", k)
			switch rng.IntN(6) {
			case 0:
				ops[i] = projections.HSet(key, m, fmt.Sprint(rng.IntN(10)))
			case 1, 2:
				ops[i] = projections.HIncrBy(key, m, int64(rng.IntN(5)-2))
			case 3:
				ops[i] = projections.HDel(key, m)
			default:
				ops[i] = projections.Del(key)
			}
		}
	}
	if expire {
		for _, key := range []string{"z0", "z1", "h0", "h1"} {
			if rng.IntN(2) == 0 {
				ops = append(ops, projections.ExpireAt(key, at))
			}
		}
	}
	return ops
}

// The Writer sends a batch's ops reduced to their net effect per key; Redis
// must end exactly as if every op had been sent on its own, in order.
func TestReducedOpsLeaveRedisAsOneByOne(t *testing.T) {
	t.Parallel()
	rdb, root := MustRedis(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		ops := randomOps(rng, 1+rng.IntN(40), true)
		each := fmt.Sprintf("%s:each%d:", root, round)
		planned := fmt.Sprintf("%s:planned%d:", root, round)
		// The same starting state for both: a first batch, applied one by one.
		start := randomOps(rng, 20, false)
		for _, prefix := range []string{each, planned} {
			if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				projections.QueueEach(ctx, p, prefix, start)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			projections.QueueEach(ctx, p, each, ops)
			return nil
		})
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			projections.QueuePlanned(ctx, p, planned, ops)
			return nil
		}); err != nil {
			t.Fatalf("round %d: planned ops: %v\nops: %+v", round, err, ops)
		}
		if diff := cmp.Diff(MustDump(t, rdb, each), MustDump(t, rdb, planned)); diff != "" {
			t.Fatalf("round %d: reduced ops differ from one by one (-each +planned):\n%s\nstart: %+v\nops: %+v", round, diff, start, ops)
		}
	}
}
