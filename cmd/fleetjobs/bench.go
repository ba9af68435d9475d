package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/job"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// `fleetjobs bench` is the load driver: against a running serve, over its
// HTTP API as an integration would use it, it imports simulated devices,
// defines a set of them, runs a job on the set and reports how fast each
// step went. With `FLEETJOBS_DEVICES=sim` (make run) the job runs on the
// simulated fleet; over MQTT the devices must be connected.

// BenchConfig is what `fleetjobs bench` was asked.
type BenchConfig struct {
	URL      string        // the service's base URL
	APIKey   string        // sent as a bearer token when set
	Devices  int           // devices to import and run the job on
	Chunk    int           // devices per import request
	Run      string        // names the devices, set and job of this run
	Timeout  time.Duration // the longest the whole run may take
	JSON     bool          // print the summary as one JSON object
	NoJob    bool          // import and define the set only
	JobBatch int           // the job's batchSize
}

const (
	benchTemplate   = "fleetjobs-bench"
	maxBenchDevices = 10_000_000
	maxBenchRun     = 128 - len("bench--0000000")
)

func benchFlags(getenv func(string) string) (*flag.FlagSet, func() (BenchConfig, error)) {
	fs := newFlagSet("bench")
	addr := "127.0.0.1:8080"
	if v, ok := lookup(getenv, "FLEETJOBS_HTTP_ADDR"); ok {
		addr = v
	}
	u := fs.String("url", "http://"+addr, "the service's base URL (default from $FLEETJOBS_HTTP_ADDR)")
	key := fs.String("api-key", getenv("FLEETJOBS_API_KEY"), "an operator or admin API key, when the service has keys ($FLEETJOBS_API_KEY)")
	devices := fs.Int("devices", 10_000, "devices to import and run the job on")
	chunk := fs.Int("chunk", 10_000, "devices per import request")
	run := fs.String("run", "", "names this run's devices (bench-RUN-0000001...), set and job (bench-RUN); default random")
	timeout := fs.Duration("timeout", 30*time.Minute, "the longest the whole run may take")
	asJSON := fs.Bool("json", false, "print the summary as one JSON object")
	noJob := fs.Bool("no-job", false, "import the devices and define the set, run no job")
	batch := fs.Int("batch-size", 1000, "the job's batchSize: devices dispatched at a time")
	return fs, func() (BenchConfig, error) {
		c := BenchConfig{URL: strings.TrimRight(*u, "/"), APIKey: *key, Devices: *devices, Chunk: *chunk, Run: *run,
			Timeout: *timeout, JSON: *asJSON, NoJob: *noJob, JobBatch: *batch}
		if p, err := url.Parse(c.URL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return c, usageErrorf("invalid --url %q: want http://host:port", c.URL)
		}
		if c.Devices < 1 || c.Devices > maxBenchDevices {
			return c, usageErrorf("invalid --devices %d: want 1 to %d", c.Devices, maxBenchDevices)
		}
		if c.Chunk < 1 || c.Chunk > 100_000 {
			return c, usageErrorf("invalid --chunk %d: want 1 to 100000 devices per request", c.Chunk)
		}
		if c.JobBatch < 1 || c.JobBatch > 10_000 {
			return c, usageErrorf("invalid --batch-size %d: want 1 to 10000", c.JobBatch)
		}
		if c.Timeout <= 0 {
			return c, usageErrorf("invalid --timeout %s: want a positive duration", c.Timeout)
		}
		if c.Run == "" {
			var b [4]byte
			_, _ = rand.Read(b[:])
			c.Run = hex.EncodeToString(b[:])
		}
		// The run names device IDs bench-RUN-0000000 (14 more characters).
		if err := checkIDFlag("run", c.Run); err != nil {
			return c, err
		}
		if len(c.Run) > maxBenchRun {
			return c, usageErrorf("invalid --run: is %d characters long; at most %d are allowed (it names device IDs)", len(c.Run), maxBenchRun)
		}
		if fs.NArg() > 0 {
			return c, usageErrorf("unexpected argument %q", fs.Arg(0))
		}
		return c, nil
	}
}

