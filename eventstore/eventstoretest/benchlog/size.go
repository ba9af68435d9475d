package benchlog

import (
	"os"
	"strconv"
	"testing"
)

// DefaultEvents is the size of the generated log when FLEETJOBS_BENCH_EVENTS
// is unset: small enough for a smoke run (the issues' figures are for
// 5,000,000).
const DefaultEvents = 200_000

// EventsFromEnv is the size of the log a benchmark generates:
// FLEETJOBS_BENCH_EVENTS, default DefaultEvents; anything but a positive
// number fails the benchmark.
func EventsFromEnv(tb testing.TB) int {
	v := os.Getenv("FLEETJOBS_BENCH_EVENTS")
	if v == "" {
		return DefaultEvents
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("FLEETJOBS_BENCH_EVENTS=%q: want a positive number", v)
	}
	return n
}
