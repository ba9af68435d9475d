package mqtt

import mochi "github.com/mochi-mqtt/server/v2"

// ServerOf is the broker library's server under b, for tests that need to
// reach inside it.
func ServerOf(b *Broker) *mochi.Server { return b.srv }
