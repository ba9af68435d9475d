package mqtt

import (
	"context"
	"fmt"
)

// Connected returns nil while the Transport is connected to the broker;
// otherwise it waits for the connection until ctx ends and then says so.
// Readiness checks call it with a short deadline.
func (t *Transport) Connected(ctx context.Context) error {
	if t.broker != nil {
		return t.broker.serving()
	}
	if err := t.cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("not connected to the MQTT broker: %w", err)
	}
	return nil
}
