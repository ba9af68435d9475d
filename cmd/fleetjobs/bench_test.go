package main_test

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// withServeRuntime gives this process serve's runtime settings
// (main.ServeRuntime: GOGC=300, a 1 GiB soft memory limit and two
// processors per CPU, unless GOGC, GOMEMLIMIT or GOMAXPROCS are set) until
// the benchmark ends, for benchmarks that run the service in this process:
// they measure it as `fleetjobs serve` runs.
func withServeRuntime(tb testing.TB) {
	percent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(-1) // a negative limit reads it
	procs := runtime.GOMAXPROCS(0)
	debug.SetGCPercent(percent)
	main.ServeRuntime()
	tb.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
		runtime.GOMAXPROCS(procs)
	})
}

// BenchmarkImport100k imports FLEETJOBS_BENCH_DEVICES devices (default
// 1,000; the target is 100,000 in under 10 s) through
// POST /api/v1/devices:import, end to end: each iteration's time runs until
// a GET of the last device, sent with the import's consistency token,
// answers 200, so the read models hold every device. The event store is the
// embedded one, on disk; the read models are in the real redis-server of
// FLEETJOBS_TEST_REDIS_URL.
//
//	FLEETJOBS_BENCH_DEVICES=100000 bash .ci/testenv.sh go test -run '^$' -bench Import100k -benchtime 1x ./cmd/fleetjobs
func BenchmarkImport100k(b *testing.B) {
	n := 1000
	if v := os.Getenv("FLEETJOBS_BENCH_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FLEETJOBS_BENCH_DEVICES=%q: want a positive number", v)
		}
	}
	url, root := MustRedisURL(b)
	withServeRuntime(b)
	m := MustServe(b, ServeConfig(b, url, root), zaptest.NewLogger(b, zaptest.Level(zap.WarnLevel)))
	api := m.HTTPURL() + fjhttp.APIBase
	MustStatus(b, Do(b, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)
	ndjson := map[string]string{"Content-Type": fjhttp.MIMENDJSON}
	cities := []string{"Seattle", "Portland", "Oslo", "Lima"}

	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		var body strings.Builder
		for j := range n {
			fmt.Fprintf(&body, `{"deviceId":"bench-%d-%07d","name":"Machine %d","templateId":"vending-v2","properties":{"city":%q,"temp":%d}}`+"\n",
				i, j, j, cities[j%len(cities)], j%40)
		}
		last := fmt.Sprintf("bench-%d-%07d", i, n-1)
		b.StartTimer()

		start := time.Now()
		a := MustStatus(b, Do(b, http.MethodPost, api+"/devices:import", body.String(), ndjson), http.StatusOK)
		imported := time.Since(start)
		// The consistency wait is bounded (5 s, then 503): ask again until
		// the read models have it, as a client would.
		for {
			g := Do(b, http.MethodGet, api+"/devices/"+last, nil, WithToken(a.Token()))
			if g.Status == http.StatusOK {
				break
			}
			if g.Status != http.StatusServiceUnavailable {
				b.Fatalf("GET %s: %d %s", last, g.Status, g.Body)
			}
		}
		took := time.Since(start)
		total += took
		b.Logf("%d devices: recorded in %s, in the read models after %s (%.0f devices/s end to end)",
			n, imported.Round(time.Millisecond), took.Round(time.Millisecond), float64(n)/took.Seconds())
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "devices/s")
}
