package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// TestBinary builds the fleetjobs binary once and runs it like a user would.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)

	t.Run("help on every command", func(t *testing.T) { testHelp(t, bin) })
	t.Run("bad usage exits 2", func(t *testing.T) { testBadUsage(t, bin) })
	t.Run("version", func(t *testing.T) { testVersion(t, bin) })
	t.Run("serve: ready, durable, exclusive, clean shutdown", func(t *testing.T) { testServe(t, bin) })
	t.Run("eventstore alone", func(t *testing.T) { testEventStore(t, bin) })
}

// MustBuild builds the binary once per test process (binary_test.go).
func MustBuild(tb testing.TB) string {
	tb.Helper()
	return mustSharedBinary(tb)
}

// baseEnv is the environment of every run: nothing of the developer's own
// FLEETJOBS_* settings, plus the variables given.
func baseEnv(vars ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLEETJOBS_") {
			env = append(env, kv)
		}
	}
	return append(env, vars...)
}

// result is the outcome of a finished run.
type result struct {
	code           int
	stdout, stderr string
}

// MustRun runs the binary to completion (bounded) and returns its outcome.
func MustRun(tb testing.TB, bin string, env []string, args ...string) result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = baseEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return result{0, stdout.String(), stderr.String()}
	case errors.As(err, &exit):
		return result{exit.ExitCode(), stdout.String(), stderr.String()}
	}
	tb.Fatalf("run %v: %v\nstderr: %s", args, err, stderr.String())
	return result{}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running fleetjobs process.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{} // closed when it exited
	err    error         // Wait's error, set before done closes
}

// MustStart starts the binary in the background; the test's end kills it if
// it still runs.
func MustStart(tb testing.TB, bin string, env []string, args ...string) *proc {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = baseEnv(env...)
	p := &proc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %v: %v", args, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if tb.Failed() {
			tb.Logf("stderr of %v:\n%s", args, p.stderr.String())
		}
	})
	return p
}

// MustStop sends SIGTERM and waits (bounded) for a clean exit.
func (p *proc) MustStop(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		tb.Fatalf("no exit within 30s of SIGTERM\nstderr:\n%s", p.stderr.String())
	}
	if p.err != nil {
		tb.Fatalf("exit after SIGTERM: %v, want status 0\nstderr:\n%s", p.err, p.stderr.String())
	}
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		tb.Fatal(err)
	}
	return addr
}

// MustAnswer polls url until it answers want, the process dies, or the
// deadline passes.
func MustAnswer(tb testing.TB, p *proc, url string, want int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := "no answer"
	for {
		code, err := get(url)
		if err == nil && code == want {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("status %d", code)
		}
		select {
		case <-p.done:
			tb.Fatalf("process exited (%v) while waiting for %s\nstderr:\n%s", p.err, url, p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("GET %s: %s after 30s, want %d", url, last, want)
		}
	}
}

func get(url string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// MustESDB connects the official client to a store at addr.
func MustESDB(tb testing.TB, addr string) *esdb.Client {
	tb.Helper()
	conf, err := esdb.ParseConnectionString("esdb://" + addr + "?tls=false")
	if err != nil {
		tb.Fatal(err)
	}
	conf.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(conf)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

func MustAppendOne(tb testing.TB, c *esdb.Client, stream string, id uuid.UUID, data string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, esdb.EventData{
		EventID: id, EventType: "ThingHappened", ContentType: esdb.ContentTypeJson, Data: []byte(data),
	})
	if err != nil {
		tb.Fatalf("append to %s: %v", stream, err)
	}
}

// MustReadTypes reads a whole stream and returns "type:data" per event.
func MustReadTypes(tb testing.TB, c *esdb.Client, stream string) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{}, 100)
	if err != nil {
		tb.Fatalf("read %s: %v", stream, err)
	}
	defer rs.Close()
	var out []string
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("read %s: %v", stream, err)
		}
		out = append(out, ev.Event.EventType+":"+string(ev.Event.Data))
	}
}

