package main_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// TestBenchCommand runs `fleetjobs bench` against a serve on the simulated
// fleet: it imports the devices, runs the job on them to its end, and its
// summary says so; the log holds one result per device.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := MustBuild(t)
	m := MustServe(t, SimServeConfig(t), nil)
	r := MustRun(t, bin, nil, "bench", "--url", m.HTTPURL(), "--devices", "300", "--chunk", "128", "--run", "t1", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var got main.BenchResult
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("summary %q: %v", r.stdout, err)
	}
	if got.Run != "t1" || got.Devices != 300 || got.JobID != "bench-t1" || got.JobStatus != "completed" ||
		got.JobCounts != (fjhttp.JobCounts{Total: 300, Succeeded: 300}) || got.ImportPerSec <= 0 || got.JobDevicesSec <= 0 {
		t.Errorf("summary %+v", got)
	}
	s := MustReadJobStream(t, MustEventStore(t, m), "bench-t1")
	want := make(map[string]int, 300)
	for i := range 300 {
		want[benchDeviceID("t1", i)] = 1
	}
	if diff := cmp.Diff(want, s.results); diff != "" {
		t.Errorf("results per device (-want +got):\n%s", diff)
	}

	r = MustRun(t, bin, nil, "bench", "--url", m.HTTPURL(), "--devices", "300", "--run", "t1")
	if r.code != 1 || !strings.Contains(r.stderr, "choose another --run") {
		t.Errorf("the same run again: exit %d, stderr %q; want 1, choose another --run", r.code, r.stderr)
	}

	for _, args := range [][]string{
		{"bench", "--devices", "0"},
		{"bench", "--url", "ftp://127.0.0.1:1"},
		{"bench", "--chunk", "-1"},
		{"bench", "--run", "bad run"},
		{"bench", "--run", strings.Repeat("r", 115)},
		{"bench", "--timeout", "0s"},
		{"bench", "now"},
	} {
		r := MustRun(t, bin, nil, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "--help") {
			t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, r.code, r.stderr)
		}
	}
	r = MustRun(t, bin, nil, "bench", "--url", "http://127.0.0.1:1", "--devices", "1", "--timeout", "5s")
	if r.code != 1 || !strings.Contains(r.stderr, "bench template") {
		t.Errorf("no service there: exit %d, stderr %q; want 1 naming the step", r.code, r.stderr)
	}
}

func benchDeviceID(run string, i int) string { return fmt.Sprintf("bench-%s-%07d", run, i) }
