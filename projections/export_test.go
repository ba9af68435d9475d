package projections

import (
	"context"

	"github.com/redis/go-redis/v9"
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
