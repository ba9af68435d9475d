package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// MustRedisURL returns the real redis-server of FLEETJOBS_TEST_REDIS_URL
// and a key root of the test's own, so tests share the server in parallel.
// Without the variable the test is skipped, or fails under CI.
func MustRedisURL(tb testing.TB) (url, root string) {
	tb.Helper()
	url = os.Getenv("FLEETJOBS_TEST_REDIS_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("FLEETJOBS_TEST_REDIS_URL is not set: run the tests with bash .ci/testenv.sh (make test)")
		}
		tb.Skip("FLEETJOBS_TEST_REDIS_URL is not set: run with bash .ci/testenv.sh go test ./cmd/fleetjobs/...")
	}
	// The test's name keeps tests apart, the process ID two runs of them.
	name := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' {
			return r
		}
		return '-'
	}, tb.Name())
	root = fmt.Sprintf("fjt-cmd-%d-%s", os.Getpid(), name)
	tb.Cleanup(func() { MustDeleteKeys(tb, url, root+":*") })
	return url, root
}

// MustRedisClient is a client of the Redis at url, closed at the test's end.
func MustRedisClient(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// MustDeleteKeys deletes the keys matching pattern: a test flushes only its
// own keys.
func MustDeleteKeys(tb testing.TB, url, pattern string) {
	tb.Helper()
	rdb := MustRedisClient(tb, url)
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		tb.Fatal(err)
	}
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		if err := rdb.Unlink(ctx, keys[:n]...).Err(); err != nil {
			tb.Fatal(err)
		}
		keys = keys[n:]
	}
}

// ServeConfig is a serve configuration on free loopback ports, data in a
// temporary directory, Redis as given ("" for the embedded one), and no
// device transport (jobs stay pending; tests start them in the log and
// report results over HTTP).
func ServeConfig(tb testing.TB, redisURL, root string) main.Config {
	tb.Helper()
	return main.Config{
		HTTPAddr:       "127.0.0.1:0",
		DataDir:        tb.TempDir(),
		EventStoreAddr: "127.0.0.1:0",
		RedisURL:       redisURL,
		RedisKeyRoot:   root,
		Devices:        "none",
		MQTTAddr:       "127.0.0.1:0",
		MaxAppendSize:  1 << 20,
	}
}

// MustServe runs serve in-process, the way main does, waits until /readyz
// answers 200 (the projections caught up) and closes it at the test's end.
func MustServe(tb testing.TB, cfg main.Config, logger *zap.Logger) *main.Main {
	tb.Helper()
	if logger == nil {
		logger = zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	}
	m := main.NewMain(cfg, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		tb.Fatalf("run: %v", err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	MustBeReady(tb, m.HTTPURL())
	return m
}

// MustBeReady polls /readyz until it answers 200, for at most 30 s.
func MustBeReady(tb testing.TB, base string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := Do(tb, http.MethodGet, base+"/readyz", nil, nil)
		if r.Status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("/readyz still %d after 30s: %s", r.Status, r.Body)
		}
		time.Sleep(20 * time.Millisecond) // polling interval of a condition with a deadline
	}
}

// MustEventStore connects to the event log a Main uses, to check what was
// recorded.
func MustEventStore(tb testing.TB, m *main.Main) *eventstore.Client {
	tb.Helper()
	c, err := eventstore.Dial(m.EventStoreURL(), eventstore.WithCodec(eventstore.NewCatalogCodec()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// MustHead returns the position of the last event in the log.
func MustHead(tb testing.TB, c *eventstore.Client) eventstore.Position {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := c.Head(ctx)
	if err != nil {
		tb.Fatalf("head: %v", err)
	}
	return p
}

// Answer is one HTTP answer.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Token is the answer's consistency token.
func (a Answer) Token() string { return a.Header.Get(fjhttp.ConsistencyTokenHeader) }

// Do sends one request; body is JSON-encoded unless it is a string or
// []byte (sent as is). headers are name, value pairs.
func Do(tb testing.TB, method, url string, body any, headers map[string]string) Answer {
	tb.Helper()
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return Answer{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// MustStatus fails the test unless a has status want; it returns a.
func MustStatus(tb testing.TB, a Answer, want int) Answer {
	tb.Helper()
	if a.Status != want {
		tb.Fatalf("status %d, want %d; body: %s", a.Status, want, a.Body)
	}
	return a
}

// MustDecode decodes a's JSON body into a T.
func MustDecode[T any](tb testing.TB, a Answer) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(a.Body, &v); err != nil {
		tb.Fatalf("decode %s: %v", a.Body, err)
	}
	return v
}

// WithToken is the header carrying a consistency token.
func WithToken(token string) map[string]string {
	return map[string]string{fjhttp.ConsistencyTokenHeader: token}
}
