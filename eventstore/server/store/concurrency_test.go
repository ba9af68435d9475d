package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

func TestConcurrentExactExpectedRevisionHasOneWinnerPerRevision(t *testing.T) {
	s := MustOpen(t, store.Options{})
	const writers = 8
	rounds := 40
	if testing.Short() {
		rounds = 10
	}
	var winners []string
	for r := range rounds {
		exp := noStream
		if r > 0 {
			exp = rev(uint64(r - 1))
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		results := make([]error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, results[w] = s.Append(context.Background(), "contended", exp,
					[]store.Proposed{ev("Won", fmt.Sprintf(`"%d/%d"`, r, w))})
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for w, err := range results {
			var wev *store.WrongExpectedVersionError
			switch {
			case err == nil:
				won++
				winners = append(winners, fmt.Sprintf(`"%d/%d"`, r, w))
			case errors.As(err, &wev):
				if wev.CurrentNoStream || wev.CurrentRevision != uint64(r) {
					t.Errorf("round %d: loser saw current %+v, want revision %d", r, wev, r)
				}
			default:
				t.Fatalf("round %d writer %d: %v", r, w, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", r, won)
		}
	}
	var got []string
	for _, e := range MustReadStream(t, s, "contended", 0, false) {
		got = append(got, e.Data)
	}
	if d := cmp.Diff(winners, got); d != "" {
		t.Errorf("stream content (-winners +stored):\n%s", d)
	}
}

func TestConcurrentAppendsToManyStreams(t *testing.T) {
	s := MustOpen(t, store.Options{})
	const streams = 16
	perStream := 60
	if testing.Short() {
		perStream = 15
	}
	type ack struct {
		stream string
		rev    uint64
		pos    uint64
	}
	acks := make([][]ack, streams)
	var wg sync.WaitGroup
	for g := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("stream-%d", g)
			exp := noStream
			for i := 0; i < perStream; {
				n := 1 + i%3 // mix of single events and small batches
				events := make([]store.Proposed, n)
				for j := range events {
					events[j] = ev("E", "{}")
				}
				res, err := s.Append(context.Background(), name, exp, events)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				for j := range n {
					acks[g] = append(acks[g], ack{name, res.LastRevision - uint64(n-1-j), res.Position - uint64(n-1-j)})
				}
				exp = rev(res.LastRevision)
				i += n
			}
		}()
	}
	// Writers sharing one stream with ExpectAny: requests of one group
	// build on each other's revisions.
	const sharers = 4
	for range sharers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perStream {
				if _, err := s.Append(context.Background(), "shared", any_, []store.Proposed{ev("E", "{}")}); err != nil {
					t.Errorf("shared: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()

	shared := MustReadStream(t, s, "shared", 0, false)
	if len(shared) != sharers*perStream {
		t.Errorf("shared stream has %d events, want %d", len(shared), sharers*perStream)
	}
	for i, e := range shared {
		if e.Rev != uint64(i) {
			t.Fatalf("shared stream: revision %d at index %d", e.Rev, i)
		}
	}

	all := MustReadAll(t, s, 0, false)
	byPos := make(map[uint64]store.Record, len(all))
	for i, r := range all {
		if r.Position != uint64(i+1) {
			t.Fatalf("record %d has position %d: positions must be 1..n without gaps", i, r.Position)
		}
		byPos[r.Position] = r
	}
	if s.Head() != uint64(len(all)) {
		t.Errorf("Head() = %d, want %d", s.Head(), len(all))
	}
	for _, streamAcks := range acks {
		for i, a := range streamAcks {
			r, ok := byPos[a.pos]
			if !ok || r.Stream != a.stream || r.Revision != a.rev || a.rev != uint64(i) {
				t.Fatalf("ack %+v (index %d) does not match stored record %+v", a, i, r)
			}
		}
	}
}

func TestConcurrentRetriesOfOneAppendWriteItOnce(t *testing.T) {
	// On disk, so that commits are slow enough for retries to share a group
	// with the original.
	s := MustOpen(t, store.Options{})
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	for r := range rounds {
		for _, exp := range []store.Expected{noStream, any_} {
			stream := fmt.Sprintf("retry-%d-%s", r, exp)
			events := []store.Proposed{ev("A", "{}"), ev("B", "{}")}
			const retries = 6
			results := make([]store.AppendResult, retries)
			errs := make([]error, retries)
			start := make(chan struct{})
			var wg sync.WaitGroup
			// An unrelated append keeps the committer busy, so that the
			// original and its retries tend to land in the same group.
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := s.Append(context.Background(), "busy", any_, []store.Proposed{ev("Busy", "{}")}); err != nil {
					t.Errorf("busy append: %v", err)
				}
			}()
			for i := range retries {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					results[i], errs[i] = s.Append(context.Background(), stream, exp, events)
				}()
			}
			close(start)
			wg.Wait()
			for i := range retries {
				if errs[i] != nil {
					t.Fatalf("%s: retry %d: %v", stream, i, errs[i])
				}
				if results[i] != results[0] {
					t.Fatalf("%s: retry %d got %+v, first got %+v", stream, i, results[i], results[0])
				}
			}
			if got := MustReadStream(t, s, stream, 0, false); len(got) != 2 {
				t.Fatalf("%s: %d events stored, want 2", stream, len(got))
			}
		}
	}
}

func TestChangedWakesWaiters(t *testing.T) {
	s := MustOpen(t, store.Options{InMemory: true})
	ch := s.Changed()
	select {
	case <-ch:
		t.Fatal("Changed() is closed before any commit")
	default:
	}
	const waiters = 5
	woke := make(chan uint64, waiters)
	for range waiters {
		go func() {
			<-ch
			woke <- s.Head()
		}()
	}
	MustAppend(t, s, "s", any_, ev("A", "{}"))
	deadline := time.After(10 * time.Second)
	for range waiters {
		select {
		case h := <-woke:
			if h < 1 {
				t.Errorf("woken waiter saw head %d, want the commit (>= 1)", h)
			}
		case <-deadline:
			t.Fatal("waiters not woken by a commit")
		}
	}
	next := s.Changed()
	select {
	case <-next:
		t.Fatal("the channel taken after a commit is already closed")
	default:
	}
	// A refused write is not a commit.
	if _, err := s.Append(context.Background(), "s", noStream, []store.Proposed{ev("B", "{}")}); err == nil {
		t.Fatal("second no stream append succeeded")
	}
	select {
	case <-next:
		t.Fatal("a refused write closed Changed()")
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-next:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake Changed() waiters")
	}
}

func TestClosedStoreRefusesOperations(t *testing.T) {
	s, err := store.Open(store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	MustAppend(t, s, "s", any_, ev("A", "{}"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	_, err = s.Append(ctx, "s", any_, []store.Proposed{ev("B", "{}")})
	if d := checkErr(err, store.ErrClosed); d != "" {
		t.Errorf("append: %s", d)
	}
	_, err = s.Delete(ctx, "s", any_)
	if d := checkErr(err, store.ErrClosed); d != "" {
		t.Errorf("delete: %s", d)
	}
	_, err = readStream(t, s, "s", 0, false)
	if d := checkErr(err, store.ErrClosed); d != "" {
		t.Errorf("read: %s", d)
	}
	err = s.ReadAll(ctx, 0, false, func(store.Record) bool { return true })
	if d := checkErr(err, store.ErrClosed); d != "" {
		t.Errorf("read all: %s", d)
	}
}

func TestCloseFinishesQueuedAppends(t *testing.T) {
	dir := t.TempDir()
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	const writers = 16
	var wg sync.WaitGroup
	acked := make(chan uint64, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Append(context.Background(), fmt.Sprintf("w-%d", w), any_, []store.Proposed{ev("E", "{}")})
			switch {
			case err == nil:
				acked <- res.Position
			case !errors.Is(err, store.ErrClosed):
				t.Errorf("writer %d: %v", w, err)
			}
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(acked)
	s2 := MustOpen(t, store.Options{Dir: dir})
	have := map[uint64]bool{}
	for _, r := range MustReadAll(t, s2, 0, false) {
		have[r.Position] = true
	}
	for pos := range acked {
		if !have[pos] {
			t.Errorf("acknowledged position %d missing after Close and reopen", pos)
		}
	}
}

func TestReadsDuringWritesSeeEveryAcknowledgedEventInOrder(t *testing.T) {
	// A one-entry state cache makes readers load stream states from Pebble,
	// where a group being synced is already visible but not acknowledged.
	s := MustOpen(t, store.Options{StateCacheSize: 1})
	const streams = 4
	appends := 150
	if testing.Short() || raceEnabled {
		appends = 40
	}
	var acked [streams]atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writers, readers sync.WaitGroup
	for i := range streams {
		writers.Add(1)
		go func() {
			defer writers.Done()
			exp := noStream
			for range appends {
				res, err := s.Append(ctx, fmt.Sprintf("rw-%d", i), exp, []store.Proposed{ev("E", "{}")})
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				acked[i].Store(res.LastRevision + 1)
				exp = rev(res.LastRevision)
			}
		}()
	}
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; ctx.Err() == nil; n++ {
				i := (n + r) % streams
				before := acked[i].Load()
				var got uint64
				err := s.ReadStream(ctx, fmt.Sprintf("rw-%d", i), 0, false, func(rec store.Record) bool {
					if rec.Revision != got {
						t.Errorf("stream %d: revision %d at index %d", i, rec.Revision, got)
						return false
					}
					got++
					return true
				})
				if errors.Is(err, store.ErrStreamNotFound) && before == 0 || errors.Is(err, context.Canceled) {
					continue
				}
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if got < before {
					t.Errorf("stream %d: read %d events, but %d were acknowledged before the read", i, got, before)
					return
				}
			}
		}()
	}
	writers.Wait()
	cancel()
	readers.Wait()
}
