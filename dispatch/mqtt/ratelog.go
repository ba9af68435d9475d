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
