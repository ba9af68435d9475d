package mqtt_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// backend is a broker the tests run against.
type backend struct {
	name     string
	url      string
	user     string
	password []byte
	keys     map[string]string // device ID -> key (embedded broker only)
	hashes   *sync.Map         // device ID -> key hash, which the embedded broker checks
	acl      bool              // the broker authenticates and enforces the ACL
	broker   *mqtt.Broker      // the embedded broker; nil for an external one
	attached bool              // MustTransport attaches to broker (Broker.Attach) instead of dialling it
}

// keyFor returns the key of a device the broker knows.
func (b backend) keyFor(deviceID string) string { return b.keys[deviceID] }

// staticKeys is a DeviceKeys over a fixed map of hashes, as a real store keeps them.
func staticKeys(hashes *sync.Map) mqtt.DeviceKeys {
	return mqtt.DeviceKeysFunc(func(_ context.Context, deviceID, key string) bool {
		h, ok := hashes.Load(deviceID)
		return ok && mqtt.KeyMatches(h.(string), key)
	})
}

// MustBroker starts an embedded broker on a free port whose devices are
// devices (each gets a fresh key) and stops it when the test ends.
func MustBroker(tb testing.TB, devices ...string) backend {
	tb.Helper()
	b := mustStartBroker(tb, devices...)
	tb.Cleanup(func() { _ = b.broker.Close() })
	return b
}

// mustStartBroker is MustBroker for a test that closes the broker itself.
func mustStartBroker(tb testing.TB, devices ...string) backend {
	tb.Helper()
	hashes := &sync.Map{}
	keys := map[string]string{}
	for _, d := range devices {
		k, err := mqtt.NewKey(rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		keys[d] = k
		hashes.Store(d, mqtt.HashKey(k))
	}
	b, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: "127.0.0.1:0", Keys: staticKeys(hashes), Logger: zaptest.NewLogger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	user, pass := b.ServiceCredential()
	return backend{name: "embedded", url: b.URL(), user: user, password: pass, keys: keys, hashes: hashes, acl: true, broker: b}
}

// externalBroker is the Mosquitto that .ci/testenv.sh starts; it fails the
// test under CI when it is missing, and skips it otherwise.
func externalBroker(tb testing.TB) backend {
	tb.Helper()
	u := os.Getenv("FLEETJOBS_TEST_MQTT_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("FLEETJOBS_TEST_MQTT_URL is unset under CI: run the tests through .ci/testenv.sh")
		}
		tb.Skip("FLEETJOBS_TEST_MQTT_URL is unset: run `bash .ci/testenv.sh go test ./dispatch/mqtt/` to test against Mosquitto")
	}
	return backend{name: "mosquitto", url: u}
}

// forEachBroker runs f against the embedded broker with the Transport
// attached to it (as serve runs it), against the embedded broker with the
// Transport connected over MQTT, and against the external one.
func forEachBroker(t *testing.T, devices []string, f func(t *testing.T, b backend)) {
	t.Run("attached", func(t *testing.T) {
		b := MustBroker(t, devices...)
		b.attached = true
		f(t, b)
	})
	forEachConnectedBroker(t, devices, f)
}

// forEachConnectedBroker runs f against the embedded broker and the
// external one, the Transport connected over MQTT.
func forEachConnectedBroker(t *testing.T, devices []string, f func(t *testing.T, b backend)) {
	t.Run("embedded", func(t *testing.T) { f(t, MustBroker(t, devices...)) })
	t.Run("mosquitto", func(t *testing.T) { f(t, externalBroker(t)) })
}

// unique returns a name no other test run uses, so runs can share a broker.
func unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%x", prefix, b)
}

// MustTransport dials a Transport on b in share group group (or attaches
// it to b's embedded broker) and runs it until the test ends.
func MustTransport(tb testing.TB, b backend, group string, answers chan []dispatch.Answer) *mqtt.Transport {
	tb.Helper()
	tr := openTransport(tb, b, mqtt.Config{ShareGroup: group, Logger: zaptest.NewLogger(tb)}, answers)
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = tr.Run(runCtx) })
	tb.Cleanup(func() {
		stop()
		wg.Wait()
		_ = tr.Close(context.Background())
	})
	mustSubscribed(tb, b, tr, group, answers)
	return tr
}

