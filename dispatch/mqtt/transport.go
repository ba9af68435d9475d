package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/dispatch"
)

// Defaults of a Transport.
const (
	// DefaultPublishers is how many deliveries are in flight at once, over
	// all concurrent Sends (each waits for its PUBACK); the broker's receive
	// maximum caps it further.
	DefaultPublishers = 1000
	// DefaultAnswerBatch caps the answers handed to the dispatcher at once.
	DefaultAnswerBatch = 1000
	// answerQueue is how many received answers the MQTT client holds
	// before it stops reading the connection (announced as the CONNECT's
	// Receive Maximum, which also sizes the client's queue of QoS 0
	// messages): at most this many packets of the broker's largest size
	// are in memory before Transport.receive has looked at them.
	answerQueue = 256
	// DefaultConnectTimeout bounds each connection attempt.
	DefaultConnectTimeout = 10 * time.Second
	// ServiceClientPrefix starts the default client ID of a Transport. It
	// holds a "/", which no device ID does, so a device (whose client ID is
	// its ID on the embedded broker) can never take over the service's session.
	ServiceClientPrefix = "fleetjobs/service/"
	// AnswerQoS is the QoS of the service's subscription to the answers,
	// the leg from the broker to the service (a device publishes its answer
	// at QoS 1, so the broker has it). It is 0 because QoS 1 on that leg
	// adds nothing the service can use and costs what it cannot afford. The
	// service's session ends with its connection (clean start, no expiry),
	// so answers in flight on a dropped connection are lost at either QoS.
	// At QoS 1 a broker also holds back every answer beyond the receive
	// maximum the service announces (answerQueue), until earlier ones are
	// acknowledged, and the embedded broker releases such answers only as
	// the service sends further packets: at the end of a burst the last
	// ones could wait for the next keep-alive ping. QoS 1 acknowledgements
	// also cost a packet per answer. Flow control is TCP's: when the
	// dispatcher is busy, the Transport stops reading (answerQueue,
	// receive), the broker's writes to it wait, and the embedded broker
	// holds back the answering devices rather than drop their answers
	// (serviceQueueHook). An external broker applies its own limits to a
	// slow subscriber (for Mosquitto, max_queued_messages and
	// max_queued_bytes): size them for the fleet's answer rate.
	AnswerQoS = 0
)

// Config is what a Transport needs. URL is required.
type Config struct {
	// URL is the broker, e.g. mqtt://127.0.0.1:1883.
	URL string
	// Username and Password are the service credential (Broker.ServiceCredential
	// for the embedded broker); empty for an anonymous broker.
	Username string
	Password []byte
	// ClientID must be unique per service instance; default
	// ServiceClientPrefix and a random suffix.
	ClientID string
	// ShareGroup names the shared subscription; default DefaultShareGroup.
	// Instances of one service use the same group.
	ShareGroup string
	// MaxAnswerBytes bounds an answer's payload; default DefaultMaxAnswerBytes.
	MaxAnswerBytes int
	// Publishers bounds the deliveries in flight, over all concurrent
	// Sends; default DefaultPublishers.
	Publishers int
	// AnswerBatch caps the answers handed over at once; default DefaultAnswerBatch.
	AnswerBatch int
	// Now is the clock of the log rate limit and of the outages the log
	// reports; default time.Now.
	Now    func() time.Time
	Logger *zap.Logger
}

// Stats are a Transport's counters since it started.
type Stats struct {
	Published     int64 // deliveries acknowledged by the broker
	PublishFailed int64 // deliveries the broker did not take
	Answers       int64 // answers handed to the dispatcher
	Waited        int64 // answers that found the dispatcher busy and held their sender back
	Oversized     int64 // answers dropped: payload over MaxAnswerBytes
	BadTopic      int64 // answers dropped: not a result topic with valid IDs
	Malformed     int64 // answers dropped: not a JSON result object
	BadStatus     int64 // answers dropped: status neither succeeded nor failed
}