// BenchResult is what a run measured.
type BenchResult struct {
	Run     string `json:"run"`
	Devices int    `json:"devices"`
	// ImportSeconds is the time from the first import request to the last
	// device visible in the read models.
	ImportSeconds float64          `json:"importSeconds"`
	ImportPerSec  float64          `json:"importDevicesPerSecond"`
	JobID         string           `json:"jobId,omitempty"`
	JobStatus     string           `json:"jobStatus,omitempty"`
	JobCounts     fjhttp.JobCounts `json:"jobCounts"`
	JobSeconds    float64          `json:"jobSeconds,omitempty"` // from the PUT to every result visible
	JobDevicesSec float64          `json:"jobDevicesPerSecond,omitempty"`
}

// seconds renders a duration in seconds as a rounded time.Duration.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, load := benchFlags(getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	b := &benchClient{cfg: c, http: &http.Client{Timeout: 2 * time.Minute}, progress: progressWriter(stderr)}
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "run %s: %d devices imported in %s (%.0f devices/s, until visible in the read models)\n",
		res.Run, res.Devices, seconds(res.ImportSeconds), res.ImportPerSec)
	if res.JobID != "" {
		fmt.Fprintf(stdout, "job %s %s in %s (%.0f devices/s, from its creation to every result visible): %d succeeded, %d failed\n",
			res.JobID, res.JobStatus, seconds(res.JobSeconds), res.JobDevicesSec, res.JobCounts.Succeeded, res.JobCounts.Failed)
	}
	return nil
}

// benchClient drives one run over the HTTP API.
type benchClient struct {
	cfg      BenchConfig
	http     *http.Client
	progress io.Writer // stderr when it is a terminal, else nil
}

// benchAnswer is one answer of the service.
type benchAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (b *benchClient) run(ctx context.Context) (BenchResult, error) {
	c := b.cfg
	res := BenchResult{Run: c.Run, Devices: c.Devices}
	tmpl := map[string]any{"name": "fleetjobs bench", "settings": []map[string]string{{"name": "fanSpeed", "schema": "number"}},
		"properties": []map[string]string{{"name": "benchRun", "schema": "string"}, {"name": "simFail", "schema": "string"}}}
	if _, err := b.send(ctx, http.MethodPut, "/device-templates/"+benchTemplate, "application/json", mustJSONBody(tmpl), ""); err != nil {
		return res, fmt.Errorf("publish the bench template: %w", err)
	}

	start := time.Now()
	var token string
	var body bytes.Buffer
	for from := 0; from < c.Devices; from += c.Chunk {
		body.Reset()
		to := min(from+c.Chunk, c.Devices)
		for i := from; i < to; i++ {
			fmt.Fprintf(&body, `{"deviceId":%q,"name":"Bench fridge %d","templateId":%q,"properties":{"benchRun":%q}}`+"\n", b.deviceID(i), i, benchTemplate, c.Run)
		}
		a, err := b.send(ctx, http.MethodPost, "/devices:import", fjhttp.MIMENDJSON, body.Bytes(), "")
		if err != nil {
			return res, fmt.Errorf("import devices %d to %d: %w", from, to-1, err)
		}
		var imported struct {
			Registered int `json:"registered"`
		}
		if err := json.Unmarshal(a.body, &imported); err != nil {
			return res, fmt.Errorf("import devices %d to %d: answer %q: %w", from, to-1, a.body, err)
		}
		if imported.Registered != to-from {
			return res, fmt.Errorf("import devices %d to %d: %d of them existed already (run %s was run before?): choose another --run", from, to-1, to-from-imported.Registered, c.Run)
		}
		token = a.header.Get(fjhttp.ConsistencyTokenHeader)
		b.step("imported %d of %d devices (%.0f/s)", to, c.Devices, float64(to)/time.Since(start).Seconds())
	}
	// Visible: the last device, read with the last import's token.
	if _, err := b.send(ctx, http.MethodGet, "/devices/"+b.deviceID(c.Devices-1), "", nil, token); err != nil {
		return res, fmt.Errorf("read the last device imported: %w", err)
	}
	res.ImportSeconds = time.Since(start).Seconds()
	res.ImportPerSec = float64(c.Devices) / res.ImportSeconds
	b.done(fmt.Sprintf("imported %d devices in %s", c.Devices, seconds(res.ImportSeconds)))

	set := map[string]any{"name": "bench " + c.Run, "templateId": benchTemplate,
		"conditions": []map[string]any{{"property": "benchRun", "op": "eq", "value": c.Run}}}
	defined, err := b.send(ctx, http.MethodPut, "/device-sets/bench-"+c.Run, "application/json", mustJSONBody(set), token)
	if err != nil {
		return res, fmt.Errorf("define the set: %w", err)
	}
	if c.NoJob {
		return res, nil
	}

	res.JobID = "bench-" + c.Run
	j := map[string]any{"name": "bench " + c.Run, "deviceSetId": "bench-" + c.Run, "jobType": "setting",
		"operations": []map[string]any{{"name": "fanSpeed", "value": 1200}}, "batchSize": c.JobBatch}
	start = time.Now()
	a, err := b.send(ctx, http.MethodPut, "/jobs/"+res.JobID, "application/json", mustJSONBody(j), defined.header.Get(fjhttp.ConsistencyTokenHeader))
	if err != nil {
		return res, fmt.Errorf("create the job: %w", err)
	}
	if a.status != http.StatusCreated {
		return res, fmt.Errorf("job %s exists already (run %s was run before): choose another --run", res.JobID, c.Run)
	}
	created := a.header.Get(fjhttp.ConsistencyTokenHeader) // the job's reads wait for it
	for {
		var got fjhttp.Job
		a, err := b.send(ctx, http.MethodGet, "/jobs/"+res.JobID, "", nil, created)
		if err == nil {
			err = json.Unmarshal(a.body, &got)
		}
		if err != nil {
			return res, fmt.Errorf("follow the job: %w", err)
		}
		res.JobStatus, res.JobCounts = got.Status, got.Counts
		done := got.Counts.Total - got.Counts.Pending
		// A stopped job keeps its undispatched devices pending: it is
		// over all the same.
		if st := job.Status(got.Status); st.Finished() && (got.Counts.Pending == 0 || st == job.StatusStopped) {
			res.JobSeconds = time.Since(start).Seconds()
			res.JobDevicesSec = float64(got.Counts.Total) / res.JobSeconds
			b.done(fmt.Sprintf("job %s %s in %s", res.JobID, got.Status, seconds(res.JobSeconds)))
			return res, nil
		}
		b.step("job %s %s: %d of %d devices answered (%.0f/s)", res.JobID, got.Status, done, got.Counts.Total, float64(done)/time.Since(start).Seconds())
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("job %s still %s with %d devices pending after %s: %w", res.JobID, got.Status, got.Counts.Pending, c.Timeout, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond): // polling interval of the job's state
		}
	}
}

