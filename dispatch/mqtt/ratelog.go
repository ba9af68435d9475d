package mqtt

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// rateLog logs at most one warning per interval and counts the ones it
// held back, so a misbehaving device flooding bad answers cannot flood the
// log; the rest go to debug.
type rateLog struct {
	log      *zap.Logger
	now      func() time.Time
	interval time.Duration

	mu         sync.Mutex
	next       time.Time
	suppressed int
}

func (r *rateLog) warn(msg string, fields ...zap.Field) {
	r.mu.Lock()
	now := r.now()
	if now.Before(r.next) {
		r.suppressed++
		r.mu.Unlock()
		r.log.Debug(msg, fields...)
		return
	}
	suppressed := r.suppressed
	r.suppressed = 0
	r.next = now.Add(r.interval)
	r.mu.Unlock()
	r.log.Warn(msg, append(fields, zap.Int("suppressedSinceLast", suppressed))...)
}

// outageLog says once that the connection to the broker is down and once
// that it is back, however long the outage: autopaho retries every 1-10 s,
// and a warning per attempt would bury the rest of the log while the
// broker is down. The attempts in between go to debug. Its methods are
// called from the connection manager's goroutine, one at a time.
type outageLog struct {
	log *zap.Logger
	now func() time.Time

	since   time.Time // when the outage began; zero while connected
	failed  int       // connection attempts failed since
	refused bool      // a refusal of the credentials was warned of in this outage
}

// lost is the connection dropping.
func (o *outageLog) lost() {
	o.since, o.failed = o.now(), 0
	o.log.Warn("mqtt: lost the connection to the broker; reconnecting")
}

// attemptFailed is a connection attempt failing: a warning if it begins
// an outage (before the first connection), else a debug line.
func (o *outageLog) attemptFailed(msg string, fields ...zap.Field) {
	o.failed++
	if !o.since.IsZero() {
		o.log.Debug(msg, fields...)
		return
	}
	o.since = o.now()
	o.log.Warn(msg, fields...)
}

// refusedCredentials is a connection attempt the broker refused for the
// service's credentials: unlike a broker that does not answer, that needs
// an operator, so it warns once per outage even when the outage began
// otherwise (the connection lost, then the account changed).
func (o *outageLog) refusedCredentials(msg string, fields ...zap.Field) {
	if o.refused {
		o.attemptFailed(msg, fields...)
		return
	}
	o.refused = true
	o.failed++
	if o.since.IsZero() {
		o.since = o.now()
	}
	o.log.Warn(msg, fields...)
}

// up is a connection made: after an outage, it says so, with how long the
// outage lasted.
func (o *outageLog) up() {
	if o.since.IsZero() {
		return
	}
	o.log.Info("mqtt: connected to the broker again", zap.Duration("down", o.now().Sub(o.since)), zap.Int("failedAttempts", o.failed))
	o.since, o.failed, o.refused = time.Time{}, 0, false
}
