package stress_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// The test binary doubles as the store process of the crash and memory tests:
// when envChildDataDir is set, TestMain serves that directory instead of
// running tests. A separate process is the only honest way to test kill -9:
// killing a goroutine does not drop the page cache or the Pebble WAL buffers of
// a process, and an in-process "crash" would leave the data directory locked.
const (
	envChildDataDir = "STRESS_CHILD_DATA_DIR"
	envChildListen  = "STRESS_CHILD_LISTEN" // optional; default 127.0.0.1:0
	// childReadyPrefix starts the one line the child prints on stdout once it
	// listens; the rest of the line is its host:port.
	childReadyPrefix = "STRESS_CHILD_LISTENING "
	// envLong asks for the long variants (many crash rounds, bigger races).
	envLong = "STRESS_LONG"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChildDataDir); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

// runChild serves dir until its stdin reaches EOF (the parent closed it or
// died: either way no orphan outlives the test) and returns the exit status.
func runChild(dir string) int {
	listen := os.Getenv(envChildListen)
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.Start(ctx, server.Options{Dir: dir, Listen: listen})
	if err != nil {
		fmt.Fprintf(os.Stderr, "stress child: start %s: %v\n", dir, err)
		return 1
	}
	fmt.Fprintf(os.Stdout, "%s%s\n", childReadyPrefix, srv.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := srv.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "stress child: close: %v\n", err)
		return 1
	}
	return 0
}

// childProcess is a store served by a re-executed copy of the test binary.
type childProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *bytes.Buffer // read only after cmd.Wait returned
	addr   string
	done   bool
}

// MustStartChild starts a child process serving dir and waits until it
// listens. The child is killed at cleanup if the test has not stopped it.
func MustStartChild(tb testing.TB, dir string) *childProcess {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildDataDir+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatalf("child stdin: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("child stdout: %v", err)
	}
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start child: %v", err)
	}
	c := &childProcess{cmd: cmd, stdin: stdin, stderr: stderr}
	tb.Cleanup(func() { c.kill() })

	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), childReadyPrefix); ok {
				ready <- addr
				break
			}
		}
		close(ready)
		// Keep draining so that a chatty child never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr, ok := <-ready:
		if !ok {
			c.kill()
			tb.Fatalf("child exited before listening: %s", c.stderr.String())
		}
		c.addr = addr
	case <-time.After(30 * time.Second):
		c.kill()
		tb.Fatalf("child did not listen within 30s: %s", c.stderr.String())
	}
	return c
}

// Pid is the child's process id.
func (c *childProcess) Pid() int { return c.cmd.Process.Pid }

// kill sends SIGKILL and reaps the process; the kernel releases its file
// locks when it is gone, so the next child can open the same directory.
func (c *childProcess) kill() {
	if c.done {
		return
	}
	c.done = true
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// MustStop asks the child to close the store cleanly and waits for it.
func (c *childProcess) MustStop(tb testing.TB) {
	tb.Helper()
	if c.done {
		return
	}
	c.done = true
	_ = c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		tb.Fatalf("child exit: %v: %s", err, c.stderr.String())
	}
}

// MustStartServer starts an embedded server in this process on a free
// loopback port; it is closed at cleanup.
func MustStartServer(tb testing.TB, opts server.Options) *server.Embedded {
	tb.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Dir == "" && !opts.InMemory {
		opts.Dir = tb.TempDir()
	}
	srv, err := server.Start(context.Background(), opts)
	if err != nil {
		tb.Fatalf("start server: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("close server: %v", err)
		}
	})
	return srv
}

// MustClient returns an official client for the server at addr and makes one
// call so that discovery has happened before the caller measures anything.
func MustClient(tb testing.TB, addr string) *esdb.Client {
	tb.Helper()
	c, err := dialClient(addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// dialClient builds a client and makes a first call (a one-event backwards
// read of $all), which runs the client's discovery.
func dialClient(addr string) (*esdb.Client, error) {
	c, err := newClient(addr)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("first call to %s: %w", addr, err)
	}
	defer rs.Close()
	for {
		_, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("first read from %s: %w", addr, err)
		}
	}
}

