package store_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

func TestReopenKeepsRecordsPositionsAndStreamState(t *testing.T) {
	dir := t.TempDir()
	// A tiny state cache forces states to be read back from Pebble.
	opts := store.Options{Dir: dir, StateCacheSize: 2}
	s, err := store.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	MustAppend(t, s, "live", noStream, ev("A", "0"), ev("A", "1"))
	MustAppend(t, s, "$$live", any_, ev(store.TypeMetadata, `{"$maxCount":1}`))
	MustAppend(t, s, "deleted", any_, ev("A", "0"))
	MustDelete(t, s, "deleted", any_)
	MustAppend(t, s, "gone", any_, ev("A", "0"))
	MustTombstone(t, s, "gone", any_)
	before := MustReadAll(t, s, 0, false)
	head := s.Head()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = MustOpen(t, opts)
	if s.Head() != head {
		t.Fatalf("Head() after reopen = %d, want %d", s.Head(), head)
	}
	if d := cmp.Diff(before, MustReadAll(t, s, 0, false)); d != "" {
		t.Fatalf("$all after reopen (-before +after):\n%s", d)
	}
	if d := cmp.Diff([]seen{{1, "A", "1"}}, MustReadStream(t, s, "live", 0, false)); d != "" {
		t.Errorf("metadata not recovered (-want +got):\n%s", d)
	}
	if _, err := readStream(t, s, "deleted", 0, false); checkErr(err, store.ErrStreamNotFound) != "" {
		t.Errorf("soft delete not recovered: %v", err)
	}
	if _, err := readStream(t, s, "gone", 0, false); checkErr(err, &store.StreamDeletedError{Stream: "gone"}) != "" {
		t.Errorf("tombstone not recovered: %v", err)
	}
	_, err = s.Append(context.Background(), "live", rev(0), []store.Proposed{ev("A", "x")})
	if d := checkErr(err, &store.WrongExpectedVersionError{Stream: "live", Expected: rev(0), CurrentRevision: 1}); d != "" {
		t.Errorf("revision not recovered: %s", d)
	}
	got := MustAppend(t, s, "live", rev(1), ev("A", "2"))
	if d := cmp.Diff(store.AppendResult{LastRevision: 2, Position: head + 1}, got); d != "" {
		t.Errorf("append after reopen (-want +got):\n%s", d)
	}
	got = MustAppend(t, s, "new", noStream, ev("A", "0"))
	if d := cmp.Diff(store.AppendResult{LastRevision: 0, Position: head + 2}, got); d != "" {
		t.Errorf("new stream after reopen (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]seen{{0, "A", "0"}}, MustReadStream(t, s, "new", 0, false)); d != "" {
		t.Errorf("new stream must not see another stream's index (-want +got):\n%s", d)
	}
}

func TestOpenOfAHeldDirectoryFailsWithErrLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	MustAppend(t, s, "s", any_, ev("A", "{}"))
	_, err = store.Open(store.Options{Dir: dir})
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open: %v, want ErrLocked naming %s", err, dir)
	}
	t.Logf("second Open: %v", err)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpen(t, store.Options{Dir: dir})
	if got := MustReadStream(t, s, "s", 0, false); len(got) != 1 {
		t.Errorf("after the refused Open the stream has %d events, want 1", len(got))
	}
}

// Helper processes: the test binary re-executed with STORE_HELPER set.
const (
	helperEnv    = "STORE_HELPER"
	helperDirEnv = "STORE_HELPER_DIR"
)

// TestHelperProcess is not a test: it is the body of the child processes the
// tests below start.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	s, err := store.Open(store.Options{Dir: os.Getenv(helperDirEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	switch mode {
	case "hold":
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes stdin or kills us
	case "append":
		runCrashWriters(s)
	}
	os.Exit(0)
}

