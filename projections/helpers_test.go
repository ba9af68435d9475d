package projections_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
	"github.com/fleetjobs/fleetjobs/projections"
)

// MustRedis connects to the real redis-server of FLEETJOBS_TEST_REDIS_URL
// and returns a key root of the test's own, whose keys it deletes before and
// after the test (so tests share one server, in parallel). Without the
// variable the test is skipped, or fails under CI.
func MustRedis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	url := os.Getenv("FLEETJOBS_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("FLEETJOBS_TEST_REDIS_URL is not set: run the tests with bash .ci/testenv.sh (make test)")
		}
		tb.Skip("FLEETJOBS_TEST_REDIS_URL is not set: run with bash .ci/testenv.sh go test ./projections/...")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("FLEETJOBS_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	root := "fjt-" + strings.NewReplacer("/", "-", " ", "-", "{", "", "}", "").Replace(tb.Name())
	MustDeleteKeys(tb, rdb, root+":*")
	tb.Cleanup(func() {
		MustDeleteKeys(tb, rdb, root+":*")
		_ = rdb.Close()
	})
	return rdb, root
}

// MustDeleteKeys deletes the keys matching pattern.
func MustDeleteKeys(tb testing.TB, rdb *redis.Client, pattern string) {
	tb.Helper()
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				tb.Fatal(err)
			}
			keys = keys[:0]
		}
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(keys) > 0 {
		if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
			tb.Fatal(err)
		}
	}
}

// MustDump returns every key under prefix (relative to it) with its
// content: a string's value, a sorted set's members and scores, a hash's
// fields, and the absolute expiry time in ms if the key has one. The
// checkpoint is left out: a rebuild may stop at another checkpoint.
func MustDump(tb testing.TB, rdb *redis.Client, prefix string) map[string]string {
	tb.Helper()
	ctx := context.Background()
	out := make(map[string]string)
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		full := iter.Val()
		rel := strings.TrimPrefix(full, prefix)
		if rel == "checkpoint" {
			continue
		}
		typ, err := rdb.Type(ctx, full).Result()
		if err != nil {
			tb.Fatal(err)
		}
		var v string
		switch typ {
		case "string":
			v = rdb.Get(ctx, full).Val()
		case "zset":
			v = fmt.Sprint(rdb.ZRangeWithScores(ctx, full, 0, -1).Val())
		case "hash":
			v = fmt.Sprint(rdb.HGetAll(ctx, full).Val())
		default:
			tb.Fatalf("key %s has unexpected type %s", full, typ)
		}
		if at := rdb.PExpireTime(ctx, full).Val(); at > 0 {
			v += fmt.Sprintf(" expires %d", at.Milliseconds())
		}
		out[typ+" "+rel] = v
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// MustAppend appends events (data registered in the catalog codec) to
// stream and returns the position of the last: the consistency token.
func MustAppend(tb testing.TB, es *eventstore.Client, stream string, data ...any) eventstore.Position {
	tb.Helper()
	evs := make([]eventstore.Event, len(data))
	for i, d := range data {
		evs[i] = eventstore.Event{ID: uuid.New(), Data: d, Metadata: eventstore.Metadata{
			CommandID: "cmd", CorrelationID: "corr", Actor: "test",
			OccurredAt: time.Date(2026, 11, 2, 10, 0, i, 0, time.UTC),
		}}
	}
	res, err := es.Append(context.Background(), stream, eventstore.Any(), evs)
	if err != nil {
		tb.Fatalf("append to %s: %v", stream, err)
	}
	return res.Position
}

// MustStore starts an embedded event store with the catalog codec.
func MustStore(tb testing.TB) *eventstore.Client {
	tb.Helper()
	return eventstoretest.MustStart(tb, eventstore.WithCodec(eventstore.NewCatalogCodec()))
}

// runner is a Runner running in the background.
type runner struct {
	*projections.Runner
	stop func()
}

// MustRun starts a Runner of the devices projection (version) under root,
// stopped (and waited for) when the test ends or by stop. tweak may adjust
// the config.
func MustRun(tb testing.TB, es *eventstore.Client, rdb *redis.Client, root, version string, tweak ...func(*projections.RunnerConfig)) *runner {
	tb.Helper()
	return MustRunProjector(tb, es, rdb, root, projections.NewDevicesProjector(0), version, tweak...)
}

// MustRunProjector is MustRun with a given projector.
func MustRunProjector(tb testing.TB, es *eventstore.Client, rdb *redis.Client, root string, p projections.Projector, version string, tweak ...func(*projections.RunnerConfig)) *runner {
	tb.Helper()
	log := zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	w, err := projections.NewWriter(rdb, log, root, projections.Target{Projector: p, Version: version})
	if err != nil {
		tb.Fatal(err)
	}
	cfg := projections.RunnerConfig{Store: es, Codec: eventstore.NewCatalogCodec(), Writer: w, Logger: log,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	r, err := projections.NewRunner(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("runner: %v", err)
			}
		})
	}
	tb.Cleanup(stop)
	return &runner{Runner: r, stop: stop}
}

// MustReach waits (bounded) until r has applied the log up to token.
func MustReach(tb testing.TB, r *projections.Runner, token eventstore.Position) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, token); err != nil {
		tb.Fatalf("%v (status %+v)", err, r.Status())
	}
}

// MustNotFound fails unless err is projections.ErrNotFound.
func MustNotFound(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, projections.ErrNotFound) {
		tb.Fatalf("got error %v, want ErrNotFound", err)
	}
}

func zapTestLogger(tb testing.TB) *zap.Logger {
	return zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
}