func (b *benchClient) deviceID(i int) string { return fmt.Sprintf("bench-%s-%07d", b.cfg.Run, i) }

// step shows progress: redrawn in place on a terminal, else nothing (the
// summary says what matters).
func (b *benchClient) step(format string, args ...any) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, "\r\033[K"+format, args...)
	}
}

func (b *benchClient) done(line string) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, "\r\033[K%s\n", line)
	}
}

// send sends one request and returns the answer; a 503 (read models not
// caught up with token, Retry-After) is asked again, as a client should;
// any other status from 300 up is an error with the problem's detail.
func (b *benchClient) send(ctx context.Context, method, path, contentType string, body []byte, token string) (benchAnswer, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, method, b.cfg.URL+fjhttp.APIBase+path, bytes.NewReader(body))
		if err != nil {
			return benchAnswer{}, err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if token != "" {
			req.Header.Set(fjhttp.ConsistencyTokenHeader, token)
		}
		if b.cfg.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+b.cfg.APIKey)
		}
		resp, err := b.http.Do(req)
		if err != nil {
			return benchAnswer{}, err
		}
		data, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return benchAnswer{}, err
		}
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable:
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-ctx.Done():
				return benchAnswer{}, fmt.Errorf("%s %s: still 503 (%s): %w", method, path, problemDetail(data), context.Cause(ctx))
			case <-time.After(wait):
			}
			continue
		case resp.StatusCode >= 300:
			return benchAnswer{}, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, problemDetail(data))
		}
		return benchAnswer{status: resp.StatusCode, header: resp.Header, body: data}, nil
	}
}

// problemDetail is the detail of a problem+json body, or the body.
func problemDetail(data []byte) string {
	var p struct {
		Detail string `json:"detail"`
		Errors []struct {
			Field, Message string
		} `json:"errors"`
	}
	if json.Unmarshal(data, &p) != nil || p.Detail == "" {
		return strings.TrimSpace(string(data))
	}
	parts := []string{p.Detail}
	for _, e := range p.Errors {
		parts = append(parts, e.Field+": "+e.Message)
	}
	return strings.Join(parts, "; ")
}

func mustJSONBody(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("bench: a request body that does not encode: %v", err))
	}
	return b
}
