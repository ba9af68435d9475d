package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// call sends one request from a goroutine other than the test's: it
// returns an error rather than failing the test.
func call(method, url string, body any, headers map[string]string) (int, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return resp.StatusCode, resp.Header, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, resp.Header, nil
}

// mustAppendDevices registers n devices of template vending straight in
// the log, one append each.
func mustAppendDevices(tb testing.TB, es *eventstore.Client, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range n {
		id := fmt.Sprintf("d%04d", i)
		if _, err := es.Append(ctx, eventstore.DeviceStream(id), eventstore.Any(), []eventstore.Event{{ID: uuid.New(),
			Data: device.Registered{DeviceID: id, Name: "Device " + id, TemplateID: "vending",
				Properties: map[string]any{"city": []string{"Seattle", "Denver"}[i%2]}},
			Metadata: eventstore.Metadata{Actor: "test", OccurredAt: time.Now()}}}); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestRebuild runs `fleetjobs rebuild` (the binary) against an in-process
// serve on a real Redis while commands and queries run, checks the serve
// follows the switch, verifies, tampers, kills a rebuild and reruns it.
func TestRebuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)
	redisURL, root := MustRedisURL(t)
	m := MustServe(t, ServeConfig(t, redisURL, root), nil)
	api := m.HTTPURL() + fjhttp.APIBase
	es := MustEventStore(t, m)
	rdb := MustRedisClient(t, redisURL)
	ctx := context.Background()

	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending", map[string]any{"name": "Vending",
		"properties": []map[string]string{{"name": "city", "schema": "string"}}}, nil), http.StatusCreated)
	mustAppendDevices(t, es, 300)
	set := MustStatus(t, Do(t, http.MethodPut, api+"/device-sets/seattle", map[string]any{"name": "Seattle", "templateId": "vending",
		"conditions": []map[string]any{{"property": "city", "op": "eq", "value": "Seattle"}}}, nil), http.StatusCreated)
	// A job (pending: serve has no device transport), whose read model is a
	// hash.
	jb := MustStatus(t, Do(t, http.MethodPut, api+"/jobs/ok-1", map[string]any{"name": "Move", "deviceSetId": "seattle", "jobType": "property",
		"operations": []map[string]any{{"name": "city", "value": "Seattle"}}}, WithToken(set.Token())), http.StatusCreated)
	// The queries below run without a token: the read models must have
	// everything recorded so far before they start.
	MustStatus(t, Do(t, http.MethodGet, api+"/jobs/ok-1", nil, WithToken(jb.Token())), http.StatusOK)
	env := []string{"FLEETJOBS_REDIS_URL=" + redisURL}
	rebuild := func(args ...string) result {
		return MustRun(t, bin, env, append([]string{"rebuild", "--redis-key-root", root, "--eventstore-url", m.EventStoreURL()}, args...)...)
	}

	t.Run("while serving commands and queries", func(t *testing.T) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var writes, reads atomic.Int64
		errs := make(chan error, 10)
		wg.Add(2)
		go func() { // commands, each read back with its token
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("new-%d", i)
				_, h, err := call(http.MethodPut, api+"/devices/"+id, map[string]any{"name": "New", "templateId": "vending",
					"properties": map[string]any{"city": "Seattle"}}, nil)
				if err == nil {
					_, _, err = call(http.MethodGet, api+"/devices/"+id, nil, WithToken(h.Get(fjhttp.ConsistencyTokenHeader)))
				}
				if err != nil {
					errs <- err
					return
				}
				writes.Add(1)
			}
		}()
		go func() { // queries
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, u := range []string{"/devices/d0001", "/devices?limit=20", "/device-sets/seattle/devices?limit=20"} {
					if _, _, err := call(http.MethodGet, api+u, nil, nil); err != nil {
						errs <- err
						return
					}
				}
				reads.Add(1)
			}
		}()
		r := rebuild("--grace", "2s")
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if r.code != 0 || !strings.Contains(r.stdout, "switched devices 1 -> 2, jobs 1 -> 2") || !strings.Contains(r.stdout, "deleted") {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "rebuild: ") {
			t.Errorf("no progress line on stderr (not a terminal): %q", r.stderr)
		}
		if writes.Load() == 0 || reads.Load() == 0 {
			t.Errorf("%d writes, %d reads during the rebuild", writes.Load(), reads.Load())
		}
		// serve follows the switch: a device registered now is served.
		a := MustStatus(t, Do(t, http.MethodPut, api+"/devices/after", map[string]any{"name": "After", "templateId": "vending",
			"properties": map[string]any{"city": "Seattle"}}, nil), http.StatusCreated)
		MustStatus(t, Do(t, http.MethodGet, api+"/devices/after", nil, WithToken(a.Token())), http.StatusOK)
		if v := rdb.Get(ctx, projections.ActiveKey(root, "devices")).Val(); v != "2" {
			t.Errorf("active devices version %q, want 2", v)
		}
		if n := rdb.Exists(ctx, projections.CheckpointKey(root, "devices", "1")).Val(); n != 0 {
			t.Error("the old version's checkpoint is still there after the grace period")
		}
	})

	t.Run("verify finds no drift, then the drift made", func(t *testing.T) {
		r := rebuild("--verify")
		if r.code != 0 || strings.Count(r.stdout, "identical") != 2 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		rdb.Set(ctx, projections.Prefix(root, "devices", "2")+"device:d0007", `{"id":"d0007","name":"forged"}`, 0)
		r = rebuild("--verify", "--projection", "devices")
		if r.code != 1 || !strings.Contains(r.stdout, "DRIFT: 1 differ") || !strings.Contains(r.stdout, "device:d0007") || strings.Contains(r.stdout, "jobs") {
			t.Errorf("after tampering: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		// A hash field far into the job's hash (after its JSON document)
		// shows as that field's two values.
		job := projections.Prefix(root, "jobs", "2") + "job:ok-1"
		status := rdb.HGet(ctx, job, "status").Val()
		rdb.HSet(ctx, job, "status", "failed")
		r = rebuild("--verify", "--projection", "jobs")
		if want := `"status": "failed" → ` + strconv.Quote(status); r.code != 1 || !strings.Contains(r.stdout, "  job:ok-1\n    "+want+"\n") {
			t.Errorf("after tampering with a job: exit %d, want 1 and %s\nstdout: %s\nstderr: %s", r.code, want, r.stdout, r.stderr)
		}
	})

	t.Run("killed, then run again, repairs", func(t *testing.T) {
		p := MustStart(t, bin, env, "rebuild", "--redis-key-root", root, "--eventstore-url", m.EventStoreURL(), "--grace", "1m")
		// Kill it once it has started writing its version (or, on a fast
		// machine, while it waits out the grace period after the switch).
		deadline := time.Now().Add(20 * time.Second)
		for rdb.Exists(ctx, projections.CheckpointKey(root, "devices", "3")).Val() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the rebuild never wrote version 3\nstderr: %s", p.stderr.String())
			}
			time.Sleep(5 * time.Millisecond) // polling interval of a condition with a deadline
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		r := rebuild("--grace", "2s", "--quiet")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("rerun: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		if r = rebuild("--verify"); r.code != 0 {
			t.Errorf("verify after the rerun: exit %d\nstdout: %s", r.code, r.stdout)
		}
		if n := rdb.Exists(ctx, projections.Prefix(root, "devices", "2")+"device:d0007").Val(); n != 0 {
			t.Error("the tampered version was not deleted")
		}
		d := MustDecode[fjhttp.Device](t, MustStatus(t, Do(t, http.MethodGet, api+"/devices/d0007", nil, nil), http.StatusOK))
		if d.Name != "Device d0007" {
			t.Errorf("device d0007 is %q after the rebuild, want it repaired", d.Name)
		}
	})

	t.Run("a key root nothing projected under needs --create", func(t *testing.T) {
		other := root + "x" // a typo
		t.Cleanup(func() { MustDeleteKeys(t, redisURL, other+":*") })
		for _, args := range [][]string{nil, {"--projection", "jobs"}} {
			r := MustRun(t, bin, env, append([]string{"rebuild", "--redis-key-root", other, "--eventstore-url", m.EventStoreURL(), "--grace", "2s"}, args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, "no active version under --redis-key-root "+strconv.Quote(other)) || !strings.Contains(r.stderr, "--create") {
				t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s\nwant 2 naming the key root and --create", args, r.code, r.stdout, r.stderr)
			}
		}
		if keys := rdb.Keys(ctx, other+":*").Val(); len(keys) != 0 {
			t.Errorf("the refused rebuild wrote %d keys under %s: %v", len(keys), other, keys[:min(len(keys), 5)])
		}
		// Verifying there is a usage error too, not drift (exit 1): a
		// script must tell a typo from read models that drifted.
		if r := MustRun(t, bin, env, "rebuild", "--verify", "--redis-key-root", other, "--eventstore-url", m.EventStoreURL()); r.code != 2 ||
			!strings.Contains(r.stderr, "no active version under --redis-key-root "+strconv.Quote(other)) || !strings.Contains(r.stderr, "nothing to verify") {
			t.Errorf("--verify under %s: exit %d\nstdout: %s\nstderr: %s\nwant 2 naming the key root", other, r.code, r.stdout, r.stderr)
		}
		r := MustRun(t, bin, env, "rebuild", "--redis-key-root", other, "--eventstore-url", m.EventStoreURL(), "--grace", "2s", "--create", "--quiet")
		if r.code != 0 || !strings.Contains(r.stdout, "switched devices 1 -> 2, jobs 1 -> 2") {
			t.Errorf("--create: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("bad arguments exit 2", func(t *testing.T) {
		cases := []struct {
			env     []string
			args    []string
			mention string
		}{
			{nil, []string{"rebuild"}, "embedded Redis"},
			{env, []string{"rebuild", "--projection", "widgets"}, "devices, jobs"},
			{env, []string{"rebuild", "--grace", "0s"}, "--grace"},
			{env, []string{"rebuild", "--grace", "500ms"}, "at least 2s"},
			{env, []string{"rebuild", "--verify", "--grace", "5s"}, "--grace"},
			{env, []string{"rebuild", "--verify", "--create"}, "--create"},
			{[]string{"FLEETJOBS_REDIS_URL=nope://x"}, []string{"rebuild"}, "redis"},
			{env, []string{"rebuild", "now"}, `"now"`},
			{[]string{"FLEETJOBS_REDIS_URL=redis://10.0.0.1:6379,10.0.0.2:6379"}, []string{"rebuild"}, "hash tag"},
		}
		for _, tc := range cases {
			r := MustRun(t, bin, tc.env, tc.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.mention) {
				t.Errorf("%v: exit %d, stderr %q; want 2 mentioning %q", tc.args, r.code, r.stderr, tc.mention)
			}
		}
		if r := MustRun(t, bin, nil, "rebuild", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: fleetjobs rebuild") {
			t.Errorf("rebuild --help: exit %d, %q", r.code, r.stdout)
		}
	})
}

// TestRebuildDataDir rebuilds from a data directory no serve holds
// (--data), as an operator does with serve stopped: refused while serve
// holds it, then a rebuild and a verify with no drift; a serve started
// again on the same data and Redis follows the switched versions.
func TestRebuildDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)
	redisURL, root := MustRedisURL(t)
	cfg := ServeConfig(t, redisURL, root)
	m := MustServe(t, cfg, nil)
	api := m.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending", map[string]any{"name": "Vending",
		"properties": []map[string]string{{"name": "city", "schema": "string"}}}, nil), http.StatusCreated)
	mustAppendDevices(t, MustEventStore(t, m), 50)
	MustStatus(t, Do(t, http.MethodPut, api+"/device-sets/seattle", map[string]any{"name": "Seattle", "templateId": "vending",
		"conditions": []map[string]any{{"property": "city", "op": "eq", "value": "Seattle"}}}, nil), http.StatusCreated)
	env := []string{"FLEETJOBS_REDIS_URL=" + redisURL}
	rebuild := func(args ...string) result {
		return MustRun(t, bin, env, append([]string{"rebuild", "--redis-key-root", root, "--data", cfg.EventStoreDir()}, args...)...)
	}

	if r := rebuild("--grace", "2s"); r.code != 1 || !strings.Contains(r.stderr, "in use") {
		t.Errorf("while serve holds the data: exit %d, stderr %q; want 1, in use", r.code, r.stderr)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if r := rebuild("--grace", "2s"); r.code != 0 || !strings.Contains(r.stdout, "switched devices 1 -> 2, jobs 1 -> 2") {
		t.Fatalf("rebuild: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := rebuild("--verify"); r.code != 0 || strings.Count(r.stdout, "identical") != 2 {
		t.Fatalf("verify: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	m = MustServe(t, cfg, nil)
	api = m.HTTPURL() + fjhttp.APIBase
	a := MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/seattle/devices?limit=100", nil, nil), http.StatusOK)
	var page struct {
		Items []struct{ ID string } `json:"items"`
	}
	if err := json.Unmarshal(a.Body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) == 0 {
		t.Errorf("the restarted serve lists no device of the set after the rebuild: %s", a.Body)
	}
}
