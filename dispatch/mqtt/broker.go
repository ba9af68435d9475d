package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.uber.org/zap"
)

// DeviceKeys checks device keys. Whoever implements it stores only hashes
// (HashKey), never the keys themselves.
type DeviceKeys interface {
	// Verify reports whether key is deviceID's current key. It is called
	// once per connection attempt.
	Verify(ctx context.Context, deviceID, key string) bool
}

// DeviceKeysFunc adapts a function to DeviceKeys.
type DeviceKeysFunc func(ctx context.Context, deviceID, key string) bool

// Verify calls f.
func (f DeviceKeysFunc) Verify(ctx context.Context, deviceID, key string) bool {
	return f(ctx, deviceID, key)
}

// KeyBytes is the size of a device key before encoding.
const KeyBytes = 32

// NewKey draws a device key from random (crypto/rand.Reader in production):
// 32 random bytes, base64url without padding. It is shown to the operator
// once; only HashKey(key) is stored.
func NewKey(random io.Reader) (string, error) {
	var b [KeyBytes]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return "", fmt.Errorf("draw a device key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashKey is the stored form of a device key: "sha256:" and the hex SHA-256
// of the key. A fast hash is enough because keys are 256 random bits, not
// passwords a person chose: there is nothing to guess.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// KeyMatches reports whether key hashes to hash, in constant time.
func KeyMatches(hash, key string) bool {
	return subtle.ConstantTimeCompare([]byte(hash), []byte(HashKey(key))) == 1
}

// DefaultServiceUsername is the username of the service's credential.
const DefaultServiceUsername = "fleetjobs-service"

// BrokerConfig is what a Broker needs. Addr and Keys are required.
type BrokerConfig struct {
	// Addr is where it listens (FLEETJOBS_MQTT_ADDR), e.g. 127.0.0.1:1884;
	// port 0 picks a free one (Addr tells which).
	Addr string
	// Keys checks device keys.
	Keys DeviceKeys
	// ServiceUsername defaults to DefaultServiceUsername. It cannot be a
	// device ID: a device with that ID could not connect.
	ServiceUsername string
	// ServicePassword is the service's password; empty draws one from
	// Random at start (then only this process knows it).
	ServicePassword []byte
	// Random is where a drawn service password comes from; default
	// crypto/rand.Reader.
	Random io.Reader
	// VerifyTimeout bounds one Keys.Verify; default 5 s.
	VerifyTimeout time.Duration
	// MaxPendingWrites is how many packets the broker queues for one
	// connection; default DefaultMaxPendingWrites. A message for a device
	// whose queue is full is dropped; one for the service waits
	// (serviceQueueHook).
	MaxPendingWrites int
	// WriteTimeout bounds one write to a connection; default
	// DefaultWriteTimeout. A connection whose write takes longer (a device
	// that stopped reading) is ended.
	WriteTimeout time.Duration
	// MaxKeepAlive bounds a connection's keep-alive; default
	// DefaultMaxKeepAlive. A connection that asks for none (0) or a
	// longer one gets this one, announced to MQTT v5 clients in the
	// CONNACK (Server Keep Alive), and is ended after one and a half
	// times it without a packet.
	MaxKeepAlive time.Duration
	Logger       *zap.Logger
}

// DefaultMaxKeepAlive is BrokerConfig.MaxKeepAlive by default (the most
// AWS IoT Core allows). Without a bound, a device that asked for no
// keep-alive and dropped off the network without closing its connection
// (power cut, lost link) would keep its connection, its two goroutines
// and its queue until a write to it timed out, and only if one came.
const DefaultMaxKeepAlive = 20 * time.Minute

// DefaultMaxPendingWrites is BrokerConfig.MaxPendingWrites by default.
// Each connection's queue is allocated up front: the broker library's own
// default (8,192) costs 64 KiB per device, 640 MiB for 10,000 devices. A
// device has a handful of jobs in flight, and its queue only fills while
// its socket does not drain; then a job is dropped (counted) and the
// dispatcher resends it. At 1,024 (8 KiB a device) the queues were more
// than half the heap with 10,000 devices connected, and serve's 1 GiB soft
// memory limit, stacks included, kept the collector running: 256 took
// BenchmarkFleetRoundTrips from 12,100-14,000 round trips/s to
// 17,700-19,400 (BENCHMARKS.md).
const DefaultMaxPendingWrites = 256

// Broker is the embedded MQTT broker. The service connects with
// ServiceCredential; devices connect as their ID with their key and may
// only subscribe to their own job topic (JobFilter) and publish their own
// results (ResultTopic).
type Broker struct {
	srv      *mochi.Server
	listener *listeners.Net
	conns    *guardedListener
	user     string
	password []byte
	queue    *serviceQueueHook
	attachment

	closeOnce sync.Once
	closeErr  error
}

// StartBroker starts listening on cfg.Addr and serving; Close stops it.
func StartBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.Keys == nil {
		return nil, fmt.Errorf("mqtt broker: no DeviceKeys")
	}
	if cfg.ServiceUsername == "" {
		cfg.ServiceUsername = DefaultServiceUsername
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.VerifyTimeout <= 0 {
		cfg.VerifyTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxPendingWrites <= 0 {
		cfg.MaxPendingWrites = DefaultMaxPendingWrites
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxKeepAlive <= 0 {
		cfg.MaxKeepAlive = DefaultMaxKeepAlive
	}
	if len(cfg.ServicePassword) == 0 {
		k, err := NewKey(cfg.Random)
		if err != nil {
			return nil, fmt.Errorf("mqtt broker: service password: %w", err)
		}
		cfg.ServicePassword = []byte(k)
	}
	caps := mochi.NewDefaultServerCapabilities()
	// Answers are small; a huge packet is refused by the broker before it
	// reaches anyone (the transport still checks its own limit).
	caps.MaximumPacketSize = 256 << 10
	// Retained messages would replay an old job to a device that
	// subscribes later; the topics never need them.
	caps.RetainAvailable = 0
	caps.MaximumClientWritesPending = int32(cfg.MaxPendingWrites)
	srv := mochi.New(&mochi.Options{
		Capabilities: caps,
		// The broker's own slog output is discarded: connection churn
		// would be noise at info; auth refusals are logged by the hook.
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
		SysTopicResendInterval: 0,
	})
	h := &authHook{cfg: cfg, log: cfg.Logger}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("mqtt broker: add auth hook: %w", err)
	}
	if err := srv.AddHook(&keepAliveHook{max: keepAliveSeconds(cfg.MaxKeepAlive)}, nil); err != nil {
		return nil, fmt.Errorf("mqtt broker: add keep-alive hook: %w", err)
	}
	q := &serviceQueueHook{user: cfg.ServiceUsername, log: cfg.Logger}
	if err := srv.AddHook(q, nil); err != nil {
		return nil, fmt.Errorf("mqtt broker: add service queue hook: %w", err)
	}
	nl, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt broker: listen on %s: %w", cfg.Addr, err)
	}
	guarded := newGuardedListener(nl, cfg.WriteTimeout)
	l := listeners.NewNet("fleetjobs", guarded)
	if err := srv.AddListener(l); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("mqtt broker: listen on %s: %w", cfg.Addr, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("mqtt broker: serve on %s: %w", cfg.Addr, err)
	}
	b := &Broker{srv: srv, listener: l, conns: guarded, user: cfg.ServiceUsername, password: cfg.ServicePassword, queue: q}
	b.inline = srv.NewClient(nil, "local", attachedClientID, true)
	return b, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.listener.Address() }

// URL is the broker's URL for Config.URL and AgentConfig.URL.
func (b *Broker) URL() string { return "mqtt://" + b.Addr() }

// ServiceCredential is the username and password the service connects with.
func (b *Broker) ServiceCredential() (username string, password []byte) {
	return b.user, append([]byte(nil), b.password...)
}

// BrokerStats are the embedded broker's counters since it started; each
// only grows.
type BrokerStats struct {
	// Dropped is the messages the broker did not deliver to a connected
	// client: a device's queue of pending writes was full or it had too
	// many unacknowledged QoS 1 messages (its job times out), or an answer
	// could not be written to a failing service connection.
	Dropped int64
	// ServiceWaited is the answers for the service that found its queue
	// of pending writes full and were written directly instead (or are
	// being written), holding back the device that sent them until the
	// service took them. One whose write failed is in Dropped too.
	ServiceWaited int64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() BrokerStats {
	info := b.srv.Info.Clone()
	return BrokerStats{Dropped: b.queue.dropped.Load() + b.queue.lost.Load() + info.InflightDropped, ServiceWaited: b.queue.direct.Load()}
}

// Disconnect ends the connection of device deviceID, if it has one (its
// key was replaced or it was deleted): it must connect again, and the
// new connection is checked against its current key. It reports whether
// the device was connected.
func (b *Broker) Disconnect(deviceID string) bool {
	cl, ok := b.srv.Clients.Get(deviceID)
	if !ok || cl.Closed() || string(cl.Properties.Username) != deviceID {
		return false
	}
	_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized) // the error is the code itself
	return true
}

// Close stops listening, disconnects every client and waits for their
// connections to end; the Transports attached to it are closed first (one
// holding a device back would keep its connection from ending). It is safe
// to call more than once.
//
// It closes the listener itself rather than leave it to the broker
// library's Server.Close: that lists the listener's clients with
// Clients.GetByListener, which takes the clients' read lock and then takes
// it again (Clients.Len); a device connecting or leaving in between waits
// for the lock as a writer, which blocks the second read lock, and the
// shutdown hangs for good. Here the clients are listed once
// (Clients.GetAll), and the server is closed with no listener left, which
// still waits for the connections' goroutines.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		b.releaseAttached()
		b.srv.Listeners.Delete(b.listener.ID())
		b.listener.Close(func(string) {}) // stops accepting; the clients are ours to end
		for _, cl := range b.srv.Clients.GetAll() {
			if !cl.Net.Inline && !cl.Closed() {
				_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown) // the error is the code itself
			}
		}
		b.conns.closeConns() // those the library does not know yet, or did not end
		if err := b.srv.Close(); err != nil {
			b.closeErr = fmt.Errorf("mqtt broker: close: %w", err)
		}
	})
	return b.closeErr
}

