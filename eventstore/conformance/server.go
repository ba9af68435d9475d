package conformance

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

func serverBehaviours() []behaviour {
	return []behaviour{
		{"the client connects and reports the server version", serverVersion},
		{"persistent subscriptions answer unsupported feature", serverNoPersistentSubscriptions},
	}
}

func serverVersion(t *testing.T, s *suite, c *esdb.Client) {
	v, err := c.GetServerVersion()
	if err != nil {
		t.Fatalf("GetServerVersion: %v", err)
	}
	if s.cfg.serverVersion != nil {
		if *v != *s.cfg.serverVersion {
			t.Errorf("GetServerVersion = %+v, want %+v", *v, *s.cfg.serverVersion)
		}
		return
	}
	// A zero version means the server lacks ServerFeatures, which changes
	// client behaviour (and the client's own test gates).
	if v.Major == 0 {
		t.Errorf("GetServerVersion = %+v: no ServerFeatures version", *v)
	}
}

func serverNoPersistentSubscriptions(t *testing.T, s *suite, c *esdb.Client) {
	if !s.cfg.noPersistentSubs {
		t.Skip("the server under test may implement persistent subscriptions (see WithoutPersistentSubscriptions)")
	}
	stream := newStream("persistent")
	err := c.CreatePersistentSubscription(t.Context(), stream, "group", esdb.PersistentStreamSubscriptionOptions{})
	requireCode(t, err, esdb.ErrorCodeUnsupportedFeature, "create persistent subscription")
	err = c.CreatePersistentSubscriptionToAll(t.Context(), "group-"+uuid.NewString(), esdb.PersistentAllSubscriptionOptions{})
	requireCode(t, err, esdb.ErrorCodeUnsupportedFeature, "create persistent subscription to $all")
	// The connection is still good afterwards.
	mustAppend(t, c, stream, esdb.NoStream{}, testEvent("AfterUnsupportedTested", 0))
}

func concurrencyBehaviours() []behaviour {
	return []behaviour{
		{"concurrent exact-revision appenders each win distinct revisions of a contiguous stream", concurrentAppenders},
	}
}

// win is one revision an appender won, and the event it wrote there.
type win struct {
	rev uint64
	id  uuid.UUID
}

func concurrentAppenders(t *testing.T, s *suite, c *esdb.Client) {
	const (
		appenders = 16
		clients   = 4 // several connections, several appenders on each
	)
	target := uint64(160)
	if testing.Short() {
		target = 64
	}
	stream := newStream("concurrent")
	conns := []*esdb.Client{c}
	for len(conns) < clients {
		conns = append(conns, s.connect(t))
	}

	var (
		mu   sync.Mutex
		wins []win
		errs []error
		wg   sync.WaitGroup
	)
	for a := range appenders {
		cl := conns[a%clients]
		wg.Go(func() {
			var mine []win
			err := appendUntil(t, cl, stream, target, func(w win) { mine = append(mine, w) })
			mu.Lock()
			defer mu.Unlock()
			wins = append(wins, mine...)
			if err != nil {
				errs = append(errs, fmt.Errorf("appender %d: %w", a, err))
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	slices.SortFunc(wins, func(a, b win) int { return cmp.Compare(a.rev, b.rev) })
	for i, w := range wins {
		if w.rev != uint64(i) {
			t.Fatalf("won revisions are not 0..%d each once: position %d holds revision %d (a revision won twice or skipped)", target-1, i, w.rev)
		}
	}
	if uint64(len(wins)) != target {
		t.Fatalf("appenders won %d revisions, want %d", len(wins), target)
	}
	got := mustReadAllStream(t, c, stream)
	seen := make(map[uuid.UUID]bool, len(got))
	for i, ev := range got {
		r := ev.OriginalEvent()
		if r.EventNumber != uint64(i) {
			t.Fatalf("stream is not contiguous: event %d has revision %d", i, r.EventNumber)
		}
		if seen[r.EventID] {
			t.Fatalf("event ID %v appears twice", r.EventID)
		}
		seen[r.EventID] = true
		if i < len(wins) && r.EventID != wins[i].id {
			t.Fatalf("revision %d holds event %v, but the appender that won it wrote %v", i, r.EventID, wins[i].id)
		}
	}
	if uint64(len(got)) != target {
		t.Fatalf("stream holds %d events, want %d", len(got), target)
	}
}

// appendUntil appends single events to stream, each expecting the revision
// it last read, until the stream holds target events. A wrong expected
// version means another appender won that revision: re-read and retry.
func appendUntil(t *testing.T, c *esdb.Client, stream string, target uint64, won func(win)) error {
	for {
		last, err := readStream(t.Context(), c, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
		var exp esdb.ExpectedRevision = esdb.NoStream{}
		var next uint64
		switch code, _ := esdbCode(err); {
		case err == nil && len(last) == 1:
			next = last[0].OriginalEvent().EventNumber + 1
			exp = esdb.Revision(next - 1)
		case err != nil && code == esdb.ErrorCodeResourceNotFound:
		default:
			return fmt.Errorf("read the last revision: %d event(s), %w", len(last), err)
		}
		if next >= target {
			return nil
		}
		e := testEvent("ConcurrentTested", int(next))
		res, err := c.AppendToStream(t.Context(), stream, esdb.AppendToStreamOptions{ExpectedRevision: exp}, e)
		if code, _ := esdbCode(err); err != nil && code == esdb.ErrorCodeWrongExpectedVersion {
			continue
		}
		if err != nil {
			return fmt.Errorf("append expecting %s: %w", expectedString(exp), err)
		}
		if res.NextExpectedVersion != next {
			return fmt.Errorf("append expecting %s answered NextExpectedVersion %d, want %d", expectedString(exp), res.NextExpectedVersion, next)
		}
		won(win{next, e.EventID})
	}
}

// idleFor is how long the idle test keeps a connection and a subscription
// idle: longer than grpc-go's default keepalive enforcement lets a client
// ping (the client pings every 10 s; the default policy answers GOAWAY
// too_many_pings after about 30 s).
const idleFor = 35 * time.Second

func connectionBehaviours() []behaviour {
	return []behaviour{
		{"an idle connection and subscription survive keepalive pings", connectionIdle},
	}
}

func connectionIdle(t *testing.T, _ *suite, c *esdb.Client) {
	if testing.Short() {
		t.Skipf("idles for %v; not in -short", idleFor)
	}
	stream := newStream("idle")
	mustAppend(t, c, stream, esdb.NoStream{}, testEvent("IdleTested", 0))
	sub := mustSubscribeToStream(t, c, stream, esdb.SubscribeToStreamOptions{From: esdb.Start{}})
	sub.untilCaughtUp(t, nil)

	// Idle: nothing may arrive, in particular no drop.
	idle := time.NewTimer(idleFor)
	defer idle.Stop()
	select {
	case m := <-sub.msgs:
		t.Fatalf("idle subscription got %s after %v; want nothing (a drop here is the keepalive policy's GOAWAY)", kind(m), idleFor)
	case <-idle.C:
	}

	next := testEvent("IdleTested", 1)
	mustAppend(t, c, stream, esdb.Revision(0), next)
	if got := sub.events(t, 1, nil); got[0].OriginalEvent().EventID != next.EventID {
		t.Errorf("after idling: got revision %d, want the new event", got[0].OriginalEvent().EventNumber)
	}
}
