package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore/server/servertest"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

func TestReadOnlyOpenOfAWriteProtectedStoreReadsAllAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	s := MustOpen(t, store.Options{Dir: dir})
	MustAppend(t, s, "a", noStream, ev("A", "0"), ev("A", "1"))
	MustAppend(t, s, "b", noStream, ev("B", "0"))
	MustTombstone(t, s, "b", any_)
	want := MustReadAll(t, s, 0, false)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	servertest.WriteProtect(t, dir)
	before := servertest.DirState(t, dir)

	ro := MustOpen(t, store.Options{Dir: dir, ReadOnly: true})
	// A second reader of the same directory at the same time.
	ro2 := MustOpen(t, store.Options{Dir: dir, ReadOnly: true})
	for i, r := range []*store.Store{ro, ro2} {
		if d := cmp.Diff(want, MustReadAll(t, r, 0, false)); d != "" {
			t.Errorf("reader %d: $all (-want +got):\n%s", i, d)
		}
		if r.Head() != uint64(len(want)) {
			t.Errorf("reader %d: Head() = %d, want %d", i, r.Head(), len(want))
		}
	}
	_, err := ro.Append(context.Background(), "a", any_, []store.Proposed{ev("A", "2")})
	if !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Append to a read-only store: %v, want ErrReadOnly", err)
	}
	if _, err := ro.Delete(context.Background(), "a", any_); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Delete on a read-only store: %v, want ErrReadOnly", err)
	}
	if _, err := ro.Tombstone(context.Background(), "a", any_); !errors.Is(err, store.ErrReadOnly) {
		t.Errorf("Tombstone on a read-only store: %v, want ErrReadOnly", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ro2.Close(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, servertest.DirState(t, dir)); d != "" {
		t.Errorf("reading read-only changed the directory (-before +after):\n%s", d)
	}
}

func TestReadOnlyOpenOfNoStoreFailsAndCreatesNothing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	empty := t.TempDir()
	for _, dir := range []string{missing, empty} {
		_, err := store.Open(store.Options{Dir: dir, ReadOnly: true})
		if err == nil || !strings.Contains(err.Error(), "no event store at "+dir) {
			t.Errorf("Open(%s) read-only: %v, want \"no event store at %s\"", dir, err, dir)
		}
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read-only Open created %s: %v", missing, err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("read-only Open created %v in an empty directory", entries)
	}
}

func TestReadOnlyAndReadWriteOpenersExcludeEachOther(t *testing.T) {
	dir := t.TempDir()
	rw := MustOpen(t, store.Options{Dir: dir})
	MustAppend(t, rw, "s", any_, ev("A", "{}"))
	if _, err := store.Open(store.Options{Dir: dir, ReadOnly: true}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("read-only Open while a writer holds the directory: %v, want ErrLocked", err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	ro := MustOpen(t, store.Options{Dir: dir, ReadOnly: true})
	if _, err := store.Open(store.Options{Dir: dir}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("read-write Open while a reader holds the directory: %v, want ErrLocked", err)
	}
	if got := MustReadStream(t, ro, "s", 0, false); len(got) != 1 {
		t.Errorf("reader sees %d events, want 1", len(got))
	}
}

// A store killed mid-write leaves acknowledged events in its WAL only: a
// read-only open replays it in memory, without flushing it to the directory.
func TestReadOnlyOpenAfterKillNineReadsEveryAcknowledgedAppend(t *testing.T) {
	dir := t.TempDir()
	cmd, lines, _ := startHelper(t, "append", dir)
	type ack struct {
		stream       string
		lastRev, pos uint64
		n            uint64
	}
	var acks []ack
	for len(acks) < 500 && lines.Scan() {
		var a ack
		if _, err := fmt.Sscan(lines.Text(), &a.stream, &a.lastRev, &a.pos, &a.n); err != nil {
			t.Fatalf("helper line %q: %v", lines.Text(), err)
		}
		acks = append(acks, a)
	}
	if len(acks) < 500 {
		t.Fatalf("helper stopped after %d acknowledgements: %v", len(acks), lines.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	servertest.WriteProtect(t, dir)
	before := servertest.DirState(t, dir)

	s, err := store.Open(store.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	all := MustReadAll(t, s, 0, false)
	byPos := make(map[uint64]store.Record, len(all))
	for _, r := range all {
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
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(before, servertest.DirState(t, dir)); d != "" {
		t.Errorf("reading read-only changed the directory (-before +after):\n%s", d)
	}
}