// serviceQueueHook keeps the broker from dropping answers because the
// service reads them more slowly than devices send them. The broker queues
// at most MaxPendingWrites packets per connection and drops a message that
// finds the queue full. Thousands of devices answering at once can outrun
// the few service connections reading them, and a dropped answer would
// leave its device to time out although it did the job. For a service
// connection, the message is written directly instead (ahead of the
// queued ones, which is harmless for answers), on the goroutine of the
// device that published it: when the service's socket is full, that write
// waits, and with it the device. It goes at QoS 0, the service's
// subscription QoS (AnswerQoS). An answer is lost only when that write
// fails (the service's connection is failing).
//
// The cost of waiting: a service that stops reading altogether holds back
// every device answering it until the broker gives up on the service's
// connection (one and a half keep-alive periods without a packet from it,
// 45 s with the Transport's 30 s keep-alive), and the devices held back
// that long miss their own keep-alive pings. A device's own full queue
// still drops (its job times out and is reported so): a device must never
// hold back the service.
type serviceQueueHook struct {
	mochi.HookBase
	user    string
	log     *zap.Logger
	dropped atomic.Int64 // messages for other clients the broker dropped
	direct  atomic.Int64 // messages for the service written (or being written) directly
	lost    atomic.Int64 // of those, the ones whose write failed
}

