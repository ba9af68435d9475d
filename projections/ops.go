package projections

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// OpKind names the Redis change an Op describes.
type OpKind uint8

// The changes a projector may ask for. Each maps to one Redis command on
// Op.Key (relative to the projection's prefix).
const (
	OpSet      OpKind = iota + 1 // SET Key Value
	OpDel                        // DEL Key
	OpZAdd                       // ZADD Key Score Member
	OpZRem                       // ZREM Key Member
	OpHSet                       // HSET Key Member Value
	OpHDel                       // HDEL Key Member
	OpHIncrBy                    // HINCRBY Key Member Delta
	OpExpireAt                   // PEXPIREAT Key At
)

// String renders k as the Redis command it stands for.
func (k OpKind) String() string {
	switch k {
	case OpSet:
		return "SET"
	case OpDel:
		return "DEL"
	case OpZAdd:
		return "ZADD"
	case OpZRem:
		return "ZREM"
	case OpHSet:
		return "HSET"
	case OpHDel:
		return "HDEL"
	case OpHIncrBy:
		return "HINCRBY"
	case OpExpireAt:
		return "PEXPIREAT"
	}
	return "OpKind(" + strconv.Itoa(int(k)) + ")"
}

// Op is one change to a read model, as data: projectors return them and the
// Writer executes them, so a projector can be tested as a table (given
// state and event, then these ops) without a Redis.
//
// Key is relative to the projection's prefix (see the package
// documentation); the Writer prepends the prefix of the version it writes,
// which is what lets a rebuild write beside the live keys.
type Op struct {
	Kind   OpKind
	Key    string
	Member string    // the sorted-set member (ZADD, ZREM) or hash field (HSET, HDEL, HINCRBY)
	Value  string    // SET and HSET
	Score  float64   // ZADD
	Delta  int64     // HINCRBY
	At     time.Time // PEXPIREAT
}

// Set is SET key value.
func Set(key, value string) Op { return Op{Kind: OpSet, Key: key, Value: value} }

// Del is DEL key.
func Del(key string) Op { return Op{Kind: OpDel, Key: key} }

// ZAdd is ZADD key score member.
func ZAdd(key string, score float64, member string) Op {
	return Op{Kind: OpZAdd, Key: key, Score: score, Member: member}
}

// ZRem is ZREM key member.
func ZRem(key, member string) Op { return Op{Kind: OpZRem, Key: key, Member: member} }

// HSet is HSET key field value.
func HSet(key, field, value string) Op {
	return Op{Kind: OpHSet, Key: key, Member: field, Value: value}
}

// HDel is HDEL key field.
func HDel(key, field string) Op { return Op{Kind: OpHDel, Key: key, Member: field} }

// HIncrBy is HINCRBY key field delta.
func HIncrBy(key, field string, delta int64) Op {
	return Op{Kind: OpHIncrBy, Key: key, Member: field, Delta: delta}
}

// ExpireAt is PEXPIREAT key at: retention computed from event times, so a
// rebuild expires the same keys at the same moments.
//
// The Writer reduces a batch's ops per key, which is exact except in one
// case a projector must avoid: emptying a sorted set or hash that has an
// expiry (Redis then deletes the key, and its expiry) and adding to it
// again in the same batch; reduced, the key is never empty and keeps its
// expiry. Set the expiry of a finished thing last, and do not empty it
// afterwards.
func ExpireAt(key string, at time.Time) Op { return Op{Kind: OpExpireAt, Key: key, At: at} }

// argsPerCommand bounds the arguments of one variadic command the plan
// emits, so that no single command blocks Redis for long or builds a huge
// request buffer.
const argsPerCommand = 1024

// plan is a batch of ops reduced to its net effect per key: the final value
// of each string, the members added to and removed from each sorted set, the
// final state of each hash field, the keys cleared. Executing the plan leaves
// Redis exactly as executing the ops one by one would, with a few variadic
// commands (MSET, ZADD with many members...) instead of one per op: that is
// what makes a batch of thousands of events cost a handful of round-trip
// units inside one MULTI/EXEC.
type plan struct {
	order []string // keys in first-seen order, for a deterministic command order
	keys  map[string]*keyPlan
	// sealed holds, in order, the reduced ops of keys up to a PEXPIREAT
	// that later ops of the same key follow: whether the expiry sticks
	// depends on the key existing at that moment, so those ops go first,
	// each key on its own (rare: retention expires finished things).
	sealed []sealedKey
}

type sealedKey struct {
	key string
	kp  *keyPlan
}

type keyPlan struct {
	// While every op of the key in the batch is of one kind, ZADD, ZREM or
	// HSET (most keys of a batch: a job's pending, succeeded and results
	// keys take thousands of one kind), the ops are kept in order as they
	// came, to be sent as variadic commands of that kind, which Redis
	// applies member by member in order: exactly the ops one by one, with
	// no map to fold them into. run is that kind; the first op of another
	// kind folds the run into the fields below (leaveRun).
	run        OpKind
	runMembers []string
	runScores  []float64 // ZADD
	runValues  []string  // HSET

	cleared  bool // DEL first
	hasStr   bool // str is the key's final string value
	str      string
	zadd     map[string]float64
	zaddSeq  []string // members of zadd in first-added order
	zrem     map[string]struct{}
	hash     map[string]*fieldPlan
	hashSeq  []string
	expireAt time.Time // zero: none
}

