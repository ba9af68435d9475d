package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// This file wires the MQTT device transport (FLEETJOBS_DEVICES=mqtt): the
// embedded broker (unless FLEETJOBS_MQTT_URL names one) with device keys
// checked against the event log, the Transport the dispatcher sends through,
// the watcher that ends the connections of devices whose key was replaced or
// which were deleted, and their readiness check and metrics.

// mqttDialTimeout bounds the first connection to the broker at start: a
// broker that cannot be reached is a start-up error, said plainly.
const mqttDialTimeout = 15 * time.Second

// mqttReadyWait is how long the readiness check waits for a connection that
// is down (autopaho reconnects on its own).
const mqttReadyWait = 200 * time.Millisecond

// keyWatchRetry is the pause before the key watcher subscribes again after
// its subscription dropped.
const keyWatchRetry = time.Second

// drawDeviceKey is commands.KeyDrawer over crypto/rand: the key format and
// its stored form are the broker's (mqtt.NewKey, mqtt.HashKey).
func drawDeviceKey() (key, hash string, err error) {
	key, err = mqtt.NewKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return key, mqtt.HashKey(key), nil
}

// deviceKeys is mqtt.DeviceKeys over the command side: it loads the device
// the way deciders do (cached state, caught up with the device's stream),
// so a device registered a moment ago can connect at once, and a deleted
// device, or a replaced key, is refused at once.
type deviceKeys struct {
	h   *commands.Handler
	log *zap.Logger
}

var _ mqtt.DeviceKeys = (*deviceKeys)(nil)

func (k *deviceKeys) Verify(ctx context.Context, deviceID, key string) bool {
	d, err := k.h.Device(ctx, deviceID)
	if err != nil {
		k.log.Warn("mqtt broker: cannot load the device to check its key; connection refused", zap.String("deviceId", deviceID), zap.Error(err))
		return false
	}
	return d.Exists() && d.KeyHash != "" && mqtt.KeyMatches(d.KeyHash, key)
}

// mqttDevices is the MQTT side of serve: the embedded broker (nil with an
// external one), the transport, and the key watcher.
type mqttDevices struct {
	broker    *mqtt.Broker
	transport *mqtt.Transport
	url       string // the broker, without credentials
	stopWatch context.CancelFunc
	watchDone chan struct{}
	log       *zap.Logger
}

// startMQTT starts the embedded broker (when cfg.MQTTURL is empty) and
// connects the transport, whose answers go to answers. On error what was
// started is closed again.
func startMQTT(ctx context.Context, cfg Config, h *commands.Handler, events *eventstore.Client, answers chan<- []dispatch.Answer, log *zap.Logger) (_ *mqttDevices, err error) {
	md := &mqttDevices{log: log}
	defer func() {
		if err != nil {
			md.close()
		}
	}()
	tc := mqtt.Config{Logger: log.Named("transport"), ShareGroup: shareGroup(cfg.KeyRoot())}
	if cfg.MQTTURL == "" {
		md.broker, err = mqtt.StartBroker(mqtt.BrokerConfig{Addr: cfg.MQTTAddr, Keys: &deviceKeys{h: h, log: log}, Logger: log.Named("broker")})
		if err != nil {
			return nil, err
		}
		log.Info("embedded MQTT broker listening", zap.String("addr", md.broker.Addr()), zap.String("url", md.broker.URL()))
		if !loopback(md.broker.Addr()) {
			log.Warn("the embedded MQTT broker listens beyond loopback without TLS: devices authenticate with their keys, but keys and jobs travel in clear; put it behind a TLS proxy or use a broker of your own (FLEETJOBS_MQTT_URL)",
				zap.String("addr", md.broker.Addr()))
		}
		md.watch(events)
		// The service does not connect to a broker in its own process: it
		// hands deliveries to it and reads answers from it directly.
		md.url = md.broker.URL()
		md.transport = md.broker.Attach(tc, answers)
		return md, nil
	}
	u, err := url.Parse(cfg.MQTTURL)
	if err != nil {
		return nil, fmt.Errorf("FLEETJOBS_MQTT_URL: %w", err)
	}
	if u.User != nil {
		tc.Username = u.User.Username()
		p, _ := u.User.Password()
		tc.Password = []byte(p)
		u.User = nil
	}
	tc.URL = u.String()
	log.Info("using an external MQTT broker: device authentication and topic permissions are its configuration", zap.String("url", tc.URL))
	md.url = tc.URL
	dctx, cancel := context.WithTimeout(ctx, mqttDialTimeout)
	defer cancel()
	md.transport, err = mqtt.Dial(dctx, tc, answers)
	if err != nil {
		return nil, fmt.Errorf("MQTT broker %s: %w", tc.URL, err)
	}
	return md, nil
}

