package main_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// TestRedisClusterAndSentinel runs serve with its read models in the Redis
// Cluster of FLEETJOBS_TEST_REDIS_CLUSTER_URL (seed nodes, and a key root
// that is a hash tag, as the README says) and behind the Sentinel of
// FLEETJOBS_TEST_REDIS_SENTINEL_URL: devices, a set and a job on the
// simulated fleet end in the read models, and `fleetjobs rebuild` rebuilds
// and verifies them there while serve follows.
func TestRedisClusterAndSentinel(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)
	for _, tc := range []struct{ name, env, root string }{
		{"cluster", "FLEETJOBS_TEST_REDIS_CLUSTER_URL", fmt.Sprintf("{fjt-cluster-%d-%s}", os.Getpid(), tag())},
		{"sentinel", "FLEETJOBS_TEST_REDIS_SENTINEL_URL", fmt.Sprintf("fjt-sentinel-%d-%s", os.Getpid(), tag())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := os.Getenv(tc.env)
			if url == "" {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s is not set: run the tests with bash .ci/testenv.sh (make test)", tc.env)
				}
				t.Skipf("%s is not set: run with bash .ci/testenv.sh go test ./cmd/fleetjobs/...", tc.env)
			}
			cfg := ServeConfig(t, url, tc.root)
			cfg.Devices = "sim"
			m := MustServe(t, cfg, nil)
			devices := append(simDevices("ok", "ok", 20), simDevice{"bad", "fail"})
			api, token := MustSimFleet(t, m, devices)

			MustCreateSimJob(t, api, token, "j1", 5, 0)
			MustJobEndsAs(t, api, "j1", "failed", fjhttp.JobCounts{Total: 21, Succeeded: 20, Failed: 1})
			l := MustDecode[fjhttp.List[fjhttp.Device]](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/fleet/devices?limit=100", nil, nil), http.StatusOK))
			if len(l.Items) != len(devices) {
				t.Errorf("the set lists %d devices, want %d", len(l.Items), len(devices))
			}

			env := []string{"FLEETJOBS_REDIS_URL=" + url}
			rebuild := func(args ...string) result {
				return MustRun(t, bin, env, append([]string{"rebuild", "--redis-key-root", tc.root, "--eventstore-url", m.EventStoreURL()}, args...)...)
			}
			if r := rebuild("--grace", "2s"); r.code != 0 || !strings.Contains(r.stdout, "switched devices 1 -> 2, jobs 1 -> 2") {
				t.Fatalf("rebuild: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if r := rebuild("--verify"); r.code != 0 || strings.Count(r.stdout, "identical") != 2 {
				t.Fatalf("verify: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			// serve follows the switch: the job is still there, read from version 2.
			j := MustDecode[fjhttp.Job](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j1", nil, nil), http.StatusOK))
			if j.Counts.Succeeded != 20 {
				t.Errorf("after the rebuild the job shows %+v", j.Counts)
			}
		})
	}
}
