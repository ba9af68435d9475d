package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// redisServer is a redis-server of a test's own, which the test may stop.
type redisServer struct {
	URL string
	cmd *exec.Cmd
}

// MustStartRedisServer starts a redis-server of the test's own on a free
// port (in memory only) and waits until it answers; it is killed at the
// test's end if the test did not stop it. Without redis-server the test is
// skipped, or fails under CI.
func MustStartRedisServer(tb testing.TB) *redisServer {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatal("redis-server is not installed: run the tests with bash .ci/testenv.sh (make test)")
		}
		tb.Skip("redis-server is not installed")
	}
	addr := freeAddr(tb)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	s := &redisServer{URL: "redis://" + addr + "/0", cmd: cmd}
	tb.Cleanup(s.stop)
	rdb := MustRedisClient(tb, s.URL)
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			tb.Fatalf("redis-server on %s does not answer after 10 s", addr)
		}
		time.Sleep(10 * time.Millisecond) // polling interval of a condition with a deadline
	}
	return s
}

// stop kills the server and waits for it to exit; stopping again does
// nothing.
func (s *redisServer) stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// TestQueriesWhileRedisIsDown stops the read models' redis-server under a
// running serve: the queries answer 503 problem+json with Retry-After
// (the read models do not answer; trying later may work), not a bare 500.
func TestQueriesWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	rs := MustStartRedisServer(t)
	m := MustServe(t, ServeConfig(t, rs.URL, "fjt"), nil)
	api := m.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/fridge", simTemplate, nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodGet, api+"/device-templates", nil, nil), http.StatusOK)
	rs.stop()

	for _, path := range []string{"/jobs", "/jobs/j1", "/jobs/j1/devices", "/summary", "/devices", "/devices/d1",
		"/device-templates", "/device-templates/fridge", "/device-sets", "/device-sets/s1/devices"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			a := Do(t, http.MethodGet, api+path, nil, nil)
			p := MustProblem(t, a, http.StatusServiceUnavailable, "")
			if want := fjhttp.ProblemTypeBase + "unavailable"; p.Type != want {
				t.Errorf("problem type %q, want %q", p.Type, want)
			}
			if ra := a.Header.Get("Retry-After"); ra == "" {
				t.Error("no Retry-After")
			}
		})
	}
}

// TestRedisOutageLogsAreStructured runs the binary on a redis-server that
// then stops: go-redis's own complaints (failed dials, a line or more a
// second) are JSON lines at debug like every other line, not plain text
// on stderr between them.
func TestRedisOutageLogsAreStructured(t *testing.T) {
	t.Parallel()
	bin := MustBuild(t)
	rs := MustStartRedisServer(t)
	httpAddr := freeAddr(t)
	p := MustStart(t, bin, []string{
		"FLEETJOBS_DATA_DIR=" + t.TempDir(), "FLEETJOBS_HTTP_ADDR=" + httpAddr,
		"FLEETJOBS_EVENTSTORE_ADDR=" + freeAddr(t), "FLEETJOBS_MQTT_ADDR=" + freeAddr(t),
		"FLEETJOBS_REDIS_URL=" + rs.URL, "FLEETJOBS_DEVICES=none", "FLEETJOBS_LOG_LEVEL=debug",
	}, "serve", "--redis-key-root", "fjlog")
	MustAnswer(t, p, "http://"+httpAddr+"/readyz", http.StatusOK)
	rs.stop()
	MustAnswer(t, p, "http://"+httpAddr+"/readyz", http.StatusServiceUnavailable)
	for deadline := time.Now().Add(time.Minute); !strings.Contains(p.stderr.String(), `"msg":"go-redis"`); {
		if time.Now().After(deadline) {
			t.Fatalf("no go-redis line in serve's log within a minute of Redis stopping:\n%s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
	for i, line := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("line %d of serve's log is not JSON: %q", i+1, line)
		}
	}
}
