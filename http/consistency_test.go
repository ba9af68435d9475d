package http_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// progress stands in for the projection runner (not written yet): it has
// applied the log up to a commit position, and WaitFor blocks until it has
// applied the token's. Tokens are C:<commit>/P:<prepare>.
type progress struct {
	mu      sync.Mutex
	applied uint64
	changed chan struct{} // closed and replaced on every advance
	waiting chan struct{} // gets a value whenever a WaitFor starts waiting
}

func newProgress() *progress {
	return &progress{changed: make(chan struct{}), waiting: make(chan struct{}, 16)}
}

func (p *progress) advance(to uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.applied = to
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *progress) WaitFor(ctx context.Context, token string) error {
	c, rest, ok := strings.Cut(token, "/")
	commit, err := strconv.ParseUint(strings.TrimPrefix(c, "C:"), 10, 64)
	if !ok || !strings.HasPrefix(c, "C:") || !strings.HasPrefix(rest, "P:") || err != nil {
		return fmt.Errorf("%w: %q", fjhttp.ErrMalformedToken, token)
	}
	for {
		p.mu.Lock()
		applied, changed := p.applied, p.changed
		p.mu.Unlock()
		if applied >= commit {
			return nil
		}
		select {
		case p.waiting <- struct{}{}:
		default:
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestCommandAnswersCarryTheToken(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{})
	a := MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/device-templates/t1", Header: JSONHeader(), Body: `{"name":"vending"}`})
	if a.Code != 200 {
		t.Fatalf("status %d: %s", a.Code, a.Body)
	}
	if got := a.Header.Get(fjhttp.ConsistencyTokenHeader); got != "C:10/P:10" {
		t.Errorf("token %q, want the command's C:10/P:10", got)
	}
}

func TestQueryWaitsForItsToken(t *testing.T) {
	p := newProgress()
	s, _, v := MustOpenAPI(t, fjhttp.Config{Waiter: p})
	v.templates["t1"] = fjhttp.Template{ID: "t1", Name: "vending"}

	type result struct {
		a   Answer
		err error
	}
	answered := make(chan result, 1)
	go func() { // no t.Fatal off the test goroutine: report through the channel
		a, err := Do(s.URL(), Request{Method: "GET", Path: "/api/v1/device-templates/t1",
			Header: map[string]string{fjhttp.ConsistencyTokenHeader: "C:7/P:7"}})
		answered <- result{a, err}
	}()
	<-p.waiting // the request is waiting for the read models
	select {
	case r := <-answered:
		t.Fatalf("answered (%d, %v) before the read models reached the token", r.a.Code, r.err)
	default:
	}
	p.advance(7)
	if r := <-answered; r.err != nil || r.a.Code != 200 {
		t.Errorf("status %d (%s), err %v, want 200 once caught up", r.a.Code, r.a.Body, r.err)
	}

	// Already there: no wait at all.
	if a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-templates/t1",
		Header: map[string]string{fjhttp.ConsistencyTokenHeader: "C:3/P:3"}}); a.Code != 200 {
		t.Errorf("status %d (%s)", a.Code, a.Body)
	}
}

func TestQueryGivesUpWith503AndRetryAfter(t *testing.T) {
	p := newProgress()
	// The bound is shortened so that the test does not take the default 5 s.
	s, _, _ := MustOpenAPI(t, fjhttp.Config{Waiter: p, ConsistencyWait: 50 * time.Millisecond})
	a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices",
		Header: map[string]string{fjhttp.ConsistencyTokenHeader: "C:99/P:99"}})
	if a.Code != 503 {
		t.Fatalf("status %d (%s), want 503", a.Code, a.Body)
	}
	if ra := a.Header.Get("Retry-After"); ra == "" {
		t.Error("503 without Retry-After")
	}
	if pr := a.Problem(t); pr.Type != fjhttp.ProblemTypeBase+"not-caught-up" || !strings.Contains(pr.Detail, "C:99/P:99") {
		t.Errorf("problem %+v", pr)
	}
}

func TestMalformedTokenNamesTheHeader(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{Waiter: newProgress()})
	a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-sets",
		Header: map[string]string{fjhttp.ConsistencyTokenHeader: "yesterday"}})
	if a.Code != 400 {
		t.Fatalf("status %d (%s), want 400", a.Code, a.Body)
	}
	if pr := a.Problem(t); len(pr.Errors) != 1 || pr.Errors[0].Field != fjhttp.ConsistencyTokenHeader {
		t.Errorf("errors %+v, want one naming %s", pr.Errors, fjhttp.ConsistencyTokenHeader)
	}
}