func (h *serviceQueueHook) ID() string { return "fleetjobs-service-queue" }

func (h *serviceQueueHook) Provides(b byte) bool { return b == mochi.OnPublishDropped }

// OnPublishDropped writes pk to cl directly when cl is a service
// connection, and counts it.
func (h *serviceQueueHook) OnPublishDropped(cl *mochi.Client, pk packets.Packet) {
	if string(cl.Properties.Username) != h.user {
		h.dropped.Add(1)
		return
	}
	h.direct.Add(1)
	out := pk.Copy(false)
	out.FixedHeader.Qos = 0
	out.FixedHeader.Retain = false
	out.FixedHeader.Dup = false
	out.PacketID = 0
	if err := cl.WritePacket(out); err != nil {
		h.lost.Add(1)
		h.log.Debug("mqtt broker: answer for a service connection not written", zap.String("clientId", cl.ID), zap.Error(err))
	}
}

// keepAliveHook gives a connection that asks for no keep-alive, or one
// over max seconds, a keep-alive of max: the broker library then ends it
// after one and a half times that without a packet. It runs before the
// library sets the connection's first deadline.
type keepAliveHook struct {
	mochi.HookBase
	max uint16
}

func (h *keepAliveHook) ID() string { return "fleetjobs-keepalive" }

