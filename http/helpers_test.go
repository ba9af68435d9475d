package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"sync"
	"testing"
	"time"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// Answer is one HTTP answer, read whole.
type Answer struct {
	Code   int
	Header nethttp.Header
	Body   []byte
}

// Problem decodes the answer as problem+json, failing if it is not one.
func (a Answer) Problem(tb testing.TB) fjhttp.Problem {
	tb.Helper()
	return MustProblem(tb, a.Header.Get("Content-Type"), a.Body)
}

// Request is one request to send; Header values are set as given.
type Request struct {
	Method string
	Path   string
	Header map[string]string
	Body   string
}

// MustDo sends r to the server at base and reads the answer.
func MustDo(tb testing.TB, base string, r Request) Answer {
	tb.Helper()
	a, err := Do(base, r)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// Do is MustDo for goroutines other than the test's: it reports instead of
// failing the test.
func Do(base string, r Request) (Answer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var body io.Reader
	if r.Body != "" {
		body = bytes.NewBufferString(r.Body)
	}
	req, err := nethttp.NewRequestWithContext(ctx, r.Method, base+r.Path, body)
	if err != nil {
		return Answer{}, err
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	if r.Header["Transfer-Encoding"] == "chunked" {
		req.ContentLength = -1 // unknown length: sent chunked
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: %w", r.Method, r.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: read body: %w", r.Method, r.Path, err)
	}
	return Answer{Code: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// MustDecode decodes a JSON answer into a T.
func MustDecode[T any](tb testing.TB, a Answer) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(a.Body, &v); err != nil {
		tb.Fatalf("decode %s: %v", a.Body, err)
	}
	return v
}

// JSONHeader is the header of a JSON body.
func JSONHeader() map[string]string { return map[string]string{"Content-Type": "application/json"} }

// With returns h plus k: v.
func With(h map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(h)+len(kv)/2)
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// recorder stands in for the commands package, which does not exist yet:
// it records every command it is given and answers with a fixed token.
// It is a test double of a consumer-owned interface, not of a store.
type recorder struct {
	mu       sync.Mutex
	commands []any
	token    string
	created  bool
	notes    []string
	key      string // the DeviceKey of every answer
	err      error
}

func (r *recorder) record(cmd any) (fjhttp.CommandResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return fjhttp.CommandResult{}, r.err
	}
	r.commands = append(r.commands, cmd)
	return fjhttp.CommandResult{Token: r.token, Created: r.created, Notes: r.notes, DeviceKey: r.key}, nil
}

func (r *recorder) Commands() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.commands...)
}

func (r *recorder) PublishTemplate(_ context.Context, c fjhttp.PublishTemplate) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) DeleteTemplate(_ context.Context, c fjhttp.DeleteTemplate) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) RegisterDevice(_ context.Context, c fjhttp.RegisterDevice) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) IssueDeviceKey(_ context.Context, c fjhttp.IssueDeviceKey) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) DeleteDevice(_ context.Context, c fjhttp.DeleteDevice) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) DefineDeviceSet(_ context.Context, c fjhttp.DefineDeviceSet) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) DeleteDeviceSet(_ context.Context, c fjhttp.DeleteDeviceSet) (fjhttp.CommandResult, error) {
	return r.record(c)
}
func (r *recorder) ImportDevices(_ context.Context, c fjhttp.ImportDevices) (fjhttp.ImportResult, error) {
	if len(c.Refused) > 0 {
		return fjhttp.ImportResult{}, nil // only checks, records nothing
	}
	res, err := r.record(c)
	if err != nil {
		return fjhttp.ImportResult{}, err
	}
	return fjhttp.ImportResult{Token: res.Token, Registered: len(c.Rows)}, nil
}

// views stands in for the projections' read models, which do not exist
// yet: fixed answers, and the page each list was asked for.
type views struct {
	mu        sync.Mutex
	templates map[string]fjhttp.Template
	devices   map[string]fjhttp.Device
	sets      map[string]fjhttp.DeviceSet
	pages     []fjhttp.Page
	filters   []fjhttp.DeviceFilter
}

func newViews() *views {
	return &views{templates: map[string]fjhttp.Template{}, devices: map[string]fjhttp.Device{}, sets: map[string]fjhttp.DeviceSet{}}
}

func (v *views) notePage(p fjhttp.Page) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pages = append(v.pages, p)
}

func (v *views) Pages() []fjhttp.Page {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]fjhttp.Page(nil), v.pages...)
}

func get[T any](v *views, m map[string]T, kind, id string) (T, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := m[id]
	if !ok {
		return t, fmt.Errorf("%s %s: %w", kind, id, fjhttp.ErrNotFound)
	}
	return t, nil
}

func (v *views) Template(_ context.Context, id string) (fjhttp.Template, error) {
	return get(v, v.templates, "device template", id)
}
func (v *views) Templates(_ context.Context, p fjhttp.Page) (fjhttp.List[fjhttp.Template], error) {
	v.notePage(p)
	return fjhttp.List[fjhttp.Template]{}, nil
}
func (v *views) Device(_ context.Context, id string) (fjhttp.Device, error) {
	return get(v, v.devices, "device", id)
}
func (v *views) Devices(_ context.Context, f fjhttp.DeviceFilter, p fjhttp.Page) (fjhttp.List[fjhttp.Device], error) {
	v.notePage(p)
	v.mu.Lock()
	v.filters = append(v.filters, f)
	v.mu.Unlock()
	return fjhttp.List[fjhttp.Device]{Next: "c2"}, nil
}
func (v *views) DeviceSet(_ context.Context, id string) (fjhttp.DeviceSet, error) {
	return get(v, v.sets, "device set", id)
}
func (v *views) DeviceSets(_ context.Context, p fjhttp.Page) (fjhttp.List[fjhttp.DeviceSet], error) {
	v.notePage(p)
	return fjhttp.List[fjhttp.DeviceSet]{}, nil
}
func (v *views) SetMembers(_ context.Context, id string, p fjhttp.Page) (fjhttp.Members, error) {
	v.notePage(p)
	s, err := get(v, v.sets, "device set", id)
	if err != nil {
		return fjhttp.Members{}, err
	}
	if s.Broken {
		return fjhttp.Members{Broken: true, BrokenReason: s.BrokenReason}, nil
	}
	return fjhttp.Members{Items: []fjhttp.Device{{ID: "d1", Name: "one", TemplateID: s.TemplateID}}}, nil
}

// MustOpenAPI starts a server with every dependency: commands recorded,
// queries answered by v, and whatever else cfg says.
func MustOpenAPI(tb testing.TB, cfg fjhttp.Config) (*fjhttp.Server, *recorder, *views) {
	tb.Helper()
	rec := &recorder{token: "C:10/P:10"}
	v := newViews()
	cfg.DeviceCommands = rec
	cfg.DeviceQueries = v
	cfg = withJobs(cfg, newJobStub(1))
	return MustOpen(tb, cfg), rec, v
}
