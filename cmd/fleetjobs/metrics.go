package main

import (
	"context"
	"errors"
	"math"
	"net/url"
	"strings"
	"time"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// lagTimeout bounds the read of the log's head behind the lag gauge, so a
// scrape never hangs on a store that does not answer.
const lagTimeout = 2 * time.Second

// registerProjectionMetrics exposes the runner's progress on /metrics, so
// that a stalled or failing projection shows in monitoring, not only in the
// log: how far behind the log it is, what it has applied, whether it has
// caught up and whether it is failing.
func registerProjectionMetrics(m *fjhttp.Metrics, r *projections.Runner) error {
	lag := func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), lagTimeout)
		defer cancel()
		l, err := r.Lag(ctx)
		if err != nil {
			return math.NaN() // unknown, which is not zero
		}
		return float64(l.Bytes)
	}
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return errors.Join(
		m.GaugeFunc("fleetjobs_projection_lag_bytes",
			"How far the read models are behind the event log, in bytes of log (positions are byte offsets); NaN when the log does not answer.", lag),
		m.GaugeFunc("fleetjobs_projection_position",
			"The commit position in $all up to which every projection has applied events.",
			func() float64 { return float64(r.Position().Commit) }),
		m.CounterFunc("fleetjobs_projection_events_applied_total",
			"Events applied to the read models since the process started.",
			func() float64 { return float64(r.Status().EventsApplied) }),
		m.CounterFunc("fleetjobs_projection_batches_total",
			"Batches (one MULTI/EXEC each) committed to the read models since the process started.",
			func() float64 { return float64(r.Status().Batches) }),
		m.GaugeFunc("fleetjobs_projection_caught_up",
			"1 once the projections have applied the history and follow the live log, else 0.",
			func() float64 { return boolean(r.Status().CaughtUp) }),
		m.GaugeFunc("fleetjobs_projection_failing",
			"1 while the projections are recovering from a failure (Redis or the log unreachable, an event they cannot apply), else 0.",
			func() float64 { return boolean(r.Status().Err != nil) }),
	)
}

// redactURL replaces the password of a connection string with "xxxxx"
// before it is logged or printed. It also takes what url.Parse refuses,
// such as KurrentDB's esdb+discover://user:pass@h1:2113,h2:2113.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "<unparsable URL>"
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPass := strings.Cut(authority[:at], ":")
	if !hasPass {
		return raw
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