type fieldPlan struct {
	kind  OpKind // OpHSet, OpHDel or OpHIncrBy
	value string
	delta int64
}

func newPlan(ops int) *plan {
	ops = min(ops, planPresize) // most ops of a batch share few keys
	return &plan{keys: make(map[string]*keyPlan, ops), order: make([]string, 0, ops)}
}

func (p *plan) key(k string) *keyPlan {
	kp := p.keys[k]
	if kp == nil {
		kp = &keyPlan{}
		p.keys[k] = kp
		p.order = append(p.order, k)
	}
	return kp
}

// add folds op into the plan.
func (p *plan) add(op Op) {
	kp := p.key(op.Key)
	if kp.extendRun(op) {
		return
	}
	kp.leaveRun()
	switch op.Kind {
	case OpSet:
		kp.str, kp.hasStr = op.Value, true
		kp.expireAt = time.Time{} // SET discards a TTL
	case OpDel:
		*kp = keyPlan{cleared: true}
	case OpZAdd, OpZRem, OpHSet, OpHDel, OpHIncrBy:
		if !kp.expireAt.IsZero() {
			p.sealed = append(p.sealed, sealedKey{key: op.Key, kp: kp})
			kp = &keyPlan{}
			p.keys[op.Key] = kp
		}
		kp.write(op)
	case OpExpireAt:
		kp.expireAt = op.At
	}
}

// extendRun appends op to kp's run and reports true if op is of the run's
// kind, or starts a run if kp is untouched and op may run.
func (kp *keyPlan) extendRun(op Op) bool {
	switch {
	case kp.run != 0 && kp.run == op.Kind:
	case kp.run == 0 && (op.Kind == OpZAdd || op.Kind == OpZRem || op.Kind == OpHSet) && kp.untouched():
		kp.run = op.Kind
	default:
		return false
	}
	kp.runMembers = append(kp.runMembers, op.Member)
	switch op.Kind {
	case OpZAdd:
		kp.runScores = append(kp.runScores, op.Score)
	case OpHSet:
		kp.runValues = append(kp.runValues, op.Value)
	}
	return true
}

// untouched reports whether no op of the batch has reached kp yet.
func (kp *keyPlan) untouched() bool {
	return !kp.cleared && !kp.hasStr && kp.zadd == nil && kp.zrem == nil && kp.hash == nil && kp.expireAt.IsZero()
}

// leaveRun folds kp's run, if any, as if its ops had come one by one.
func (kp *keyPlan) leaveRun() {
	kind, members := kp.run, kp.runMembers
	if kind == 0 {
		return
	}
	scores, values := kp.runScores, kp.runValues
	kp.run, kp.runMembers, kp.runScores, kp.runValues = 0, nil, nil, nil
	for i, m := range members {
		op := Op{Kind: kind, Member: m}
		switch kind {
		case OpZAdd:
			op.Score = scores[i]
		case OpHSet:
			op.Value = values[i]
		}
		kp.write(op)
	}
}

// queueRun sends kp's run as variadic commands on key full.
func (kp *keyPlan) queueRun(ctx context.Context, pipe redis.Pipeliner, full string) {
	for start := 0; start < len(kp.runMembers); start += argsPerCommand {
		end := min(start+argsPerCommand, len(kp.runMembers))
		switch kp.run {
		case OpZAdd:
			zs := make([]redis.Z, end-start)
			for i := range zs {
				zs[i] = redis.Z{Score: kp.runScores[start+i], Member: kp.runMembers[start+i]}
			}
			pipe.ZAdd(ctx, full, zs...)
		case OpZRem:
			members := make([]any, end-start)
			for i := range members {
				members[i] = kp.runMembers[start+i]
			}
			pipe.ZRem(ctx, full, members...)
		case OpHSet:
			pairs := make([]any, 0, 2*(end-start))
			for i := start; i < end; i++ {
				pairs = append(pairs, kp.runMembers[i], kp.runValues[i])
			}
			pipe.HSet(ctx, full, pairs...)
		}
	}
}

// write folds a sorted-set or hash op into kp.
func (kp *keyPlan) write(op Op) {
	switch op.Kind {
	case OpZAdd:
		if kp.zadd == nil {
			kp.zadd = make(map[string]float64)
		}
		if _, ok := kp.zadd[op.Member]; !ok {
			kp.zaddSeq = append(kp.zaddSeq, op.Member)
		}
		kp.zadd[op.Member] = op.Score
		delete(kp.zrem, op.Member)
	case OpZRem:
		delete(kp.zadd, op.Member)
		if !kp.cleared { // after a DEL the member is gone already
			if kp.zrem == nil {
				kp.zrem = make(map[string]struct{})
			}
			kp.zrem[op.Member] = struct{}{}
		}
	case OpHSet, OpHDel, OpHIncrBy:
		kp.hashOp(op)
	}
}