func (h *keepAliveHook) Provides(b byte) bool { return b == mochi.OnConnect }

func (h *keepAliveHook) OnConnect(cl *mochi.Client, _ packets.Packet) error {
	if ka := cl.State.Keepalive; ka == 0 || ka > h.max {
		cl.State.Keepalive = h.max
		cl.State.ServerKeepalive = true // told to MQTT v5 clients in the CONNACK
	}
	return nil
}

// keepAliveSeconds is d in whole seconds, at least 1 and at most MQTT's
// largest keep-alive.
func keepAliveSeconds(d time.Duration) uint16 {
	s := int64(d / time.Second)
	return uint16(min(max(s, 1), math.MaxUint16))
}

// authHook authenticates connections and enforces the topic ACL.
type authHook struct {
	mochi.HookBase
	cfg BrokerConfig
	log *zap.Logger
}

func (h *authHook) ID() string { return "fleetjobs-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// OnConnectAuthenticate admits the service with its credential and a device
// with its ID, its key, a client ID equal to its ID (a device choosing
// another client ID could take over another client's session and the
// messages queued in it) and no will message.
func (h *authHook) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if user == h.cfg.ServiceUsername {
		ok := subtle.ConstantTimeCompare(pk.Connect.Password, h.cfg.ServicePassword) == 1
		if !ok {
			h.log.Warn("mqtt broker: service credential refused", zap.String("remote", cl.Net.Remote))
		}
		return ok
	}
	if !validID(user) || cl.ID != user {
		h.log.Debug("mqtt broker: connection refused: username is not a device ID or client ID differs",
			zap.String("remote", cl.Net.Remote), zap.String("clientId", cl.ID))
		return false
	}
	if pk.Connect.WillFlag {
		// The broker library publishes a will without the topic checks
		// (OnACLCheck): a device could leave one on another device's result
		// topic and forge its answer by dropping its connection.
		h.log.Debug("mqtt broker: connection refused: a device may not leave a will message",
			zap.String("deviceId", user), zap.String("remote", cl.Net.Remote), zap.String("willTopic", pk.Connect.WillTopic))
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.VerifyTimeout)
	defer cancel()
	if !h.cfg.Keys.Verify(ctx, user, string(pk.Connect.Password)) {
		h.log.Debug("mqtt broker: device key refused", zap.String("deviceId", user), zap.String("remote", cl.Net.Remote))
		return false
	}
	return true
}

// OnACLCheck lets the service use everything under fleetjobs/ (and its
// shared subscription), and a device only its own job topic (read) and its
// own result topics (write). topic is a subscription filter or, for a
// message about to be delivered, its topic.
func (h *authHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == h.cfg.ServiceUsername {
		if rest, ok := strings.CutPrefix(topic, "$share/"); ok {
			_, topic, _ = strings.Cut(rest, "/")
		}
		return strings.HasPrefix(topic, TopicRoot)
	}
	if write {
		deviceID, _, ok := parseResultTopic(topic)
		return ok && deviceID == user
	}
	if topic == JobFilter(user) {
		return true
	}
	deviceID, _, ok := parseJobTopic(topic)
	return ok && deviceID == user
}
