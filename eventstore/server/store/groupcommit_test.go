package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// TestGroupCommitAnswersEachAppendOnItsOwn drives many concurrent appends
// through the writer on disk, so that they share WAL syncs, some of them
// with expectations that fail: each must be answered on its own (a failed
// expectation fails only that append, with the stream's actual revision),
// every acknowledged append must be in the log at the position it was
// answered with, and after a reopen every acknowledged append is still
// there and no refused one is.
func TestGroupCommitAnswersEachAppendOnItsOwn(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Streams that exist before the storm, at revision 0: appends to them
	// expecting no stream, or a revision they are not at, must fail.
	const existing = 16
	for i := range existing {
		MustAppend(t, s, fmt.Sprintf("old-%d", i), noStream, ev("Old", "{}"))
	}

	const (
		writers   = 64
		perWriter = 40
	)
	type outcome struct {
		stream string
		events int
		res    store.AppendResult
		err    error
		want   error // nil: must succeed
	}
	outcomes := make([][]outcome, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range perWriter {
				o := outcome{stream: fmt.Sprintf("new-%d-%d", w, i), events: 1 + (w+i)%2}
				exp := noStream
				switch (w*perWriter + i) % 5 {
				case 1: // an existing stream, expecting none
					o.stream = fmt.Sprintf("old-%d", (w+i)%existing)
					o.want = &store.WrongExpectedVersionError{Stream: o.stream, Expected: noStream, CurrentRevision: 0}
				case 3: // a new stream, expecting a revision
					exp = rev(7)
					o.want = &store.WrongExpectedVersionError{Stream: o.stream, Expected: exp, CurrentNoStream: true}
				}
				events := make([]store.Proposed, o.events)
				for j := range events {
					events[j] = ev("New", fmt.Sprintf(`{"w":%d,"i":%d,"j":%d}`, w, i, j))
				}
				o.res, o.err = s.Append(context.Background(), o.stream, exp, events)
				outcomes[w] = append(outcomes[w], o)
			}
		})
	}
	close(start)
	wg.Wait()

	acked := make(map[uint64]outcome) // by last position
	failed, ackedEvents := 0, 0
	for _, os := range outcomes {
		for _, o := range os {
			if o.want != nil {
				if d := checkErr(o.err, o.want); d != "" {
					t.Errorf("append to %s: %s", o.stream, d)
				}
				failed++
				continue
			}
			if o.err != nil {
				t.Errorf("append to %s: %v", o.stream, o.err)
				continue
			}
			if o.res.LastRevision != uint64(o.events-1) {
				t.Errorf("append to %s: last revision %d, want %d", o.stream, o.res.LastRevision, o.events-1)
			}
			if prev, dup := acked[o.res.Position]; dup {
				t.Errorf("appends to %s and %s both answered position %d", prev.stream, o.stream, o.res.Position)
			}
			acked[o.res.Position] = o
			ackedEvents += o.events
		}
	}
	if failed == 0 || len(acked) == 0 {
		t.Fatalf("%d failed and %d acknowledged appends: the test must mix both", failed, len(acked))
	}

	// check verifies the log holds exactly the setup and the acknowledged
	// appends, each at the position it was answered with.
	check := func(s *store.Store, when string) {
		t.Helper()
		all := MustReadAll(t, s, 0, false)
		if want := existing + ackedEvents; len(all) != want {
			t.Errorf("%s: $all has %d records, want %d", when, len(all), want)
		}
		for i, r := range all {
			if r.Position != uint64(i+1) {
				t.Fatalf("%s: record %d at position %d: positions must be 1..n", when, i, r.Position)
			}
		}
		for pos, o := range acked {
			r := all[pos-1]
			if r.Stream != o.stream || r.Revision != uint64(o.events-1) {
				t.Errorf("%s: position %d holds %s@%d, want the last event of the append to %s", when, pos, r.Stream, r.Revision, o.stream)
			}
			if got := MustReadStream(t, s, o.stream, 0, false); len(got) != o.events {
				t.Errorf("%s: %s has %d events, want %d", when, o.stream, len(got), o.events)
			}
		}
		for i := range existing {
			if got := MustReadStream(t, s, fmt.Sprintf("old-%d", i), 0, false); len(got) != 1 {
				t.Errorf("%s: old-%d has %d events, want 1 (refused appends must write nothing)", when, i, len(got))
			}
		}
		for _, os := range outcomes {
			for _, o := range os {
				var wev *store.WrongExpectedVersionError
				if errors.As(o.want, &wev) && wev.CurrentNoStream {
					if _, err := readStream(t, s, o.stream, 0, false); !errors.Is(err, store.ErrStreamNotFound) {
						t.Errorf("%s: refused append created %s (read: %v)", when, o.stream, err)
					}
				}
			}
		}
	}
	check(s, "before reopen")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(MustOpen(t, store.Options{Dir: dir}), "after reopen")
}
