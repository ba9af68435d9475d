package projections

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/domain/job"
)

// QueuePlanned queues ops reduced to their net effect, as the Writer does.
func QueuePlanned(ctx context.Context, pipe redis.Pipeliner, prefix string, ops []Op) {
	p := newPlan(len(ops))
	for _, op := range ops {
		p.add(op)
	}
	p.queue(ctx, pipe, prefix)
}

// QueueEach queues ops one command each: the reference and the baseline.
func QueueEach(ctx context.Context, pipe redis.Pipeliner, prefix string, ops []Op) {
	for _, op := range ops {
		queueOne(ctx, pipe, prefix, op)
	}
}

// DecodeMember is decodeMember, for its property test.
func DecodeMember(doc string) (Member, error) { return decodeMember(doc) }

// JobResultJSON is the hand-written document of a device result, and
// encoding/json's, for their property test.
func JobResultJSON(status, errText string, at time.Time) (fast, reference string) {
	r := jobResult{Status: job.DeviceStatus(status), Error: errText, UpdatedAt: at}
	return r.json(), mustJSON(r)
}

// queueOne sends op to pipe as its own command, unreduced: the baseline the
// benchmark compares the plan with, and the reference its tests check the
// plan against.
func queueOne(ctx context.Context, pipe redis.Pipeliner, prefix string, op Op) {
	k := prefix + op.Key
	switch op.Kind {
	case OpSet:
		pipe.Set(ctx, k, op.Value, 0)
	case OpDel:
		pipe.Del(ctx, k)
	case OpZAdd:
		pipe.ZAdd(ctx, k, redis.Z{Score: op.Score, Member: op.Member})
	case OpZRem:
		pipe.ZRem(ctx, k, op.Member)
	case OpHSet:
		pipe.HSet(ctx, k, op.Member, op.Value)
	case OpHDel:
		pipe.HDel(ctx, k, op.Member)
	case OpHIncrBy:
		pipe.HIncrBy(ctx, k, op.Member, op.Delta)
	case OpExpireAt:
		pipe.PExpireAt(ctx, k, op.At)
	}
}
