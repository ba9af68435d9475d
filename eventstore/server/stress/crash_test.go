package stress_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// crashStreamPrefix marks the streams the crash test writes; anything else in
// $all (system streams the server may write) is only checked for ordering.
const crashStreamPrefix = "crash-"

// appendRecord is one append the crash test attempted, acknowledged or not.
type appendRecord struct {
	Round  int
	Writer int
	Stream string
	// ExpectedFirst is the revision the first event must get when the append
	// used an exact expectation (NoStream counts as 0); -1 for Any.
	ExpectedFirst int64
	IDs           []uuid.UUID
	Data          [][]byte
	Acked         bool
	Result        esdb.WriteResult // valid when Acked
	Err           error            // why it is not acknowledged
}

func (r *appendRecord) String() string {
	state := "acked"
	if !r.Acked {
		state = fmt.Sprintf("unacked (%v)", r.Err)
	}
	return fmt.Sprintf("round %d writer %d: %d events to %s, %s", r.Round, r.Writer, len(r.IDs), r.Stream, state)
}

// ledger collects the append records of every writer.
type ledger struct {
	mu      sync.Mutex
	records []*appendRecord
}

func (l *ledger) add(r *appendRecord) {
	l.mu.Lock()
	l.records = append(l.records, r)
	l.mu.Unlock()
}

func (l *ledger) snapshot() []*appendRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*appendRecord(nil), l.records...)
}

// crashWriter is one concurrent writer; its own stream is written with exact
// expected revisions, the shared streams with Any.
type crashWriter struct {
	id      int
	rng     *rand.Rand
	seq     int
	ownLast int64 // last revision of the own stream; -1 when it has no event
}

func (w *crashWriter) ownStream() string { return fmt.Sprintf("%sw%d", crashStreamPrefix, w.id) }

// run appends until an append fails, which happens once the server is killed.
// An error while killed is false is a real failure of the server.
func (w *crashWriter) run(ctx context.Context, t *testing.T, round int, c *esdb.Client, l *ledger, killed *atomic.Bool) {
	for ctx.Err() == nil {
		n := 1
		if w.rng.IntN(2) == 0 {
			n = 2 + w.rng.IntN(19)
		}
		rec := &appendRecord{Round: round, Writer: w.id, ExpectedFirst: -1}
		var opts esdb.AppendToStreamOptions
		if w.rng.IntN(2) == 0 {
			rec.Stream = w.ownStream()
			rec.ExpectedFirst = w.ownLast + 1
			if w.ownLast < 0 {
				opts.ExpectedRevision = esdb.NoStream{}
			} else {
				opts.ExpectedRevision = esdb.Revision(uint64(w.ownLast))
			}
		} else {
			rec.Stream = fmt.Sprintf("%sshared-%d", crashStreamPrefix, w.rng.IntN(3))
			opts.ExpectedRevision = esdb.Any{}
		}
		events := make([]esdb.EventData, n)
		for i := range events {
			w.seq++
			events[i] = newEvent("w"+strconv.Itoa(w.id), w.seq)
			rec.IDs = append(rec.IDs, events[i].EventID)
			rec.Data = append(rec.Data, events[i].Data)
		}
		res, err := c.AppendToStream(ctx, rec.Stream, opts, events...)
		if err != nil {
			rec.Err = err
			l.add(rec)
			if !killed.Load() {
				t.Errorf("%v: failed while the server was up", rec)
			}
			return
		}
		rec.Acked = true
		rec.Result = *res
		l.add(rec)
		if rec.ExpectedFirst >= 0 {
			w.ownLast = rec.ExpectedFirst + int64(n) - 1
			if res.NextExpectedVersion != uint64(w.ownLast) {
				t.Errorf("%v: ack says last revision %d, want %d", rec, res.NextExpectedVersion, w.ownLast)
				w.ownLast = int64(res.NextExpectedVersion)
			}
		}
	}
}