// newClient builds an official client with logging off: the client logs
// every dropped subscription and failed call through the standard logger,
// which the crash test provokes on purpose by the hundred.
func newClient(addr string) (*esdb.Client, error) {
	cfg, err := esdb.ParseConnectionString("esdb://" + addr + "?tls=false")
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err)
	}
	cfg.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	return c, nil
}

// storedEvent is what the tests keep of a recorded event (copied, since the
// client's buffers are not ours).
type storedEvent struct {
	Stream   string
	Revision uint64
	Commit   uint64
	Prepare  uint64
	ID       uuid.UUID
	Type     string
	Data     []byte
}

func toStored(ev *esdb.ResolvedEvent) storedEvent {
	e := ev.OriginalEvent()
	return storedEvent{
		Stream:   e.StreamID,
		Revision: e.EventNumber,
		Commit:   e.Position.Commit,
		Prepare:  e.Position.Prepare,
		ID:       e.EventID,
		Type:     e.EventType,
		Data:     e.Data,
	}
}

// readAll reads the whole of $all forwards.
func readAll(ctx context.Context, c *esdb.Client) ([]storedEvent, error) {
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{From: esdb.Start{}}, math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read $all: %w", err)
	}
	defer rs.Close()
	var out []storedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("read $all after %d events: %w", len(out), err)
		}
		out = append(out, toStored(ev))
	}
}

// readStream reads a whole stream forwards; a missing stream reads as empty.
func readStream(ctx context.Context, c *esdb.Client, stream string) ([]storedEvent, error) {
	rs, err := c.ReadStream(ctx, stream, esdb.ReadStreamOptions{From: esdb.Start{}}, math.MaxUint64)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	defer rs.Close()
	var out []storedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if errorCode(err) == esdb.ErrorCodeResourceNotFound {
			return nil, nil
		}
		if err != nil {
			return out, fmt.Errorf("read %s after %d events: %w", stream, len(out), err)
		}
		out = append(out, toStored(ev))
	}
}

// errorCode is the client's error code of err, or -1 when err is not an
// *esdb.Error. esdb.FromError does not unwrap, hence errors.As.
func errorCode(err error) esdb.ErrorCode {
	var esdbErr *esdb.Error
	if errors.As(err, &esdbErr) {
		return esdbErr.Code()
	}
	return -1
}

// payload returns a JSON event body of about 200 bytes that names its writer
// and sequence number, so a misplaced event is recognisable in a failure.
func payload(writer string, seq int) []byte {
	const pad = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	return fmt.Appendf(nil, `{"writer":%q,"seq":%d,"deviceId":"dev-%06d","pad":%q}`, writer, seq, seq%100000, pad)
}

// newEvent is a JSON event with a fresh ID.
func newEvent(writer string, seq int) esdb.EventData {
	return esdb.EventData{
		EventID:     uuid.New(),
		EventType:   "StressEvent",
		ContentType: esdb.ContentTypeJson,
		Data:        payload(writer, seq),
	}
}

// longRun reports whether the long variants were asked for.
func longRun() bool { return os.Getenv(envLong) != "" }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// eventsDiff compares two event lists; on a mismatch it reports the lengths
// and a cmp.Diff of a few events from the first difference. cmp.Diff over
// the whole lists would be exact but takes seconds per 100k events.
func eventsDiff(want, got []storedEvent) string {
	i := 0
	for i < len(want) && i < len(got) && sameEvent(want[i], got[i]) {
		i++
	}
	if i == len(want) && i == len(got) {
		return ""
	}
	const window = 3
	return fmt.Sprintf("%d events vs %d, first difference at index %d:\n%s",
		len(want), len(got), i, cmp.Diff(want[i:min(i+window, len(want))], got[i:min(i+window, len(got))]))
}

func sameEvent(a, b storedEvent) bool {
	return a.Stream == b.Stream && a.Revision == b.Revision && a.Commit == b.Commit && a.Prepare == b.Prepare &&
		a.ID == b.ID && a.Type == b.Type && bytes.Equal(a.Data, b.Data)
}
