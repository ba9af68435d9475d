package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/dispatch"
)

// attachedClientID is the broker-side identity of attached Transports'
// deliveries. Like ServiceClientPrefix it holds a "/", which no device ID
// does, so no device can take it over.
const attachedClientID = ServiceClientPrefix + "attached"

// errBrokerClosed is why an attached Transport cannot deliver.
var errBrokerClosed = errors.New("the embedded MQTT broker is closed")

// Attach returns a Transport that runs inside the broker's process instead
// of connecting to it: Send hands each delivery to the broker directly (as a
// QoS 1 publish the broker has taken once Send returns, as a PUBACK would
// say), and the devices' answers reach the Transport from an in-process
// subscription to every result topic, on the answering device's own
// connection. The devices still connect, authenticate and are held to
// their topics over MQTT as before; what goes is the service's own MQTT
// connection to a broker in its own process: its client, its socket, a
// packet encoded and decoded twice per message, and half the broker's
// system calls. `serve` uses it with the embedded broker.
//
// The subscription is not shared: the answers all go to this Transport
// (and to every other attached one), and a service connecting over MQTT
// with ServiceCredential shares none of them. cfg.URL, Username,
// Password, ClientID, ShareGroup and Publishers are not used. Close ends
// the subscription; the broker keeps running.
func (b *Broker) Attach(cfg Config, answers chan<- []dispatch.Answer) *Transport {
	t := newTransport(cfg, answers, zap.String("broker", "embedded"))
	t.broker = b
	t.subID = int(b.nextSub.Add(1))
	b.mu.Lock()
	if b.attached == nil {
		b.attached = map[*Transport]bool{}
	}
	b.attached[t] = true
	b.mu.Unlock()
	b.srv.Topics.InlineSubscribe(mochi.InlineSubscription{
		Subscription: packets.Subscription{Identifier: t.subID, Filter: AnyResultFilter},
		Handler:      func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) { t.receive(pk.TopicName, pk.Payload) },
	})
	return t
}

// detach ends t's subscription.
func (b *Broker) detach(t *Transport) {
	b.srv.Topics.InlineUnsubscribe(t.subID, AnyResultFilter)
	b.mu.Lock()
	delete(b.attached, t)
	b.mu.Unlock()
}

// releaseAttached closes the attached Transports, so that none holds a
// device back any longer: the broker waits for every device's connection
// to end when it closes.
func (b *Broker) releaseAttached() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for t := range b.attached {
		t.stop()
	}
}

// serving is nil until the broker is closed.
func (b *Broker) serving() error {
	if b.closed.Load() {
		return errBrokerClosed
	}
	return nil
}

// sendInline hands each delivery to the attached broker, which queues it
// for its device's connection (or drops it, as it would a published
// message: the device is not connected, or its queue is full).
func (t *Transport) sendInline(ctx context.Context, ds []dispatch.Delivery, payloads [][]byte) error {
	for i, d := range ds {
		if err := t.inject(ctx, JobTopic(d.DeviceID, d.JobID), payloads[i]); err != nil {
			n := int64(len(ds) - i)
			t.publishFailed.Add(n)
			return fmt.Errorf("mqtt: %d of %d deliveries not taken by the broker: %w", n, len(ds), err)
		}
		t.published.Add(1)
	}
	return nil
}

// inject hands one delivery to the attached broker, unless the broker or
// the Transport is closed or ctx has ended.
func (t *Transport) inject(ctx context.Context, topic string, payload []byte) error {
	if err := t.broker.serving(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-t.closed:
		return errTransportClosed
	default:
	}
	return t.broker.srv.InjectPacket(t.broker.inline, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    1, // never acknowledged: an inline publish is taken when processed
	})
}

// attachment is what a Broker keeps for attached Transports.
type attachment struct {
	inline  *mochi.Client // the client attached Transports publish as
	nextSub atomic.Int64  // the last subscription identifier given out
	closed  atomic.Bool   // the broker is closed

	mu       sync.Mutex
	attached map[*Transport]bool // not yet closed
}
