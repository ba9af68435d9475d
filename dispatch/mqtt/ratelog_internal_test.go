package mqtt

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestOutageLogWarnsOfRefusedCredentials: an outage is one warning, and
// the broker refusing the service's credentials during it is one more (an
// operator must act on it), however many attempts follow; after the
// connection is back, the next outage warns again.
func TestOutageLogWarnsOfRefusedCredentials(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	o := &outageLog{log: zap.New(core), now: time.Now}
	warnings := func() []string {
		var out []string
		for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
			out = append(out, e.Message)
		}
		return out
	}
	o.lost()
	o.attemptFailed("mqtt: connection attempt failed")
	o.refusedCredentials("mqtt: the broker refused the service's credentials")
	o.refusedCredentials("mqtt: the broker refused the service's credentials")
	o.attemptFailed("mqtt: connection attempt failed")
	if got := warnings(); len(got) != 2 || got[1] != "mqtt: the broker refused the service's credentials" {
		t.Fatalf("warnings during one outage: %q, want the lost connection and one refusal", got)
	}
	o.up()
	o.lost()
	o.refusedCredentials("mqtt: the broker refused the service's credentials")
	if got := warnings(); len(got) != 4 {
		t.Errorf("warnings after a second outage with a refusal: %q, want 4 in all", got)
	}
}
