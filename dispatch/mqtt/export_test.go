package mqtt

import mochi "github.com/mochi-mqtt/server/v2"

// ServerOf is the broker library's server under b, for tests that need to
// reach inside it.
func ServerOf(b *Broker) *mochi.Server { return b.srv }

// OpenConns is how many connections b has accepted and not closed.
func OpenConns(b *Broker) int {
	b.conns.mu.Lock()
	defer b.conns.mu.Unlock()
	return len(b.conns.conns)
}

// Reconnecting reports whether a's connection manager still runs (it would
// try to connect again).
func Reconnecting(a *Agent) bool {
	select {
	case <-a.cm.Done():
		return false
	default:
		return true
	}
}