func (kp *keyPlan) hashOp(op Op) {
	if kp.hash == nil {
		kp.hash = make(map[string]*fieldPlan)
	}
	f := kp.hash[op.Member]
	if f == nil {
		f = &fieldPlan{}
		kp.hash[op.Member] = f
		kp.hashSeq = append(kp.hashSeq, op.Member)
		if kp.cleared && op.Kind == OpHIncrBy {
			// The hash was deleted earlier in the batch: the field starts at 0.
			*f = fieldPlan{kind: OpHSet, value: strconv.FormatInt(op.Delta, 10)}
			return
		}
	} else if op.Kind == OpHIncrBy {
		switch f.kind {
		case OpHIncrBy:
			f.delta += op.Delta
			return
		case OpHDel:
			f.kind, f.value = OpHSet, strconv.FormatInt(op.Delta, 10)
			return
		case OpHSet:
			if n, err := strconv.ParseInt(f.value, 10, 64); err == nil {
				f.value = strconv.FormatInt(n+op.Delta, 10)
				return
			}
			// Not an integer: Redis refuses such a HINCRBY and leaves
			// the field as it is, so the HSET stands.
			return
		}
	}
	switch op.Kind {
	case OpHSet:
		*f = fieldPlan{kind: OpHSet, value: op.Value}
	case OpHDel:
		*f = fieldPlan{kind: OpHDel}
	case OpHIncrBy:
		*f = fieldPlan{kind: OpHIncrBy, delta: op.Delta}
	}
}

// queue sends the plan's commands to pipe, each key prefixed with prefix.
// Order: DELs first (a key cleared then rewritten in the batch is cleared
// before it is written), then values, then expirations (PEXPIREAT on a key
// that does not exist yet would do nothing).
func (p *plan) queue(ctx context.Context, pipe redis.Pipeliner, prefix string) {
	for _, s := range p.sealed {
		one := &plan{order: []string{s.key}, keys: map[string]*keyPlan{s.key: s.kp}}
		one.queue(ctx, pipe, prefix)
	}
	var dels []string
	for _, k := range p.order {
		if p.keys[k].cleared {
			dels = append(dels, prefix+k)
		}
	}
	for len(dels) > 0 {
		n := min(len(dels), argsPerCommand)
		pipe.Del(ctx, dels[:n]...)
		dels = dels[n:]
	}

	var mset []any
	flushMSet := func() {
		if len(mset) > 0 {
			pipe.MSet(ctx, mset...)
			mset = mset[:0:0]
		}
	}
	for _, k := range p.order {
		kp := p.keys[k]
		if kp.hasStr {
			mset = append(mset, prefix+k, kp.str)
			if len(mset) >= argsPerCommand {
				flushMSet()
			}
		}
	}
	flushMSet()

	for _, k := range p.order {
		kp := p.keys[k]
		full := prefix + k
		if kp.run != 0 {
			kp.queueRun(ctx, pipe, full)
			continue
		}
		if len(kp.zrem) > 0 {
			members := make([]any, 0, len(kp.zrem))
			for m := range kp.zrem {
				members = append(members, m)
			}
			for len(members) > 0 {
				n := min(len(members), argsPerCommand)
				pipe.ZRem(ctx, full, members[:n]...)
				members = members[n:]
			}
		}
		if len(kp.zadd) > 0 {
			zs := make([]redis.Z, 0, min(len(kp.zadd), argsPerCommand))
			for _, m := range kp.zaddSeq {
				s, ok := kp.zadd[m]
				if !ok {
					continue // removed again later in the batch
				}
				zs = append(zs, redis.Z{Score: s, Member: m})
				if len(zs) == argsPerCommand {
					pipe.ZAdd(ctx, full, zs...)
					zs = make([]redis.Z, 0, argsPerCommand)
				}
			}
			if len(zs) > 0 {
				pipe.ZAdd(ctx, full, zs...)
			}
		}
		if len(kp.hash) > 0 {
			var hdel []string
			var hset []any
			for _, field := range kp.hashSeq {
				f := kp.hash[field]
				switch f.kind {
				case OpHDel:
					hdel = append(hdel, field)
				case OpHSet:
					hset = append(hset, field, f.value)
				case OpHIncrBy:
					pipe.HIncrBy(ctx, full, field, f.delta)
				}
			}
			if len(hdel) > 0 {
				pipe.HDel(ctx, full, hdel...)
			}
			if len(hset) > 0 {
				pipe.HSet(ctx, full, hset...)
			}
		}
	}

	for _, k := range p.order {
		if at := p.keys[k].expireAt; !at.IsZero() {
			pipe.PExpireAt(ctx, prefix+k, at)
		}
	}
}

// planPresize bounds the keys a plan makes room for up front: sized by
// the batch's ops, the map and order of a batch of job results (tens of
// thousands of ops on a handful of keys) would be megabytes allocated and
// cleared for nothing.
const planPresize = 1024
