package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// fleet is a served fleetjobs with a template, four devices and a device
// set of three of them ("seattle": vm-1, vm-2, vm-3).
type fleet struct {
	m     *main.Main
	api   string
	es    *eventstore.Client
	token string // the consistency token of the last setup command
}

// MustFleet serves fleetjobs (embedded event store, real Redis) and
// records the fleet every job test uses.
func MustFleet(tb testing.TB, cfg main.Config, headers map[string]string) *fleet {
	tb.Helper()
	m := MustServe(tb, cfg, nil)
	f := &fleet{m: m, api: m.HTTPURL() + fjhttp.APIBase, es: MustEventStore(tb, m)}
	MustStatus(tb, Do(tb, http.MethodPut, f.api+"/device-templates/vending-v2", vendingBody, headers), http.StatusCreated)
	for _, d := range []struct{ id, city string }{{"vm-1", "Seattle"}, {"vm-2", "Seattle"}, {"vm-3", "Seattle"}, {"vm-4", "Portland"}} {
		MustStatus(tb, Do(tb, http.MethodPut, f.api+"/devices/"+d.id, deviceBody("Machine "+d.id, "vending-v2", d.city, 4), headers), http.StatusCreated)
	}
	set := map[string]any{"name": "Seattle machines", "templateId": "vending-v2",
		"conditions": []map[string]any{{"property": "city", "op": "eq", "value": "Seattle"}}}
	f.token = MustStatus(tb, Do(tb, http.MethodPut, f.api+"/device-sets/seattle", set, headers), http.StatusCreated).Token()
	return f
}

// jobBody is a valid job on the seattle set, changed by the options.
func jobBody(name string, change ...func(map[string]any)) map[string]any {
	b := map[string]any{"name": name, "description": "fans up", "deviceSetId": "seattle", "jobType": "setting",
		"operations": []map[string]any{{"name": "fanSpeed", "value": 1200}}}
	for _, c := range change {
		c(b)
	}
	return b
}