func testHelp(t *testing.T, bin string) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"eventstore", "--help"}, {"version", "--help"}, {"export", "--help"}, {"replay", "--help"}, {"rebuild", "--help"}, {"device", "--help"}, {"bench", "--help"}, {"help", "serve"}, {"help", "--help"}, {"--help", "help"}, {"help", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			r := MustRun(t, bin, nil, args...)
			if r.code != 0 {
				t.Errorf("exit %d, want 0; stderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, "Usage") {
				t.Errorf("stdout has no usage:\n%s", r.stdout)
			}
		})
	}
	t.Run("top usage lists the commands and variables", func(t *testing.T) {
		r := MustRun(t, bin, nil, "--help")
		for _, want := range []string{"serve", "eventstore", "version", "bench", "FLEETJOBS_HTTP_ADDR", "FLEETJOBS_EVENTSTORE_URL", "FLEETJOBS_LOG_LEVEL"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("usage lacks %q", want)
			}
		}
	})
}

func testBadUsage(t *testing.T, bin string) {
	cases := []struct {
		name    string
		env     []string
		args    []string
		mention string
	}{
		{"no command", nil, nil, "Usage"},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag", nil, []string{"serve", "--bogus"}, "-bogus"},
		{"positional argument", nil, []string{"serve", "now"}, `"now"`},
		{"bad log level", []string{"FLEETJOBS_LOG_LEVEL=loud"}, []string{"serve"}, "FLEETJOBS_LOG_LEVEL"},
		{"bad devices", []string{"FLEETJOBS_DEVICES=pigeon"}, []string{"serve"}, "FLEETJOBS_DEVICES"},
		{"bad http address", nil, []string{"serve", "--http-addr", "localhost"}, "FLEETJOBS_HTTP_ADDR"},
		{"bad event store URL", []string{"FLEETJOBS_EVENTSTORE_URL=http://x"}, []string{"serve"}, "FLEETJOBS_EVENTSTORE_URL"},
		{"bad redis URL", []string{"FLEETJOBS_REDIS_URL=nope://x"}, []string{"serve"}, "FLEETJOBS_REDIS_URL"},
		{"bad mqtt URL", []string{"FLEETJOBS_MQTT_URL=http://x"}, []string{"serve"}, "FLEETJOBS_MQTT_URL"},
		{"bad api keys", []string{"FLEETJOBS_API_KEYS=k1:root"}, []string{"serve"}, "FLEETJOBS_API_KEYS"},
		{"bad eventstore listen", nil, []string{"eventstore", "--listen", "nope"}, "--listen"},
		{"bad max append size", nil, []string{"eventstore", "--max-append-size", "0"}, "--max-append-size"},
		{"version takes no argument", nil, []string{"version", "now"}, `"now"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := MustRun(t, bin, tc.env, tc.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.mention) {
				t.Errorf("stderr does not mention %q:\n%s", tc.mention, r.stderr)
			}
		})
	}
	t.Run("a flag overrides a bad variable", func(t *testing.T) {
		r := MustRun(t, bin, []string{"FLEETJOBS_LOG_LEVEL=loud"}, "serve", "--log-level", "debug", "--http-addr", "nope")
		if r.code != 2 || strings.Contains(r.stderr, "FLEETJOBS_LOG_LEVEL") {
			t.Errorf("exit %d, stderr %s: want 2 naming only FLEETJOBS_HTTP_ADDR", r.code, r.stderr)
		}
	})
}

func testVersion(t *testing.T, bin string) {
	r := MustRun(t, bin, nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "fleetjobs ") {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
}

func testServe(t *testing.T, bin string) {
	data := t.TempDir()
	serveEnv := func() ([]string, string, string) {
		httpAddr, esAddr := freeAddr(t), freeAddr(t)
		return []string{
			"FLEETJOBS_DATA_DIR=" + data,
			"FLEETJOBS_HTTP_ADDR=" + httpAddr,
			"FLEETJOBS_EVENTSTORE_ADDR=" + esAddr,
			"FLEETJOBS_MQTT_ADDR=" + freeAddr(t),
		}, httpAddr, esAddr
	}

	env, httpAddr, esAddr := serveEnv()
	first := MustStart(t, bin, env, "serve")
	MustAnswer(t, first, "http://"+httpAddr+"/healthz", http.StatusOK)
	MustAnswer(t, first, "http://"+httpAddr+"/readyz", http.StatusOK)
	if n := strings.Count(first.stderr.String(), "event store listening"); n != 1 {
		t.Errorf("said %d times that its event store listens, want once:\n%s", n, first.stderr.String())
	}

	id := uuid.New()
	es := MustESDB(t, esAddr)
	MustAppendOne(t, es, "thing-1", id, `{"n":1}`)
	if diff := cmp.Diff([]string{`ThingHappened:{"n":1}`}, MustReadTypes(t, es, "thing-1")); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}

	t.Run("a second serve on the same data exits 1", func(t *testing.T) {
		env2, _, _ := serveEnv()
		r := MustRun(t, bin, env2, "serve")
		if r.code != 1 {
			t.Errorf("exit %d, want 1; stderr: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, filepath.Join(data, "eventstore")) || !strings.Contains(r.stderr, "in use") {
			t.Errorf("stderr does not name the data directory in use:\n%s", r.stderr)
		}
	})
	t.Run("an eventstore on the same data exits 1", func(t *testing.T) {
		r := MustRun(t, bin, nil, "eventstore", "--data", filepath.Join(data, "eventstore"), "--listen", freeAddr(t))
		if r.code != 1 {
			t.Errorf("exit %d, want 1; stderr: %s", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, filepath.Join(data, "eventstore")) {
			t.Errorf("stderr does not name the data directory:\n%s", r.stderr)
		}
	})

	// The first instance is unharmed by the attempts.
	MustAnswer(t, first, "http://"+httpAddr+"/readyz", http.StatusOK)
	first.MustStop(t)
	if strings.Contains(first.stderr.String(), `"level":"error"`) {
		t.Errorf("errors logged during a clean run:\n%s", first.stderr.String())
	}

	// Restart on the same data: the event is still there.
	env, httpAddr, esAddr = serveEnv()
	second := MustStart(t, bin, env, "serve")
	MustAnswer(t, second, "http://"+httpAddr+"/readyz", http.StatusOK)
	es = MustESDB(t, esAddr)
	if diff := cmp.Diff([]string{`ThingHappened:{"n":1}`}, MustReadTypes(t, es, "thing-1")); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
	second.MustStop(t)
}

// MustStartEventStore starts `fleetjobs eventstore --data data` on a free
// address and waits until it logs its URL, that is listens.
func MustStartEventStore(tb testing.TB, bin, data string) (*proc, string) {
	tb.Helper()
	addr := freeAddr(tb)
	p := MustStart(tb, bin, nil, "eventstore", "--data", data, "--listen", addr)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stderr.String(), "esdb://"+addr) {
		select {
		case <-p.done:
			tb.Fatalf("exited: %v\nstderr:\n%s", p.err, p.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no esdb:// URL logged within 30s:\n%s", p.stderr.String())
		}
	}
	return p, addr
}

func testEventStore(t *testing.T, bin string) {
	data := filepath.Join(t.TempDir(), "es")
	p, addr := MustStartEventStore(t, bin, data)
	es := MustESDB(t, addr)
	MustAppendOne(t, es, "thing-2", uuid.New(), `{"n":2}`)
	if diff := cmp.Diff([]string{`ThingHappened:{"n":2}`}, MustReadTypes(t, es, "thing-2")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	p.MustStop(t)
	if n := strings.Count(p.stderr.String(), "listening"); n != 1 {
		t.Errorf("said %d times that it listens, want once:\n%s", n, p.stderr.String())
	}

	// Given serve's data directory, it serves the log in its eventstore
	// subdirectory instead of creating a new store beside it.
	serveData := t.TempDir()
	p, addr = MustStartEventStore(t, bin, filepath.Join(serveData, "eventstore"))
	MustAppendOne(t, MustESDB(t, addr), "thing-3", uuid.New(), `{"n":3}`)
	p.MustStop(t)
	p, addr = MustStartEventStore(t, bin, serveData)
	if diff := cmp.Diff([]string{`ThingHappened:{"n":3}`}, MustReadTypes(t, MustESDB(t, addr), "thing-3")); diff != "" {
		t.Errorf("--data serve's data directory (-want +got):\n%s", diff)
	}
	p.MustStop(t)
	if left, err := os.ReadDir(serveData); err != nil || len(left) != 1 || left[0].Name() != "eventstore" {
		t.Errorf("serve's data directory holds %v (%v); want only its eventstore subdirectory", left, err)
	}

	// A directory holding other files but no store is refused.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := MustRun(t, bin, nil, "eventstore", "--data", other, "--listen", freeAddr(t))
	if r.code != 2 || !strings.Contains(r.stderr, "no event store") {
		t.Errorf("--data a directory of other files: exit %d, stderr %q; want 2, no event store", r.code, r.stderr)
	}
}