// Dropped is the number of answers dropped for any reason.
func (s Stats) Dropped() int64 { return s.Oversized + s.BadTopic + s.Malformed + s.BadStatus }

// Transport is the MQTT dispatch.Transport. Send may be called from any
// goroutine; Run must be running for answers to reach the dispatcher.
type Transport struct {
	cfg     Config
	cm      *autopaho.ConnectionManager // nil when attached to an embedded broker
	broker  *Broker                     // the embedded broker it is attached to (Broker.Attach), or nil
	subID   int                         // the attached Transport's subscription on broker
	answers chan<- []dispatch.Answer
	inbox   chan dispatch.Answer
	publish chan publishRequest // to the publishers (unbuffered: a request taken is a request sent)
	closed  chan struct{}       // closed by Close: receive stops waiting for room, publishers stop
	warn    *rateLog
	log     *zap.Logger

	closeOnce sync.Once

	published, publishFailed, handed, waited  atomic.Int64
	oversized, badTopic, malformed, badStatus atomic.Int64
}

var _ dispatch.Transport = (*Transport)(nil)

// Dial connects to the broker, subscribes to the answers (again after every
// reconnection) and returns once the first connection is up, or ctx ends,
// or the broker refuses the credentials (an error wrapping ErrRefused).
// Answers go to answers, which the dispatcher reads (dispatch.Config.Answers),
// once Run is running. The connection lives until Close.
func Dial(ctx context.Context, cfg Config, answers chan<- []dispatch.Answer) (*Transport, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt: broker URL %q: want mqtt://host:port", cfg.URL)
	}
	if cfg.ClientID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
		cfg.ClientID = ServiceClientPrefix + hex.EncodeToString(b[:])
	}
	t := newTransport(cfg, answers, zap.String("broker", u.Host), zap.String("clientId", cfg.ClientID))
	cfg, log := t.cfg, t.log
	filter := SharedResultFilter(cfg.ShareGroup)
	// A refusal of the credentials ends the wait for the first connection
	// at once, instead of retrying until ctx ends: a wrong password does
	// not get right by waiting.
	awaitCtx, refusal := context.WithCancelCause(ctx)
	defer refusal(nil)
	outage := &outageLog{log: log, now: cfg.Now}
	pc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ConnectTimeout:                DefaultConnectTimeout,
		AttemptConnection:             batchDialer(u),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			rm := uint16(answerQueue)
			cp.Properties.ReceiveMaximum = &rm
			return cp, nil
		},
		ReconnectBackoff: autopaho.NewExponentialBackoff(100*time.Millisecond, 10*time.Second, time.Second, 2),
		ConnectUsername:  cfg.Username,
		ConnectPassword:  cfg.Password,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			outage.up()
			// Must not block: subscribe in the background. A failed
			// subscription is retried by dropping the connection.
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), DefaultConnectTimeout)
				defer cancel()
				if _, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: AnswerQoS}}}); err != nil {
					log.Warn("mqtt: subscribe to answers failed", zap.String("filter", filter), zap.Error(err))
					return
				}
				log.Debug("mqtt: connected and subscribed", zap.String("filter", filter))
			}()
		},
		OnConnectionDown: func() bool {
			outage.lost()
			return true
		},
		OnConnectError: func(err error) {
			if ce, ok := refused(err); ok {
				// Before the first connection, a refusal ends Dial (below);
				// later (the broker's accounts changed), it is retried.
				outage.refusedCredentials("mqtt: the broker refused the service's credentials", zap.Uint8("reason", ce.ReasonCode), zap.String("message", ce.Reason))
				refusal(fmt.Errorf("%w (CONNACK reason 0x%02x): check the user and password in FLEETJOBS_MQTT_URL", ErrRefused, ce.ReasonCode))
				return
			}
			outage.attemptFailed("mqtt: connection attempt failed", zap.Error(err))
		},
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					t.receive(pr.Packet.Topic, pr.Packet.Payload)
					return true, nil
				},
			},
			OnClientError: func(err error) { log.Debug("mqtt: client error", zap.Error(err)) },
		},
	}
	cm, err := autopaho.NewConnection(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("mqtt: connect to %s: %w", u.Host, err)
	}
	t.cm = cm
	for range cfg.Publishers {
		go t.publisher()
	}
	if err := cm.AwaitConnection(awaitCtx); err != nil {
		_ = t.Close(context.Background())
		if cause := context.Cause(awaitCtx); errors.Is(cause, ErrRefused) {
			err = cause
		}
		return nil, fmt.Errorf("mqtt: connect to %s: %w", u.Host, err)
	}
	return t, nil
}