func header(kv ...string) map[string]string {
	h := make(map[string]string)
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// MustStartJob starts a job the way the dispatcher will (it is not written
// yet): through the command path, on the same event log.
func MustStartJob(tb testing.TB, es *eventstore.Client, id string) string {
	tb.Helper()
	h := commands.New(es, eventstore.NewCatalogCodec(), time.Now, uuid.NewString, nil)
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := h.StartJob(ctx, commands.Meta{Actor: "test-dispatcher"}, job.Start{JobID: id})
	if err != nil {
		tb.Fatalf("start job %s: %v", id, err)
	}
	return r.Position.String()
}

func (f *fleet) job(tb testing.TB, id, token string) fjhttp.Job {
	tb.Helper()
	return MustDecode[fjhttp.Job](tb, MustStatus(tb, Do(tb, http.MethodGet, f.api+"/jobs/"+id, nil, WithToken(token)), http.StatusOK))
}

func (f *fleet) result(tb testing.TB, id, dev, status, msg string, want int) Answer {
	tb.Helper()
	return MustStatus(tb, Do(tb, http.MethodPost, f.api+"/jobs/"+id+"/devices/"+dev+"/result", map[string]any{"status": status, "error": msg}, nil), want)
}

func (f *fleet) devices(tb testing.TB, id, query, token string) []fjhttp.JobDevice {
	tb.Helper()
	l := MustDecode[fjhttp.List[fjhttp.JobDevice]](tb, MustStatus(tb, Do(tb, http.MethodGet, f.api+"/jobs/"+id+"/devices"+query, nil, WithToken(token)), http.StatusOK))
	for i := range l.Items {
		l.Items[i].UpdatedAt = time.Time{}
	}
	return l.Items
}

// TestIdempotencyKeyReusedForAnotherRequest: a key sent again with another
// request is another command, recorded, not a retry answered 2xx with
// nothing recorded: stopping a job with the key that created it stops it.
func TestIdempotencyKeyReusedForAnotherRequest(t *testing.T) {
	url, root := MustRedisURL(t)
	f := MustFleet(t, ServeConfig(t, url, root), nil)
	reused := header("Idempotency-Key", "reused-key", fjhttp.ConsistencyTokenHeader, f.token)
	id := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Reused"), reused), http.StatusCreated)).ID
	halt := MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/"+id+"/stop", map[string]any{"reason": "key reused"}, reused), http.StatusOK)
	if got := f.job(t, id, halt.Token()); got.Status != "stopped" || got.Reason != "key reused" {
		t.Errorf("stopped with the creating request's key: %s %q, want stopped %q", got.Status, got.Reason, "key reused")
	}
}

// TestIdempotencyKeyCreatesOneJob: POST /jobs and POST /jobs/{jobId}/copy
// derive the new job's ID from the Idempotency-Key alone, so a key creates
// one job: the same request again is answered with it, recorded once;
// another request under the key (another body, the same definition asked
// otherwise, a copy) is refused with 422 naming the header and records
// nothing. Without a key, every POST creates a job.
func TestIdempotencyKeyCreatesOneJob(t *testing.T) {
	url, root := MustRedisURL(t)
	f := MustFleet(t, ServeConfig(t, url, root), nil)
	key := func(k string) map[string]string {
		return header("Idempotency-Key", k, fjhttp.ConsistencyTokenHeader, f.token)
	}
	head := func() eventstore.Position {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		pos, err := f.es.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return pos
	}
	refused := func(name, path string, body any, k string) {
		t.Helper()
		before := head()
		p := MustProblem(t, Do(t, http.MethodPost, f.api+path, body, key(k)), http.StatusUnprocessableEntity, "Idempotency-Key")
		if want := []fjhttp.FieldError{{Field: "Idempotency-Key", Message: "already used for another request; use a new key for a new request"}}; !cmp.Equal(want, p.Errors) {
			t.Errorf("%s: errors %+v, want %+v", name, p.Errors, want)
		}
		if after := head(); after != before {
			t.Errorf("%s recorded events: the log's head moved from %s to %s", name, before, after)
		}
	}

	created := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Fans up"), key("abc")), http.StatusCreated))
	before := head()
	again := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Fans up"), key("abc")), http.StatusOK))
	if again.ID != created.ID || again.Created || head() != before {
		t.Errorf("the same request again: job %s (created %t), want job %s recorded once", again.ID, again.Created, created.ID)
	}
	refused("another name", "/jobs", jobBody("Fans down"), "abc")
	refused("the same definition asked otherwise", "/jobs", jobBody("Fans up", func(b map[string]any) { b["timeoutSeconds"] = 30 }), "abc")
	refused("a copy under the key", "/jobs/"+created.ID+"/copy", nil, "abc")

	MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/other", jobBody("Other"), nil), http.StatusCreated)
	cp := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/"+created.ID+"/copy", nil, key("copy-1")), http.StatusCreated))
	if again := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/"+created.ID+"/copy", nil, key("copy-1")), http.StatusOK)); again.ID != cp.ID {
		t.Errorf("the same copy again: job %s, want %s", again.ID, cp.ID)
	}
	refused("a copy of another job", "/jobs/other/copy", nil, "copy-1")
	refused("a create under a copy's key", "/jobs", jobBody("Fans up"), "copy-1")

	ids := map[string]bool{created.ID: true, cp.ID: true, "other": true}
	for range 2 {
		id := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Fans up"), WithToken(f.token)), http.StatusCreated)).ID
		if ids[id] {
			t.Errorf("POST without a key: job %s again", id)
		}
		ids[id] = true
	}
}

// TestCopyJobBody: POST /jobs/{jobId}/copy takes no body, or a JSON object
// whose name and description replace the old job's in the copy; anything
// else is a 400 naming the field and records nothing. Under an
// Idempotency-Key the body is part of the request: the same copy again is
// answered with the job, another body under the key is refused (422).
func TestCopyJobBody(t *testing.T) {
	url, root := MustRedisURL(t)
	f := MustFleet(t, ServeConfig(t, url, root), nil)
	MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/orig", jobBody("Original"), WithToken(f.token)), http.StatusCreated)
	copyOf := func(body any, headers map[string]string) Answer {
		t.Helper()
		return Do(t, http.MethodPost, f.api+"/jobs/orig/copy", body, headers)
	}
	for _, c := range []struct {
		name    string
		body    string
		headers map[string]string
		field   string
		status  int
	}{
		{"not JSON", "garbage", header("Content-Type", "text/plain"), "Content-Type", http.StatusUnsupportedMediaType},
		{"malformed JSON", "garbage", nil, "body", http.StatusBadRequest},
		{"unknown field", `{"name":"x","deviceSetId":"other"}`, nil, "deviceSetId", http.StatusBadRequest},
		{"wrong type", `{"name":5}`, nil, "name", http.StatusBadRequest},
		{"not an object", `["x"]`, nil, "body", http.StatusBadRequest},
		{"a name the rules refuse", `{"name":"  "}`, nil, "name", http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := MustHead(t, f.es)
			MustProblem(t, copyOf(c.body, c.headers), c.status, c.field)
			if after := MustHead(t, f.es); after != before {
				t.Errorf("the log moved from %s to %s: something was recorded", before, after)
			}
		})
	}

	renamed := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, copyOf(map[string]any{"name": "Renamed", "description": "again"}, nil), http.StatusCreated))
	if renamed.Name != "Renamed" || renamed.Description != "again" || renamed.DeviceSetID != "seattle" || len(renamed.Operations) != 1 {
		t.Errorf("copy with a name and a description: %+v", renamed.Job)
	}
	plain := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, copyOf(nil, nil), http.StatusCreated))
	if plain.Name != "Original" || plain.Description != "fans up" {
		t.Errorf("copy without a body: name %q, description %q", plain.Name, plain.Description)
	}

	key := header("Idempotency-Key", "copy-key")
	first := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, copyOf(map[string]any{"name": "Keyed"}, key), http.StatusCreated))
	again := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, copyOf(`{ "name" : "Keyed" }`, key), http.StatusOK))
	if again.ID != first.ID || again.Name != "Keyed" {
		t.Errorf("the same copy again: %s %q, want %s", again.ID, again.Name, first.ID)
	}
	before := MustHead(t, f.es)
	MustProblem(t, copyOf(map[string]any{"name": "Other"}, key), http.StatusUnprocessableEntity, "Idempotency-Key")
	if after := MustHead(t, f.es); after != before {
		t.Errorf("another copy under a used key recorded events")
	}
	MustStatus(t, copyOf(nil, header("Idempotency-Key", "empty-key")), http.StatusCreated)
	MustStatus(t, copyOf(`{}`, header("Idempotency-Key", "empty-key")), http.StatusOK)
}