// shareGroup is the shared-subscription group the service's instances read
// the answers in. The instances of one deployment share its Redis key
// root, so deployments that share a broker under different roots (and
// parallel tests) do not take each other's answers.
func shareGroup(root string) string {
	if root == projections.KeyRoot {
		return mqtt.DefaultShareGroup
	}
	return mqtt.DefaultShareGroup + "-" + root
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// watch follows the device streams from the end of the log and ends the
// broker connection of a device whose key was replaced or which was
// deleted: the broker checks keys when a device connects, so a connection
// made with the old key would otherwise stay up.
func (md *mqttDevices) watch(events *eventstore.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	md.stopWatch, md.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(md.watchDone)
		var from eventstore.Position
		// One warning per outage: the retries until the log answers again
		// are debug.
		failing := false
		warn := func(msg string, err error) {
			if failing {
				md.log.Debug(msg, zap.Error(err))
				return
			}
			md.log.Warn(msg, zap.Error(err))
			failing = true
		}
		for ctx.Err() == nil {
			if from.IsZero() {
				head, err := events.Head(ctx)
				if err != nil {
					warn("mqtt key watcher: cannot read the log's head; retrying", err)
					sleep(ctx, keyWatchRetry)
					continue
				}
				from = head
				failing = false
			}
			err := events.SubscribeAll(ctx, from, eventstore.Filter{StreamPrefixes: []string{eventstore.DeviceStreamPrefix}}, eventstore.Handler{
				Event: func(_ context.Context, r eventstore.Recorded) error {
					from, failing = r.Position, false
					if r.Type != eventstore.DeviceKeyIssued && r.Type != eventstore.DeviceDeleted {
						return nil
					}
					id := r.Stream[len(eventstore.DeviceStreamPrefix):]
					if md.broker.Disconnect(id) {
						md.log.Info("device disconnected: its key was replaced or it was deleted", zap.String("deviceId", id), zap.String("event", r.Type))
					}
					return nil
				},
				Checkpoint: func(_ context.Context, p eventstore.Position) error { from, failing = p, false; return nil },
				CaughtUp:   func(context.Context) error { failing = false; return nil },
			})
			if ctx.Err() == nil {
				warn("mqtt key watcher: subscription ended; subscribing again", err)
				sleep(ctx, keyWatchRetry)
			}
		}
	}()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ready is the /readyz check: the transport is connected to the broker.
func (md *mqttDevices) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, mqttReadyWait)
	defer cancel()
	return md.transport.Connected(ctx)
}

// close disconnects the transport, stops the watcher and the embedded
// broker. The dispatcher must be closed first (it sends through the
// transport).
func (md *mqttDevices) close() error {
	var errs []error
	if md.transport != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, md.transport.Close(ctx))
		cancel()
	}
	if md.stopWatch != nil {
		md.stopWatch()
		<-md.watchDone
	}
	if md.broker != nil {
		errs = append(errs, md.broker.Close())
	}
	return errors.Join(errs...)
}

// registerMQTTMetrics exposes the transport's counters on /metrics, and
// the embedded broker's when there is one (broker may be nil).
func registerMQTTMetrics(m *fjhttp.Metrics, t *mqtt.Transport, broker *mqtt.Broker) error {
	var errs []error
	if broker != nil {
		errs = append(errs,
			m.CounterFunc("fleetjobs_mqtt_broker_dropped_total",
				"Messages the embedded broker did not deliver: a device's queue of pending writes was full or it had too many unacknowledged messages (the job times out on that device).",
				func() float64 { return float64(broker.Stats().Dropped) }))
	}
	return errors.Join(append(errs,
		m.CounterFunc("fleetjobs_mqtt_delivered_total",
			"Job deliveries the MQTT broker acknowledged (QoS 1).",
			func() float64 { return float64(t.Stats().Published) }),
		m.CounterFunc("fleetjobs_mqtt_delivery_failures_total",
			"Job deliveries the MQTT broker did not acknowledge (the dispatcher retries them).",
			func() float64 { return float64(t.Stats().PublishFailed) }),
		m.CounterFunc("fleetjobs_mqtt_answers_total",
			"Device answers received over MQTT and handed to the dispatcher.",
			func() float64 { return float64(t.Stats().Answers) }),
		m.CounterFunc("fleetjobs_mqtt_answers_waited_total",
			"Device answers that found the dispatcher busy (the transport's queue of answers full) and waited, holding back the device that sent them (embedded broker) or the service's reading of its broker connection: a sign that answers come faster than they are recorded.",
			func() float64 { return float64(t.Stats().Waited) }),
		m.Register(droppedAnswers{t}),
	)...)
}

// droppedAnswers is the counter of device answers the transport dropped,
// by reason.
type droppedAnswers struct{ t *mqtt.Transport }

var droppedAnswersDesc = prometheus.NewDesc("fleetjobs_mqtt_answers_dropped_total",
	"Device answers dropped as malformed, by reason: oversized, bad_topic (not a result topic with valid IDs), malformed (not a JSON result object), bad_status.",
	[]string{"reason"}, nil)

func (droppedAnswers) Describe(ch chan<- *prometheus.Desc) { ch <- droppedAnswersDesc }

func (d droppedAnswers) Collect(ch chan<- prometheus.Metric) {
	s := d.t.Stats()
	for _, r := range []struct {
		reason string
		n      int64
	}{{"oversized", s.Oversized}, {"bad_topic", s.BadTopic}, {"malformed", s.Malformed}, {"bad_status", s.BadStatus}} {
		ch <- prometheus.MustNewConstMetric(droppedAnswersDesc, prometheus.CounterValue, float64(r.n), r.reason)
	}
}