// TestCrashLosesNoAcknowledgedEvent kills the store process with SIGKILL
// under concurrent appends, restarts it on the same directory and checks that
// every acknowledged append survived exactly as acknowledged, that no append
// is half visible, and that the log keeps its order and numbering.
func TestCrashLosesNoAcknowledgedEvent(t *testing.T) {
	rounds, writers := 5, 8
	switch {
	case longRun():
		rounds = 30
	case testing.Short():
		rounds = 3
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("STRESS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("STRESS_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (STRESS_SEED=%d reproduces the random choices, not the timing)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	dir := t.TempDir()
	l := &ledger{}
	ws := make([]*crashWriter, writers)
	for i := range ws {
		ws[i] = &crashWriter{id: i, rng: rand.New(rand.NewPCG(seed, uint64(i+1))), ownLast: -1}
	}
	var before []storedEvent // the test's events as verified after the previous restart
	var head uint64          // the last position in $all then

	for round := 0; ; round++ {
		child := MustStartChild(t, dir)
		c := MustClient(t, child.addr)
		before, head = mustVerifyCrashLog(t, c, l.snapshot(), before)
		for _, w := range ws {
			w.ownLast = lastRevision(before, w.ownStream())
		}
		if round == rounds {
			mustCheckAfterLastRound(t, child, c, dir, l, before, head)
			return
		}

		// New clients for the new process: a client whose connection failed
		// during discovery is closed for good.
		clients := make([]*esdb.Client, writers)
		for i := range clients {
			clients[i] = MustClient(t, child.addr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var killed atomic.Bool
		var wg sync.WaitGroup
		for i, w := range ws {
			wg.Go(func() { w.run(ctx, t, round, clients[i], l, &killed) })
		}
		delay := time.Duration(50+rng.IntN(351)) * time.Millisecond
		time.Sleep(delay) // the kill moment itself is what is random here, not a wait for a condition
		killed.Store(true)
		child.kill()
		wg.Wait()
		cancel()
		for _, cl := range clients {
			_ = cl.Close()
		}
		acked, unacked := 0, 0
		for _, r := range l.snapshot() {
			if r.Round == round {
				if r.Acked {
					acked++
				} else {
					unacked++
				}
			}
		}
		t.Logf("round %d: killed after %v; %d appends acknowledged, %d cut off", round, delay, acked, unacked)
		if acked == 0 {
			t.Logf("round %d: no append was acknowledged before the kill", round)
		}
		if t.Failed() {
			return
		}
	}
}

// TestLockedDirectoryRefusesASecondProcess opens a data directory a child
// process serves: two processes writing one Pebble directory would corrupt
// it, so the second must fail at once with store.ErrLocked.
func TestLockedDirectoryRefusesASecondProcess(t *testing.T) {
	dir := t.TempDir()
	child := MustStartChild(t, dir)
	srv, err := server.Start(context.Background(), server.Options{Dir: dir, Listen: "127.0.0.1:0"})
	if err == nil {
		_ = srv.Close()
		t.Fatalf("second Start on %s (served by pid %d) succeeded", dir, child.Pid())
	}
	if !errors.Is(err, store.ErrLocked) {
		t.Errorf("second Start: %v, want store.ErrLocked in the chain", err)
	}
	child.MustStop(t)
	// The lock leaves with the process: the directory opens again.
	MustStartServer(t, server.Options{Dir: dir})
}

// mustCheckAfterLastRound appends once more (its position must be above
// every old one), stops the child cleanly and checks the log once more, so a
// clean shutdown is covered too.
func mustCheckAfterLastRound(t *testing.T, child *childProcess, c *esdb.Client, dir string, l *ledger, before []storedEvent, head uint64) {
	t.Helper()
	ev := newEvent("final", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.AppendToStream(ctx, crashStreamPrefix+"final", esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev)
	if err != nil {
		t.Fatalf("append after the last restart: %v", err)
	}
	if res.CommitPosition <= head {
		t.Errorf("append after restart got position %d, not above the old head of $all %d", res.CommitPosition, head)
	}
	l.add(&appendRecord{Round: -1, Writer: -1, Stream: crashStreamPrefix + "final", ExpectedFirst: 0,
		IDs: []uuid.UUID{ev.EventID}, Data: [][]byte{ev.Data}, Acked: true, Result: *res})
	_ = c.Close()
	child.MustStop(t)

	child = MustStartChild(t, dir)
	c = MustClient(t, child.addr)
	after, _ := mustVerifyCrashLog(t, c, l.snapshot(), before)
	if len(after) != len(before)+1 {
		t.Errorf("after a clean restart the log has %d test events, want %d", len(after), len(before)+1)
	}
	child.MustStop(t)
}

// lastRevision is the last revision of stream in log, -1 when it has none.
func lastRevision(log []storedEvent, stream string) int64 {
	last := int64(-1)
	for _, e := range log {
		if e.Stream == stream {
			last = int64(e.Revision)
		}
	}
	return last
}

// errLimiter prints the first errors of a verification and counts the rest:
// one broken invariant would otherwise print thousands of lines.
type errLimiter struct {
	t          *testing.T
	n          int
	lostAcked  int // acknowledged appends with no event left
	lostEvents int
	partial    int // appends with some but not all events present
}

func (e *errLimiter) Errorf(format string, args ...any) {
	e.t.Helper()
	e.n++
	if e.n <= 20 {
		e.t.Errorf(format, args...)
	}
}

// done summarises and stops the test if anything was wrong: later rounds
// would only pile consequences on the first failure.
func (e *errLimiter) done(total int) {
	e.t.Helper()
	if e.n == 0 {
		return
	}
	e.t.Fatalf("verification failed: %d errors (%d printed); %d of %d appends acknowledged but lost (%d events), %d partially visible",
		e.n, min(e.n, 20), e.lostAcked, total, e.lostEvents, e.partial)
}

// mustVerifyCrashLog reads the whole log and checks it against the ledger
// and the log verified at the previous restart; it returns the test's events
// in $all order and the last position of $all.
func mustVerifyCrashLog(t *testing.T, c *esdb.Client, records []*appendRecord, before []storedEvent) (ours []storedEvent, head uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all, err := readAll(ctx, c)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	e := &errLimiter{t: t}

	// $all: strictly increasing positions, commit == prepare, unique IDs.
	if len(all) > 0 {
		head = all[len(all)-1].Commit
	}
	byID := make(map[uuid.UUID]int, len(all))
	for i, ev := range all {
		if i > 0 && ev.Commit <= all[i-1].Commit {
			e.Errorf("$all position %d at index %d is not above %d at index %d", ev.Commit, i, all[i-1].Commit, i-1)
		}
		if ev.Commit != ev.Prepare || ev.Commit == 0 {
			e.Errorf("$all index %d: position (%d,%d), want commit == prepare > 0", i, ev.Commit, ev.Prepare)
		}
		if !strings.HasPrefix(ev.Stream, crashStreamPrefix) {
			continue
		}
		if j, dup := byID[ev.ID]; dup {
			e.Errorf("event %s appears twice in $all, at %s@%d and %s@%d", ev.ID, all[j].Stream, all[j].Revision, ev.Stream, ev.Revision)
		}
		byID[ev.ID] = len(ours)
		ours = append(ours, ev)
	}

	// Everything verified at the previous restart is still there, unchanged,
	// and everything written since comes after it.
	if len(ours) < len(before) {
		e.Errorf("the log shrank: %d test events, %d at the previous restart", len(ours), len(before))
	} else if diff := eventsDiff(before, ours[:len(before)]); diff != "" {
		e.Errorf("the events verified at the previous restart changed or were reordered: %s", diff)
	}

	// Each append is all there or not at all; acknowledged ones are there as
	// acknowledged.
	accounted := make(map[uuid.UUID]bool, len(ours))
	unacked, committedUnacked := 0, 0
	for _, r := range records {
		present := 0
		for _, id := range r.IDs {
			if _, ok := byID[id]; ok {
				present++
			}
			accounted[id] = true
		}
		switch {
		case present == 0 && r.Acked:
			e.lostAcked++
			e.lostEvents += len(r.IDs)
			e.Errorf("%v: lost all %d acknowledged events", r, len(r.IDs))
			continue
		case present == 0:
			unacked++
			continue
		case present != len(r.IDs):
			e.partial++
			e.Errorf("%v: partial append, %d of %d events present", r, present, len(r.IDs))
			continue
		}
		if !r.Acked {
			unacked++
			committedUnacked++
		}
		first := byID[r.IDs[0]]
		for i, id := range r.IDs {
			k := byID[id]
			ev := ours[k]
			if k != first+i {
				e.Errorf("%v: event %d is at test-event index %d, want %d (a batch must be contiguous in $all)", r, i, k, first+i)
			}
			if ev.Stream != r.Stream {
				e.Errorf("%v: event %d is in stream %s", r, i, ev.Stream)
			}
			if ev.Revision != ours[first].Revision+uint64(i) {
				e.Errorf("%v: event %d has revision %d, want %d", r, i, ev.Revision, ours[first].Revision+uint64(i))
			}
			if !bytes.Equal(ev.Data, r.Data[i]) {
				e.Errorf("%v: event %d data %q, want %q", r, i, ev.Data, r.Data[i])
			}
			if ev.Type != "StressEvent" {
				e.Errorf("%v: event %d type %q", r, i, ev.Type)
			}
		}
		if r.ExpectedFirst >= 0 && ours[first].Revision != uint64(r.ExpectedFirst) {
			e.Errorf("%v: first revision %d, want %d", r, ours[first].Revision, r.ExpectedFirst)
		}
		if r.Acked {
			last := ours[byID[r.IDs[len(r.IDs)-1]]]
			if last.Revision != r.Result.NextExpectedVersion {
				e.Errorf("%v: last revision %d, ack said %d", r, last.Revision, r.Result.NextExpectedVersion)
			}
			if last.Commit != r.Result.CommitPosition || last.Prepare != r.Result.PreparePosition {
				e.Errorf("%v: last event at (%d,%d), ack said (%d,%d)", r, last.Commit, last.Prepare, r.Result.CommitPosition, r.Result.PreparePosition)
			}
		}
	}
	for _, ev := range ours {
		if !accounted[ev.ID] {
			e.Errorf("event %s at %s@%d was never appended by the test", ev.ID, ev.Stream, ev.Revision)
		}
	}

	// Each stream numbers its events 0, 1, 2... in $all order, and a stream
	// read returns exactly that.
	perStream := map[string][]storedEvent{}
	for _, ev := range ours {
		perStream[ev.Stream] = append(perStream[ev.Stream], ev)
	}
	for stream, evs := range perStream {
		for i, ev := range evs {
			if ev.Revision != uint64(i) {
				e.Errorf("stream %s: event %d of $all order has revision %d", stream, i, ev.Revision)
				break
			}
		}
		got, err := readStream(ctx, c, stream)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if diff := eventsDiff(evs, got); diff != "" {
			e.Errorf("stream %s: read differs from its events in $all: %s", stream, diff)
		}
	}
	e.done(len(records))
	t.Logf("verified %d test events of %d appends; %d of the %d cut-off appends had committed (all or nothing, as required)",
		len(ours), len(records), committedUnacked, unacked)
	return ours, head
}