// TestJobLifecycle drives the job routes through the real server: create
// (PUT idempotent, POST with Idempotency-Key), results over HTTP until the
// job completes or fails, stop and stop again, late results, a device
// deleted after targeting, the list, the summary, the history and a copy.
func TestJobLifecycle(t *testing.T) {
	url, root := MustRedisURL(t)
	f := MustFleet(t, ServeConfig(t, url, root), nil)

	// PUT: 201, the same body 200, another body 409.
	put := MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/j1", jobBody("Fans up"), WithToken(f.token)), http.StatusCreated)
	if put.Token() == "" || put.Header.Get("Location") != fjhttp.APIBase+"/jobs/j1" {
		t.Fatalf("PUT job: token %q, location %q", put.Token(), put.Header.Get("Location"))
	}
	same := MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/j1", jobBody("Fans up"), nil), http.StatusOK)
	p := MustProblem(t, Do(t, http.MethodPut, f.api+"/jobs/j1", jobBody("Fans down"), nil), http.StatusConflict, "")
	if !strings.Contains(p.Detail, "another definition") {
		t.Errorf("another body: detail %q", p.Detail)
	}
	got := f.job(t, "j1", put.Token())
	want := fjhttp.Job{ID: "j1", Name: "Fans up", Description: "fans up", Status: "pending", DeviceSetID: "seattle", JobType: "setting",
		Operations: []fjhttp.Operation{{Name: "fanSpeed", Value: 1200.0}}, TimeoutSeconds: 30, BatchSize: 100,
		Counts: fjhttp.JobCounts{Total: 3, Pending: 3}}
	if diff := cmp.Diff(want, got, cmpIgnoreTimes); diff != "" {
		t.Errorf("GET job (-want +got):\n%s", diff)
	}
	// The answers carry the job: the new one as decided, at the command's
	// time (the read model's createdAt); the same body again, as it is.
	created := MustDecode[fjhttp.JobAnswer](t, put)
	if diff := cmp.Diff(fjhttp.JobAnswer{Job: got, Created: true}, created); diff != "" {
		t.Errorf("PUT job answer (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(fjhttp.JobAnswer{Job: got}, MustDecode[fjhttp.JobAnswer](t, same)); diff != "" {
		t.Errorf("PUT job again, answer (-want +got):\n%s", diff)
	}

	// POST with an Idempotency-Key: the same key, the same job.
	key := header("Idempotency-Key", "create-j2-once", fjhttp.ConsistencyTokenHeader, f.token)
	first := MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Chosen", func(b map[string]any) { b["deviceIds"] = []string{"vm-1"} }), key), http.StatusCreated)
	again := MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Chosen", func(b map[string]any) { b["deviceIds"] = []string{"vm-1"} }), key), http.StatusOK)
	firstAns, againAns := MustDecode[fjhttp.JobAnswer](t, first), MustDecode[fjhttp.JobAnswer](t, again)
	j2 := firstAns.ID
	if j2 == "" || againAns.ID != j2 || first.Header.Get("Location") != fjhttp.APIBase+"/jobs/"+j2 {
		t.Fatalf("POST twice with one key: %s then %s, location %q", first.Body, again.Body, first.Header.Get("Location"))
	}
	for _, a := range []fjhttp.JobAnswer{firstAns, againAns} {
		if a.Name != "Chosen" || a.Status != "pending" || a.Counts != (fjhttp.JobCounts{Total: 1, Pending: 1}) || a.CreatedAt.IsZero() {
			t.Errorf("POST answer: %+v, want Chosen, pending on 1 device", a)
		}
	}
	if !firstAns.Created || againAns.Created {
		t.Errorf("POST answers: created %t then %t", firstAns.Created, againAns.Created)
	}
	if other := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs", jobBody("Other"), nil), http.StatusCreated)).ID; other == j2 {
		t.Errorf("POST without a key reused job %s", other)
	}

	// A result before the job started is refused; then results complete it.
	p = MustProblem(t, Do(t, http.MethodPost, f.api+"/jobs/j1/devices/vm-1/result", map[string]any{"status": "succeeded"}, nil), http.StatusConflict, "")
	if !strings.Contains(p.Detail, "has not started") {
		t.Errorf("result before start: detail %q", p.Detail)
	}
	MustStartJob(t, f.es, "j1")
	f.result(t, "j1", "vm-1", "succeeded", "", http.StatusAccepted)
	f.result(t, "j1", "vm-2", "failed", "E42: fan stuck", http.StatusAccepted)
	if dup := MustDecode[fjhttp.ResultAnswer](t, f.result(t, "j1", "vm-2", "succeeded", "", http.StatusAccepted)); dup.Recorded {
		t.Errorf("a second result for vm-2 was recorded: %+v", dup)
	}
	p = MustProblem(t, f.result(t, "j1", "vm-4", "succeeded", "", http.StatusNotFound), http.StatusNotFound, "")
	if !strings.Contains(p.Detail, `"vm-4" is not in job "j1"`) {
		t.Errorf("device not in the job: detail %q", p.Detail)
	}
	MustProblem(t, f.result(t, "j1", "vm-3", "done", "", http.StatusBadRequest), http.StatusBadRequest, "status")
	// Only a failure has an error message (the domain's rule): refused, nothing recorded.
	MustProblem(t, f.result(t, "j1", "vm-3", "succeeded", "all good", http.StatusBadRequest), http.StatusBadRequest, "error")
	last := f.result(t, "j1", "vm-3", "succeeded", "", http.StatusAccepted).Token()
	got = f.job(t, "j1", last)
	if got.Status != "failed" || got.Counts != (fjhttp.JobCounts{Total: 3, Succeeded: 2, Failed: 1}) {
		t.Errorf("j1 after every result: %s %+v, want failed {3 2 1 0}", got.Status, got.Counts)
	}
	wantDevices := []fjhttp.JobDevice{
		{DeviceID: "vm-1", Name: "Machine vm-1", Status: "succeeded"},
		{DeviceID: "vm-2", Name: "Machine vm-2", Status: "failed", Error: "E42: fan stuck"},
		{DeviceID: "vm-3", Name: "Machine vm-3", Status: "succeeded"},
	}
	if diff := cmp.Diff(wantDevices, f.devices(t, "j1", "", last)); diff != "" {
		t.Errorf("j1 devices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantDevices[1:2], f.devices(t, "j1", "?status=failed", "")); diff != "" {
		t.Errorf("j1 failed devices (-want +got):\n%s", diff)
	}
	MustProblem(t, Do(t, http.MethodGet, f.api+"/jobs/j1/devices?status=done", nil, nil), http.StatusBadRequest, "status")

	MustStartJob(t, f.es, j2)
	tok := f.result(t, j2, "vm-1", "succeeded", "", http.StatusAccepted).Token()
	if got := f.job(t, j2, tok); got.Status != "completed" || got.Counts != (fjhttp.JobCounts{Total: 1, Succeeded: 1}) {
		t.Errorf("j2: %s %+v, want completed {1 1 0 0}", got.Status, got.Counts)
	}

	// Stop, stop again, a late result, a device deleted after targeting.
	MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/j3", jobBody("To stop"), nil), http.StatusCreated)
	MustStartJob(t, f.es, "j3")
	stop := MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/j3/stop", map[string]any{"reason": "wrong speed"}, nil), http.StatusOK)
	if stop.Token() == "" {
		t.Error("stop: no consistency token")
	}
	if a := MustDecode[fjhttp.JobAnswer](t, stop); a.ID != "j3" || a.Status != "stopped" || a.Reason != "wrong speed" || a.Counts != (fjhttp.JobCounts{Total: 3, Pending: 3}) {
		t.Errorf("stop answer: %s, want j3 stopped (wrong speed), counts {3 0 0 3}", stop.Body)
	}
	p = MustProblem(t, Do(t, http.MethodPost, f.api+"/jobs/j3/stop", nil, nil), http.StatusConflict, "")
	for _, s := range []string{"cannot be stopped again", "a stopped job cannot be restarted", "a new job must be created", "/api/v1/jobs/j3/copy"} {
		if !strings.Contains(p.Detail, s) {
			t.Errorf("stop twice: detail %q lacks %q", p.Detail, s)
		}
	}
	if strings.Contains(p.Detail, eventstore.JobStream("j3")) {
		t.Errorf("stop twice: detail %q names the job's stream: the log's names are not the API's", p.Detail)
	}
	f.result(t, "j3", "vm-1", "succeeded", "", http.StatusAccepted)
	tok = MustStatus(t, Do(t, http.MethodDelete, f.api+"/devices/vm-3", nil, nil), http.StatusOK).Token()
	MustStatus(t, Do(t, http.MethodGet, f.api+"/devices", nil, WithToken(tok)), http.StatusOK)
	got = f.job(t, "j3", f.result(t, "j3", "vm-2", "failed", "late", http.StatusAccepted).Token())
	if got.Status != "stopped" || got.Reason != "wrong speed" || got.Counts != (fjhttp.JobCounts{Total: 3, Succeeded: 1, Failed: 1, Pending: 1}) {
		t.Errorf("j3 after late results: %s %q %+v, want stopped, counts {3 1 1 1}", got.Status, got.Reason, got.Counts)
	}
	if diff := cmp.Diff([]fjhttp.JobDevice{
		{DeviceID: "vm-1", Name: "Machine vm-1", Status: "succeeded"},
		{DeviceID: "vm-2", Name: "Machine vm-2", Status: "failed", Error: "late"},
		{DeviceID: "vm-3", Name: "Machine vm-3", Status: "pending", Deleted: true},
	}, f.devices(t, "j3", "", "")); diff != "" {
		t.Errorf("j3 devices (-want +got):\n%s", diff)
	}

	// The list: the running job on top, then newest first.
	running := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/j0-running", jobBody("Running"), nil), http.StatusCreated)).ID
	tok = MustStartJob(t, f.es, running)
	list := MustDecode[fjhttp.List[fjhttp.Job]](t, MustStatus(t, Do(t, http.MethodGet, f.api+"/jobs", nil, WithToken(tok)), http.StatusOK))
	if len(list.Items) != 5 || list.Items[0].ID != running || list.Items[0].Status != "running" {
		t.Fatalf("GET /jobs: %d items, first %+v; want 5, %s running first", len(list.Items), list.Items[0], running)
	}
	for i := 2; i < len(list.Items); i++ {
		if list.Items[i].CreatedAt.After(list.Items[i-1].CreatedAt) {
			t.Errorf("GET /jobs: %s is newer than %s above it", list.Items[i].ID, list.Items[i-1].ID)
		}
	}
	stopped := MustDecode[fjhttp.List[fjhttp.Job]](t, MustStatus(t, Do(t, http.MethodGet, f.api+"/jobs?status=stopped", nil, nil), http.StatusOK))
	if diff := cmp.Diff([]string{"j3"}, ids(stopped.Items, func(j fjhttp.Job) string { return j.ID })); diff != "" {
		t.Errorf("GET /jobs?status=stopped (-want +got):\n%s", diff)
	}
	paged := MustDecode[fjhttp.List[fjhttp.Job]](t, MustStatus(t, Do(t, http.MethodGet, f.api+"/jobs?limit=2", nil, nil), http.StatusOK))
	if len(paged.Items) != 2 || paged.Next == "" {
		t.Errorf("GET /jobs?limit=2: %d items, next %q", len(paged.Items), paged.Next)
	}
	MustProblem(t, Do(t, http.MethodGet, f.api+"/jobs?status=sleeping", nil, nil), http.StatusBadRequest, "status")
	sum := MustDecode[fjhttp.JobSummary](t, MustStatus(t, Do(t, http.MethodGet, f.api+"/summary", nil, nil), http.StatusOK))
	if diff := cmp.Diff(fjhttp.JobSummary{Pending: 1, Running: 1, Completed: 1, Failed: 1, Stopped: 1, Total: 5}, sum); diff != "" {
		t.Errorf("GET /summary (-want +got):\n%s", diff)
	}
	MustProblem(t, Do(t, http.MethodGet, f.api+"/jobs/nope", nil, nil), http.StatusNotFound, "")

	t.Run("history", func(t *testing.T) {
		var types []string
		var revs []uint64
		cursor := ""
		for range 20 {
			page := MustDecode[fjhttp.List[fjhttp.HistoryEvent]](t, MustStatus(t, Do(t, http.MethodGet, f.api+"/jobs/j3/history?limit=2&cursor="+cursor, nil, nil), http.StatusOK))
			for _, e := range page.Items {
				types, revs = append(types, e.Type), append(revs, e.Revision)
				var meta eventstore.Metadata
				if err := json.Unmarshal(e.Metadata, &meta); err != nil || meta.CommandID == "" || meta.OccurredAt.IsZero() || e.Position == "" {
					t.Errorf("event %d: metadata %s (%v), position %q", e.Revision, e.Metadata, err, e.Position)
				}
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		wantTypes := []string{"JobCreated", "JobDevicesTargeted", "JobStarted", "JobStopped", "DeviceOperationSucceeded", "DeviceOperationFailed"}
		if diff := cmp.Diff(wantTypes, types); diff != "" {
			t.Errorf("paged history (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]uint64{0, 1, 2, 3, 4, 5}, revs); diff != "" {
			t.Errorf("revisions (-want +got):\n%s", diff)
		}
		a := MustStatus(t, Do(t, http.MethodGet, f.api+"/jobs/j3/history", nil, header("Accept", fjhttp.MIMENDJSON)), http.StatusOK)
		if ct := a.Header.Get("Content-Type"); ct != fjhttp.MIMENDJSON {
			t.Errorf("NDJSON content type %q", ct)
		}
		var lines []string
		sc := bufio.NewScanner(bytes.NewReader(a.Body))
		for sc.Scan() {
			var e fjhttp.HistoryEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("NDJSON line %q: %v", sc.Text(), err)
			}
			lines = append(lines, e.Type)
		}
		if diff := cmp.Diff(wantTypes, lines); diff != "" {
			t.Errorf("NDJSON history (-want +got):\n%s", diff)
		}
		MustProblem(t, Do(t, http.MethodGet, f.api+"/jobs/nope/history", nil, nil), http.StatusNotFound, "")
	})

	t.Run("copy", func(t *testing.T) {
		key := header("Idempotency-Key", "copy-j3-once")
		first := MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/j3/copy", nil, key), http.StatusCreated)
		ans := MustDecode[fjhttp.JobAnswer](t, first)
		if ans.ID == "" || ans.ID == "j3" || len(ans.Notes) != 2 || !strings.Contains(ans.Notes[1], "1 device of job") {
			t.Fatalf("copy: %s", first.Body)
		}
		if ans.Status != "pending" || ans.Counts != (fjhttp.JobCounts{Total: 2, Pending: 2}) || !ans.Created || first.Header.Get("Location") != fjhttp.APIBase+"/jobs/"+ans.ID {
			t.Errorf("copy answer: %s, location %q; want the new job pending on 2 devices", first.Body, first.Header.Get("Location"))
		}
		again := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/j3/copy", nil, key), http.StatusOK))
		if again.ID != ans.ID {
			t.Errorf("copy twice with one key: %s then %s", ans.ID, again.ID)
		}
		got := f.job(t, ans.ID, first.Token())
		want := fjhttp.Job{ID: ans.ID, Name: "To stop", Description: "fans up", Status: "pending", DeviceSetID: "seattle", JobType: "setting",
			Operations: []fjhttp.Operation{{Name: "fanSpeed", Value: 1200.0}}, TimeoutSeconds: 30, BatchSize: 100,
			Counts: fjhttp.JobCounts{Total: 2, Pending: 2}}
		if diff := cmp.Diff(want, got, cmpIgnoreTimes); diff != "" {
			t.Errorf("the copy (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(got, ans.Job); diff != "" {
			t.Errorf("the copy's answer against GET (-want +got):\n%s", diff)
		}
		MustProblem(t, Do(t, http.MethodPost, f.api+"/jobs/nope/copy", nil, nil), http.StatusNotFound, "")
	})
}

// cmpIgnoreTimes leaves out the times a job shows, which the clock sets.
var cmpIgnoreTimes = cmp.Transformer("noTimes", func(j fjhttp.Job) fjhttp.Job {
	j.CreatedAt, j.UpdatedAt = time.Time{}, time.Time{}
	return j
})

// TestJobRefusalsRecordNothing sends every job the rules refuse and
// checks each answer (status, problem+json, the field and a detail of its
// own) and that no job stream was written.
// TestStopAnswersTheRecordedReason: a stop's answer has the reason the
// domain recorded in JobStopped (trimmed, or the default for a blank one),
// not the request's as sent, also when it is answered from what was
// decided because the read models do not hold the job (here: its read
// model deleted), and a retry under the same Idempotency-Key answers the
// stop it recorded.
func TestStopAnswersTheRecordedReason(t *testing.T) {
	url, root := MustRedisURL(t)
	f := MustFleet(t, ServeConfig(t, url, root), nil)
	for _, tc := range []struct{ id, reason, want string }{
		{"blank", "  \t ", job.DefaultStopReason},
		{"padded", "  wrong speed \n", "wrong speed"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			put := MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/"+tc.id, jobBody("To stop"), WithToken(f.token)), http.StatusCreated)
			f.job(t, tc.id, put.Token()) // the read models hold it: its key is there to delete
			MustDeleteKeys(t, url, root+":"+projections.JobsProjection+":*:"+projections.JobKey(tc.id))

			key := header("Idempotency-Key", "stop-"+tc.id)
			a := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/"+tc.id+"/stop", map[string]any{"reason": tc.reason}, key), http.StatusOK))
			if a.Status != "stopped" || a.Reason != tc.want || len(a.Notes) == 0 {
				t.Errorf("stop answer: %s %q, notes %q; want stopped %q, decided (noted)", a.Status, a.Reason, a.Notes, tc.want)
			}
			again := MustDecode[fjhttp.JobAnswer](t, MustStatus(t, Do(t, http.MethodPost, f.api+"/jobs/"+tc.id+"/stop", map[string]any{"reason": tc.reason}, key), http.StatusOK))
			if again.Reason != tc.want {
				t.Errorf("retried stop answer: reason %q, want the first stop's %q", again.Reason, tc.want)
			}

			var recorded []string
			for _, e := range MustDecode[fjhttp.List[fjhttp.HistoryEvent]](t, MustStatus(t, Do(t, http.MethodGet, f.api+"/jobs/"+tc.id+"/history", nil, nil), http.StatusOK)).Items {
				if e.Type == eventstore.JobStopped {
					var d job.Stopped
					if err := json.Unmarshal(e.Data, &d); err != nil {
						t.Fatal(err)
					}
					recorded = append(recorded, d.Reason)
				}
			}
			if diff := cmp.Diff([]string{tc.want}, recorded); diff != "" {
				t.Errorf("recorded stop reasons (-want +got):\n%s", diff)
			}
		})
	}
}

func TestJobRefusalsRecordNothing(t *testing.T) {
	url, root := MustRedisURL(t)
	f := MustFleet(t, ServeConfig(t, url, root), nil)
	// A broken set: its template is deleted. A deleted device.
	MustStatus(t, Do(t, http.MethodPut, f.api+"/device-templates/kiosk", map[string]any{"name": "Kiosk", "properties": []map[string]string{{"name": "city", "schema": "string"}}}, nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodPut, f.api+"/device-sets/kiosks", map[string]any{"name": "Kiosks", "templateId": "kiosk", "conditions": []map[string]any{}}, nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodDelete, f.api+"/device-templates/kiosk", nil, nil), http.StatusOK)
	MustStatus(t, Do(t, http.MethodPut, f.api+"/devices/vm-gone", deviceBody("Gone", "vending-v2", "Seattle", 1), nil), http.StatusCreated)
	tok := MustStatus(t, Do(t, http.MethodDelete, f.api+"/devices/vm-gone", nil, nil), http.StatusOK).Token()
	with := func(k string, v any) func(map[string]any) { return func(b map[string]any) { b[k] = v } }

	cases := []struct {
		name   string
		body   any
		status int
		field  string
		detail string
	}{
		{"name missing", jobBody("", with("name", "")), 400, "name", "is required"},
		{"unknown device set", jobBody("J", with("deviceSetId", "no-such-set")), 400, "deviceSetId", "does not exist"},
		{"broken device set", jobBody("J", with("deviceSetId", "kiosks")), 400, "deviceSetId", "is broken"},
		{"bad job type", jobBody("J", with("jobType", "reboot")), 400, "jobType", "unknown job type"},
		{"no operations", jobBody("J", with("operations", []any{})), 400, "operations", "at least one operation"},
		{"operation not in the template", jobBody("J", with("operations", []map[string]any{{"name": "colour", "value": "red"}})), 400, "operations[0].name", "declares no setting"},
		{"value of the wrong schema", jobBody("J", with("operations", []map[string]any{{"name": "fanSpeed", "value": "fast"}})), 400, "operations[0].value", "number"},
		{"device not a member", jobBody("J", with("deviceIds", []string{"vm-1", "vm-4"})), 400, "deviceIds[1]", "vm-4"},
		{"deleted device", jobBody("J", with("deviceIds", []string{"vm-gone"})), 400, "deviceIds[0]", "deleted"},
		{"no chosen devices", jobBody("J", with("deviceIds", []string{})), 400, "deviceIds", ""},
		{"bad device ID", jobBody("J", with("deviceIds", []string{"vm-1", "a b"})), 400, "deviceIds[1]", ""},
		{"bad timeout", jobBody("J", with("timeoutSeconds", -1)), 400, "timeoutSeconds", "between"},
		{"unknown field", jobBody("J", with("colour", "red")), 400, "colour", "unknown field"},
		{"malformed JSON", `{"name":`, 400, "body", ""},
		{"name not UTF-8", "{\"name\":\"J\xff\xfe\",\"deviceSetId\":\"seattle\",\"jobType\":\"setting\",\"operations\":[{\"name\":\"fanSpeed\",\"value\":1}]}", 400, "name", "valid UTF-8"},
		{"name with a lone surrogate", `{"name":"J\ud800","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1}]}`, 400, "name", "valid UTF-8"},
		{"value beyond 2^53", jobBody("J", with("operations", []map[string]any{{"name": "fanSpeed", "value": int64(9007199254740993)}})), 400, "operations[0].value", "kept exactly"},
		{"value nested too deep", `{"name":"J","deviceSetId":"seattle","jobType":"command","operations":[{"name":"reboot","value":` + strings.Repeat(`{"a":`, 9997) + "1" + strings.Repeat("}", 9997) + `}]}`, 400, "operations[0].value", "levels deep"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := MustProblem(t, Do(t, http.MethodPut, f.api+"/jobs/refused", c.body, WithToken(tok)), c.status, c.field)
			if !strings.Contains(p.Detail, c.detail) {
				t.Errorf("detail %q lacks %q", p.Detail, c.detail)
			}
			var fieldMsg string
			for _, fe := range p.Errors {
				if fe.Field == c.field {
					fieldMsg = fe.Message
				}
			}
			if !strings.Contains(fieldMsg+" "+p.Detail, c.detail) || fieldMsg == "" {
				t.Errorf("field %s: message %q", c.field, fieldMsg)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := f.es.ReadStream(ctx, eventstore.JobStream("refused"), 0, func(eventstore.Recorded) error { return nil })
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("after the refusals the job stream reads %v, want stream not found", err)
	}
	// Under an existing ID a bad field is named too, not taken for
	// another definition (409).
	MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/exists", jobBody("J"), WithToken(tok)), http.StatusCreated)
	MustProblem(t, Do(t, http.MethodPut, f.api+"/jobs/exists", jobBody("J", with("batchSize", 20000)), nil), http.StatusBadRequest, "batchSize")
	MustProblem(t, Do(t, http.MethodPut, f.api+"/jobs/exists", jobBody("J", with("batchSize", 200)), nil), http.StatusConflict, "")
	MustProblem(t, Do(t, http.MethodPost, f.api+"/jobs/nope/stop", nil, nil), http.StatusNotFound, "")
	MustProblem(t, Do(t, http.MethodPost, f.api+"/jobs/nope/devices/vm-1/result", map[string]any{"status": "succeeded"}, nil), http.StatusNotFound, "")
}

// TestJobRoutesAuditor: an auditor reads jobs but cannot command them.
func TestJobRoutesAuditor(t *testing.T) {
	url, root := MustRedisURL(t)
	cfg := ServeConfig(t, url, root)
	cfg.APIKeys = []main.APIKey{{Key: "audit-key-0123456789", Role: fjhttp.RoleAuditor}, {Key: "op-key-0123456789", Role: fjhttp.RoleOperator}}
	op := header("Authorization", "Bearer op-key-0123456789")
	audit := header("Authorization", "Bearer audit-key-0123456789")
	f := MustFleet(t, cfg, op)
	op[fjhttp.ConsistencyTokenHeader] = f.token
	tok := MustStatus(t, Do(t, http.MethodPut, f.api+"/jobs/j1", jobBody("J"), op), http.StatusCreated).Token()
	audit[fjhttp.ConsistencyTokenHeader] = tok
	for _, path := range []string{"/jobs", "/jobs/j1", "/jobs/j1/devices", "/summary", "/jobs/j1/history"} {
		MustStatus(t, Do(t, http.MethodGet, f.api+path, nil, audit), http.StatusOK)
	}
	delete(audit, fjhttp.ConsistencyTokenHeader)
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{http.MethodPost, "/jobs", jobBody("J")},
		{http.MethodPut, "/jobs/j2", jobBody("J")},
		{http.MethodPost, "/jobs/j1/stop", nil},
		{http.MethodPost, "/jobs/j1/copy", nil},
		{http.MethodPost, "/jobs/j1/devices/vm-1/result", map[string]any{"status": "succeeded"}},
	} {
		MustProblem(t, Do(t, c.method, f.api+c.path, c.body, audit), http.StatusForbidden, "")
	}
	MustProblem(t, Do(t, http.MethodGet, f.api+"/jobs", nil, nil), http.StatusUnauthorized, "")
}