// runCrashWriters appends forever from several goroutines and prints one
// line per acknowledged append: "stream lastRevision position count".
func runCrashWriters(s *store.Store) {
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("crash-%d", g)
			exp := noStream
			for i := 0; ; i++ {
				n := 1
				if g%2 == 1 {
					n = 10 // batches, to catch a partially visible append
				}
				events := make([]store.Proposed, n)
				for j := range events {
					events[j] = ev("E", strconv.Itoa(i))
				}
				res, err := s.Append(context.Background(), name, exp, events)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				exp = rev(res.LastRevision)
				mu.Lock()
				fmt.Fprintf(out, "%s %d %d %d\n", name, res.LastRevision, res.Position, n)
				_ = out.Flush() // acknowledged: the parent must see it before any kill
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func startHelper(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Scanner, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(stdout), stdin
}

// An open, read-write or read-only, of a directory another process holds
// read-write fails with ErrLocked naming it.
func TestOpenOfADirectoryHeldByAnotherProcessFailsWithErrLocked(t *testing.T) {
	for _, readOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("read-only %v", readOnly), func(t *testing.T) {
			dir := t.TempDir()
			_, lines, stdin := startHelper(t, "hold", dir)
			if !lines.Scan() || lines.Text() != "ready" {
				t.Fatalf("helper did not open the store: %q %v", lines.Text(), lines.Err())
			}
			_, err := store.Open(store.Options{Dir: dir, ReadOnly: readOnly})
			if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open: %v, want ErrLocked naming %s", err, dir)
			}
			_ = stdin.Close()
		})
	}
}

func TestKillNineLosesNoAcknowledgedAppend(t *testing.T) {
	dir := t.TempDir()
	cmd, lines, _ := startHelper(t, "append", dir)
	want := 3000
	if testing.Short() {
		want = 500
	}
	type ack struct {
		stream       string
		lastRev, pos uint64
		n            uint64
	}
	var acks []ack
	for len(acks) < want && lines.Scan() {
		var a ack
		if _, err := fmt.Sscan(lines.Text(), &a.stream, &a.lastRev, &a.pos, &a.n); err != nil {
			t.Fatalf("helper line %q: %v", lines.Text(), err)
		}
		acks = append(acks, a)
	}
	if len(acks) < want {
		t.Fatalf("helper stopped after %d acknowledgements: %v", len(acks), lines.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// Acknowledgements printed between our last read and the kill are
	// acknowledged too, but we only check the ones we saw.

	s := MustOpen(t, store.Options{Dir: dir})
	all := MustReadAll(t, s, 0, false)
	byPos := make(map[uint64]store.Record, len(all))
	for i, r := range all {
		if r.Position != uint64(i+1) {
			t.Fatalf("record %d at position %d: gap in $all after the crash", i, r.Position)
		}
		byPos[r.Position] = r
	}
	for _, a := range acks {
		for j := range a.n {
			r, ok := byPos[a.pos-j]
			if !ok || r.Stream != a.stream || r.Revision != a.lastRev-j {
				t.Fatalf("acknowledged %+v: event %d lost or misplaced (found %+v)", a, j, r)
			}
		}
	}
	// No partial append: every stream is complete and batches are whole.
	for g := range 8 {
		name := fmt.Sprintf("crash-%d", g)
		events, err := readStream(t, s, name, 0, false)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		per := 1
		if g%2 == 1 {
			per = 10
		}
		if len(events)%per != 0 {
			t.Errorf("%s has %d events: a batch of %d is partially visible", name, len(events), per)
		}
		for i, e := range events {
			if e.Rev != uint64(i) || e.Data != strconv.Itoa(i/per) {
				t.Fatalf("%s event %d = %+v: out of order or torn", name, i, e)
			}
		}
	}
	// The store keeps working after recovery.
	MustAppend(t, s, "after-crash", noStream, ev("E", "{}"))
	if got := s.Head(); got != uint64(len(all))+1 {
		t.Errorf("Head() = %d, want %d", got, len(all)+1)
	}
}
