package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetjobs/fleetjobs/commands"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func MustOpen(tb testing.TB, cfg fjhttp.Config) *fjhttp.Server {
	tb.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s := fjhttp.NewServer(cfg)
	if err := s.Open(); err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// MustGet gets url and returns the status, content type and body.
func MustGet(tb testing.TB, url string) (int, string, []byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := nethttp.NewRequestWithContext(ctx, nethttp.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func MustProblem(tb testing.TB, contentType string, body []byte) fjhttp.Problem {
	tb.Helper()
	if contentType != "application/problem+json" {
		tb.Errorf("content type %q, want application/problem+json", contentType)
	}
	var p fjhttp.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		tb.Fatalf("problem body %s: %v", body, err)
	}
	return p
}

func TestHealthzAnswersWhateverTheDependencies(t *testing.T) {
	s := MustOpen(t, fjhttp.Config{Checks: []fjhttp.Check{{Name: "event log", Check: func(context.Context) error { return errors.New("down") }}}})
	code, _, body := MustGet(t, s.URL()+"/healthz")
	if code != nethttp.StatusOK {
		t.Errorf("status %d (%s), want 200", code, body)
	}
}

func TestReadyzFollowsTheChecks(t *testing.T) {
	var ready atomic.Bool
	s := MustOpen(t, fjhttp.Config{Checks: []fjhttp.Check{
		{Name: "event log", Check: func(context.Context) error {
			if !ready.Load() {
				return errors.New("connection refused")
			}
			return nil
		}},
	}})

	code, ct, body := MustGet(t, s.URL()+"/readyz")
	if code != nethttp.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	want := fjhttp.Problem{
		Type:   fjhttp.ProblemTypeBase + "not-ready",
		Title:  "Service not ready",
		Status: 503,
		Detail: "event log: not ready: connection refused",
	}
	if diff := cmp.Diff(want, MustProblem(t, ct, body)); diff != "" {
		t.Errorf("problem (-want +got):\n%s", diff)
	}

	ready.Store(true)
	if code, _, body := MustGet(t, s.URL()+"/readyz"); code != nethttp.StatusOK {
		t.Errorf("status %d (%s) once ready, want 200", code, body)
	}
}

func TestReadyzBoundsAHungCheck(t *testing.T) {
	s := MustOpen(t, fjhttp.Config{Checks: []fjhttp.Check{
		{Name: "event log", Check: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
	}})
	code, ct, body := MustGet(t, s.URL()+"/readyz")
	if code != nethttp.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", code)
	}
	if p := MustProblem(t, ct, body); p.Status != 503 {
		t.Errorf("problem status %d", p.Status)
	}
}

func TestUnknownRouteIsAProblem(t *testing.T) {
	s := MustOpen(t, fjhttp.Config{})
	code, ct, body := MustGet(t, s.URL()+"/nope")
	if code != nethttp.StatusNotFound {
		t.Errorf("status %d, want 404", code)
	}
	if p := MustProblem(t, ct, body); p.Status != 404 || p.Title != "Not Found" || p.Detail != "no route for GET /nope; the routes are listed in /api/v1/openapi.json" {
		t.Errorf("problem = %+v", p)
	}
	a := MustDo(t, s.URL(), Request{Method: "DELETE", Path: "/healthz"})
	if p := a.Problem(t); a.Code != 405 || p.Detail != "DELETE is not allowed on /healthz; the Allow header lists the methods of its route" {
		t.Errorf("DELETE /healthz: %d %+v", a.Code, p)
	}
}

// TestPostOnADeviceNamesItsAction: POST /devices/{deviceId} is routed (for
// :issueKey, which Echo cannot route apart), so a POST without the action
// is a 404 whose detail names the action, and records nothing.
func TestPostOnADeviceNamesItsAction(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices/d1"})
	want := "no route for POST /api/v1/devices/d1; a device takes one action: POST /api/v1/devices/{deviceId}:issueKey"
	if p := a.Problem(t); a.Code != 404 || p.Detail != want {
		t.Errorf("POST /api/v1/devices/d1: %d %+v, want 404 saying %q", a.Code, p, want)
	}
	if n := len(rec.Commands()); n != 0 {
		t.Errorf("%d commands recorded", n)
	}
}

func TestProblemForTable(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want fjhttp.Problem
	}{
		{"validation", &fjhttp.ValidationError{Fields: []fjhttp.FieldError{{Field: "name", Message: "required"}}},
			fjhttp.Problem{Type: fjhttp.ProblemTypeBase + "invalid-request", Title: "Invalid request", Status: 400,
				Detail: "invalid request: name: required", Errors: []fjhttp.FieldError{{Field: "name", Message: "required"}}}},
		{"unavailable", fmt.Errorf("the read models do not answer: %w", fjhttp.ErrUnavailable),
			fjhttp.Problem{Type: fjhttp.ProblemTypeBase + "unavailable", Title: "Service unavailable", Status: 503,
				Detail: "the read models do not answer: unavailable, try again later"}},
		{"timeout", context.DeadlineExceeded,
			fjhttp.Problem{Type: fjhttp.ProblemTypeBase + "timeout", Title: "Timed out", Status: 503}},
		{"the command handler closed: the service is shutting down", fmt.Errorf("job j1: %w", commands.ErrClosed),
			fjhttp.Problem{Type: fjhttp.ProblemTypeBase + "unavailable", Title: "Service unavailable", Status: 503,
				Detail: "job j1: command handler closed"}},
		{"work the service cancelled, not its client", fmt.Errorf("append job-j1: %w", context.Canceled),
			fjhttp.Problem{Type: fjhttp.ProblemTypeBase + "unavailable", Title: "Service unavailable", Status: 503}},
		{"anything else hides its detail", errors.New("pebble: corrupted sstable 000042"),
			fjhttp.Problem{Type: fjhttp.ProblemTypeBase + "internal", Title: "Internal error", Status: 500}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, fjhttp.ProblemFor(tc.err)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestsAreLoggedAtDebugOnly(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := MustOpen(t, fjhttp.Config{Logger: zap.New(core)})
	MustGet(t, s.URL()+"/healthz")
	entries := logs.FilterMessage("request").All()
	if len(entries) != 1 {
		t.Fatalf("%d request log entries, want 1", len(entries))
	}
	if e := entries[0]; e.Level != zap.DebugLevel || e.ContextMap()["path"] != "/healthz" || e.ContextMap()["status"] != int64(200) {
		t.Errorf("entry = %v %v", e.Level, e.ContextMap())
	}
	if n := logs.FilterLevelExact(zap.InfoLevel).Len(); n != 0 {
		t.Errorf("%d info entries for a healthy request, want 0", n)
	}
}

func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	s := fjhttp.NewServer(fjhttp.Config{Addr: "127.0.0.1:0", Checks: []fjhttp.Check{
		{Name: "slow", Check: func(context.Context) error {
			close(entered)
			<-release
			return nil
		}},
	}})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()

	type answer struct {
		code int
		err  error
	}
	answered := make(chan answer, 1)
	go func() { // no t.Fatal off the test goroutine: report through the channel
		resp, err := nethttp.Get("http://" + addr + "/readyz") //nolint:noctx // bounded by the server's own shutdown
		if err != nil {
			answered <- answer{err: err}
			return
		}
		resp.Body.Close()
		answered <- answer{code: resp.StatusCode}
	}()
	<-entered

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdown <- s.Shutdown(ctx)
	}()

	// The listener closes at once: new connections are refused while the
	// request in flight is still running.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 10s after Shutdown")
		}
	}
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) before the request in flight finished", err)
	default:
	}

	close(release)
	if a := <-answered; a.err != nil || a.code != nethttp.StatusOK {
		t.Errorf("in-flight request: status %d, err %v, want 200", a.code, a.err)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestEveryGetRouteAnswersHead: HEAD on every GET route answers as GET
// does (status, content type, length), with no body; a 405 on such a path
// lists HEAD in Allow.
func TestEveryGetRouteAnswersHead(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{})
	n := 0
	for _, r := range s.Routes() {
		if r.Method != nethttp.MethodGet {
			continue
		}
		n++
		path := strings.NewReplacer("{deviceId}", "d1", "{templateId}", "t1", "{setId}", "s1", "{jobId}", "j1").Replace(r.Path)
		get := MustDo(t, s.URL(), Request{Method: "GET", Path: path})
		head := MustDo(t, s.URL(), Request{Method: "HEAD", Path: path})
		if head.Code != get.Code || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") || len(head.Body) != 0 {
			t.Errorf("HEAD %s: %d %q, %d bytes; GET: %d %q", path, head.Code, head.Header.Get("Content-Type"), len(head.Body), get.Code, get.Header.Get("Content-Type"))
		}
	}
	if n == 0 {
		t.Fatal("no GET route")
	}
	a := MustDo(t, s.URL(), Request{Method: "PATCH", Path: "/healthz"})
	if allow := a.Header.Get("Allow"); a.Code != 405 || !strings.Contains(allow, "HEAD") || !strings.Contains(allow, "GET") {
		t.Errorf("PATCH /healthz: %d, Allow %q; want 405 listing GET and HEAD", a.Code, allow)
	}
}