// newTransport is a Transport on cfg with its defaults filled in, not yet
// connected; its log carries fields.
func newTransport(cfg Config, answers chan<- []dispatch.Answer, fields ...zap.Field) *Transport {
	if cfg.ShareGroup == "" {
		cfg.ShareGroup = DefaultShareGroup
	}
	if cfg.MaxAnswerBytes <= 0 {
		cfg.MaxAnswerBytes = DefaultMaxAnswerBytes
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = DefaultPublishers
	}
	if cfg.AnswerBatch <= 0 {
		cfg.AnswerBatch = DefaultAnswerBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	log := cfg.Logger.With(fields...)
	return &Transport{
		cfg:     cfg,
		answers: answers,
		inbox:   make(chan dispatch.Answer, 4*cfg.AnswerBatch),
		publish: make(chan publishRequest),
		closed:  make(chan struct{}),
		warn:    &rateLog{log: log, now: cfg.Now, interval: 10 * time.Second},
		log:     log,
	}
}

// receive handles one answer. It runs on the client's receive path (on an
// attached Transport, on the answering device's connection in the broker):
// waiting here for room in the inbox stops the client's reading once its
// queue (answerQueue) is full, which holds back the broker (AnswerQoS), or
// holds back the device itself: the backpressure we want when the
// dispatcher is busy.
func (t *Transport) receive(topic string, payload []byte) {
	a, err := decodeAnswer(topic, payload, t.cfg.MaxAnswerBytes)
	if err != nil {
		switch {
		case errors.Is(err, errOversized):
			t.oversized.Add(1)
		case errors.Is(err, errBadTopic):
			t.badTopic.Add(1)
		case errors.Is(err, errMalformed):
			t.malformed.Add(1)
		default:
			t.badStatus.Add(1)
		}
		if len(topic) > 200 {
			topic = topic[:200]
		}
		t.warn.warn("mqtt: device answer dropped", zap.String("topic", topic), zap.Int("bytes", len(payload)), zap.Error(err))
		return
	}
	select {
	case t.inbox <- a:
		return
	default:
	}
	t.waited.Add(1)
	select {
	case t.inbox <- a:
	case <-t.closed:
	}
}

// Run hands the received answers to the answers channel, in batches of what
// has arrived (at most AnswerBatch), until ctx ends; then it returns nil.
func (t *Transport) Run(ctx context.Context) error {
	for {
		var batch []dispatch.Answer
		select {
		case <-ctx.Done():
			return nil
		case a := <-t.inbox:
			batch = append(make([]dispatch.Answer, 0, 64), a)
		}
	drain:
		for len(batch) < t.cfg.AnswerBatch {
			select {
			case a := <-t.inbox:
				batch = append(batch, a)
			default:
				break drain
			}
		}
		select {
		case t.answers <- batch:
			t.handed.Add(int64(len(batch)))
		case <-ctx.Done():
			return nil
		}
	}
}

// Send publishes each delivery at QoS 1 and returns once the broker has
// acknowledged them all. Its error names how many it did not take: the
// dispatcher retries the batch, and devices drop the duplicates.
func (t *Transport) Send(ctx context.Context, ds []dispatch.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	var ops []byte
	var opsOf *dispatch.Operation // the batch's shared operations, encoded once
	payloads := make([][]byte, len(ds))
	for i, d := range ds {
		if !validID(d.DeviceID) || !validID(d.JobID) {
			return fmt.Errorf("mqtt: delivery of job %q to device %q: the IDs cannot form a topic", d.JobID, d.DeviceID)
		}
		var first *dispatch.Operation
		if len(d.Operations) > 0 {
			first = &d.Operations[0]
		}
		if ops == nil || first != opsOf {
			b, err := encodeOperations(d.Operations)
			if err != nil {
				return fmt.Errorf("mqtt: job %s: %w", d.JobID, err)
			}
			ops, opsOf = b, first
		}
		payloads[i] = appendJob(make([]byte, 0, 96+len(ops)), d, ops)
	}

	if t.broker != nil {
		return t.sendInline(ctx, ds, payloads)
	}
	b := &sendBatch{}
	for i := range ds {
		b.wg.Add(1)
		r := publishRequest{ctx: ctx, topic: JobTopic(ds[i].DeviceID, ds[i].JobID), payload: payloads[i], batch: b}
		select {
		case t.publish <- r:
		case <-ctx.Done():
			b.fail(ctx.Err())
		case <-t.closed:
			b.fail(errTransportClosed)
		}
	}
	b.wg.Wait()
	if n := b.failed.Load(); n > 0 {
		t.publishFailed.Add(n)
		return fmt.Errorf("mqtt: %d of %d deliveries not acknowledged by the broker: %w", n, len(ds), b.err)
	}
	return nil
}

// errTransportClosed is why a delivery was not sent after Close.
var errTransportClosed = errors.New("the transport is closed")

// publishRequest is one delivery handed to a publisher.
type publishRequest struct {
	ctx     context.Context
	topic   string
	payload []byte
	batch   *sendBatch
}

// sendBatch collects the outcome of one Send's deliveries.
type sendBatch struct {
	wg      sync.WaitGroup
	failed  atomic.Int64
	errOnce sync.Once
	err     error // the first failure
}

func (b *sendBatch) fail(err error) {
	b.failed.Add(1)
	b.errOnce.Do(func() { b.err = err })
	b.wg.Done()
}

// publisher publishes deliveries one at a time, each waiting for the
// broker's acknowledgement, until Close. The publishers live as long as
// the Transport: a Send hands its deliveries to them instead of starting
// goroutines of its own, so that many concurrent Sends share
// Config.Publishers deliveries in flight.
func (t *Transport) publisher() {
	for {
		select {
		case r := <-t.publish:
			if _, err := t.cm.Publish(r.ctx, &paho.Publish{QoS: 1, Topic: r.topic, Payload: r.payload}); err != nil {
				r.batch.fail(err)
				continue
			}
			t.published.Add(1)
			r.batch.wg.Done()
		case <-t.closed:
			return
		}
	}
}

// stop ends the waits of receive, Send and the publishers (once).
func (t *Transport) stop() { t.closeOnce.Do(func() { close(t.closed) }) }

// Stats returns the Transport's counters.
func (t *Transport) Stats() Stats {
	return Stats{
		Published:     t.published.Load(),
		PublishFailed: t.publishFailed.Load(),
		Answers:       t.handed.Load(),
		Waited:        t.waited.Load(),
		Oversized:     t.oversized.Load(),
		BadTopic:      t.badTopic.Load(),
		Malformed:     t.malformed.Load(),
		BadStatus:     t.badStatus.Load(),
	}
}

// Close disconnects from the broker and waits until the connection is down
// or ctx ends. Answers received but not yet handed over are lost (the
// dispatcher resends after a restart).
func (t *Transport) Close(ctx context.Context) error {
	t.stop()
	if t.broker != nil {
		t.broker.detach(t)
		return nil
	}
	if err := t.cm.Disconnect(ctx); err != nil {
		return fmt.Errorf("mqtt: disconnect: %w", err)
	}
	return nil
}