// openTransport attaches a Transport on cfg to b's embedded broker when
// b.attached, or dials b with b's credentials; the caller closes it.
func openTransport(tb testing.TB, b backend, cfg mqtt.Config, answers chan []dispatch.Answer) *mqtt.Transport {
	tb.Helper()
	if b.attached {
		return b.broker.Attach(cfg, answers)
	}
	cfg.URL, cfg.Username, cfg.Password = b.url, b.user, b.password
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := mqtt.Dial(ctx, cfg, answers)
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

// mustSubscribed waits until the transport's shared subscription is in
// place: Dial returns once connected, the subscription follows. It publishes
// probes as a device would until one comes back.
func mustSubscribed(tb testing.TB, b backend, _ *mqtt.Transport, group string, answers chan []dispatch.Answer) {
	tb.Helper()
	c := MustClient(tb, b, "", b.user, b.password)
	probe := unique("probe")
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		if _, err := c.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: mqtt.ResultTopic("probe", probe), Payload: []byte(`{"status":"succeeded"}`)}); err != nil {
			tb.Fatalf("publish probe: %v", err)
		}
		select {
		case batch := <-answers:
			for _, a := range batch {
				if a.JobID == probe {
					drainProbes(answers, probe)
					return
				}
			}
		case <-tick.C:
		}
	}
	tb.Fatalf("the transport in group %s never received a probe answer", group)
}

// drainProbes drops the probe answers already queued. No test has sent a
// job yet, so whatever is queued is a probe, or another run's answer (a
// shared external broker) that the test would ignore anyway.
func drainProbes(answers chan []dispatch.Answer, _ string) {
	for {
		select {
		case <-answers:
		default:
			return
		}
	}
}

// MustAgent connects a device agent as deviceID and closes it when the test ends.
func MustAgent(tb testing.TB, b backend, deviceID string, h mqtt.Handler) *mqtt.Agent {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := mqtt.ConnectAgent(ctx, mqtt.AgentConfig{URL: b.url, DeviceID: deviceID, Key: b.keyFor(deviceID), Handler: h, Logger: zaptest.NewLogger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

// dialClient connects a plain MQTT v5 client (no reconnection): the tests
// use it to act as a misbehaving device. clientID empty means username.
func dialClient(b backend, clientID, username string, password []byte) (*paho.Client, error) {
	u, err := url.Parse(b.url)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if clientID == "" {
		clientID = username
	}
	if clientID == "" || strings.Contains(clientID, "service") {
		clientID = unique("client")
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: clientID, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}
	if username != "" {
		cp.Username, cp.UsernameFlag = username, true
		cp.Password, cp.PasswordFlag = password, true
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// MustClient is dialClient that fails the test on error and disconnects at its end.
func MustClient(tb testing.TB, b backend, clientID, username string, password []byte) *paho.Client {
	tb.Helper()
	c, err := dialClient(b, clientID, username, password)
	if err != nil {
		tb.Fatalf("connect as %q: %v", username, err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// collect reads answers until want of job jobID arrived (others are
// ignored), or fails after a deadline.
func collect(tb testing.TB, answers chan []dispatch.Answer, jobID string, want int) []dispatch.Answer {
	tb.Helper()
	var got []dispatch.Answer
	timeout := time.After(20 * time.Second)
	for len(got) < want {
		select {
		case batch := <-answers:
			for _, a := range batch {
				if a.JobID == jobID {
					got = append(got, a)
				}
			}
		case <-timeout:
			tb.Fatalf("got %d of %d answers for job %s: %+v", len(got), want, jobID, got)
		}
	}
	return got
}

// mustCloseWithin closes b and fails the test if Close has not returned
// within d (a hung Close is the failure these tests look for).
func mustCloseWithin(tb testing.TB, b *mqtt.Broker, d time.Duration) {
	tb.Helper()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			tb.Fatal(err)
		}
	case <-time.After(d):
		tb.Fatalf("Broker.Close has not returned after %s", d)
	}
}
