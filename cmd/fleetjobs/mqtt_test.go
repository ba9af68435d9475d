package main_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// broker is where the end-to-end MQTT tests run serve's devices: the
// embedded broker (url "") or the Mosquitto of .ci/testenv.sh.
type broker struct {
	name string
	url  string // FLEETJOBS_MQTT_URL; "" for the embedded broker
}

// embedded reports whether serve runs its own broker (which checks keys).
func (b broker) embedded() bool { return b.url == "" }

// forEachBroker runs f against the embedded broker and Mosquitto. Without
// FLEETJOBS_TEST_MQTT_URL the Mosquitto variant is skipped (failed under
// CI).
func forEachBroker(t *testing.T, f func(t *testing.T, b broker)) {
	t.Run("embedded", func(t *testing.T) { t.Parallel(); f(t, broker{name: "embedded"}) })
	t.Run("mosquitto", func(t *testing.T) {
		u := MustMosquittoURL(t)
		t.Parallel()
		f(t, broker{name: "mosquitto", url: u})
	})
}

// MustMosquittoURL returns the Mosquitto that make test starts
// (FLEETJOBS_TEST_MQTT_URL); without it the test is skipped (failed under
// CI).
func MustMosquittoURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("FLEETJOBS_TEST_MQTT_URL")
	if u == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("FLEETJOBS_TEST_MQTT_URL is not set under CI: run the tests with bash .ci/testenv.sh (make test)")
		}
		tb.Skip("FLEETJOBS_TEST_MQTT_URL is not set: run with bash .ci/testenv.sh go test ./cmd/fleetjobs/ to test against Mosquitto")
	}
	return u
}

// MQTTServeConfig is ServeConfig with MQTT devices on b.
func MQTTServeConfig(tb testing.TB, b broker) main.Config {
	tb.Helper()
	url, root := MustRedisURL(tb)
	cfg := ServeConfig(tb, url, root)
	cfg.Devices = "mqtt"
	cfg.MQTTURL = b.url
	return cfg
}

// tag is a random suffix: device IDs are client IDs on a broker that
// parallel tests (and runs) share.
func tag() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x", b)
}

// device is one device of an MQTT test fleet and how its agent answers:
// "ok" succeeds, "fail" fails with "compressor fault", "ignore" never
// answers.
type fleetDevice struct{ id, kind string }

func devices(prefix, kind string, n int) []fleetDevice {
	out := make([]fleetDevice, n)
	for i := range out {
		out[i] = fleetDevice{id: fmt.Sprintf("%s-%03d", prefix, i), kind: kind}
	}
	return out
}

// MustMQTTFleet records the fridge template, the devices and the set
// "fleet" of all of them; it returns the API base, the consistency token of
// the last command and each device's key, from its registration's answer.
func MustMQTTFleet(tb testing.TB, base string, ds []fleetDevice) (api, token string, keys map[string]string) {
	tb.Helper()
	api = base + fjhttp.APIBase
	MustStatus(tb, Do(tb, http.MethodPut, api+"/device-templates/fridge", simTemplate, nil), http.StatusCreated)
	keys = make(map[string]string, len(ds))
	for _, d := range ds {
		a := MustStatus(tb, Do(tb, http.MethodPut, api+"/devices/"+d.id, map[string]any{"name": "Fridge " + d.id, "templateId": "fridge"}, nil), http.StatusCreated)
		keys[d.id] = MustDecode[struct {
			DeviceKey string `json:"deviceKey"`
		}](tb, a).DeviceKey
		if keys[d.id] == "" {
			tb.Fatalf("registering %s answered no device key: %s", d.id, a.Body)
		}
	}
	set := map[string]any{"name": "Fleet", "templateId": "fridge"}
	token = MustStatus(tb, Do(tb, http.MethodPut, api+"/device-sets/fleet", set, nil), http.StatusCreated).Token()
	return api, token, keys
}

// answerAs is the Handler of an agent of kind.
func answerAs(kind string) mqtt.Handler {
	return func(context.Context, dispatch.Delivery) error {
		switch kind {
		case "fail":
			return errors.New("compressor fault")
		case "ignore":
			return mqtt.ErrNoAnswer
		}
		return nil
	}
}

// MustAgents connects an agent for each device to brokerURL (with its key
// on the embedded broker; Mosquitto is anonymous) and closes them at the
// test's end.
func MustAgents(tb testing.TB, b broker, brokerURL string, keys map[string]string, ds []fleetDevice) {
	tb.Helper()
	for _, d := range ds {
		key := ""
		if b.embedded() {
			key = keys[d.id]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a, err := mqtt.ConnectAgent(ctx, mqtt.AgentConfig{URL: brokerURL, DeviceID: d.id, Key: key, Handler: answerAs(d.kind),
			SessionExpiry: time.Minute, MaxReconnectDelay: 250 * time.Millisecond, Logger: zaptest.NewLogger(tb, zaptest.Level(zap.InfoLevel))})
		cancel()
		if err != nil {
			tb.Fatalf("agent %s: %v", d.id, err)
		}
		tb.Cleanup(func() { _ = a.Close(context.Background()) })
	}
}

// TestMQTTRunsAJob runs a job over MQTT on agents that succeed, fail and
// never answer (timeout 2 s): each device ends with the right status, its
// result is recorded once, and the transport's counters show in /metrics.
func TestMQTTRunsAJob(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		m := MustServe(t, MQTTServeConfig(t, b), nil)
		p := "j" + tag()
		ds := append(devices(p+"-ok", "ok", 3), fleetDevice{p + "-bad", "fail"}, fleetDevice{p + "-gone", "ignore"})
		api, token, keys := MustMQTTFleet(t, m.HTTPURL(), ds)
		MustAgents(t, b, m.MQTTURL(), keys, ds)

		MustCreateSimJob(t, api, token, "j1", 2, 0)
		MustJobEndsAs(t, api, "j1", "failed", fjhttp.JobCounts{Total: 5, Succeeded: 3, Failed: 2})
		l := MustDecode[fjhttp.List[fjhttp.JobDevice]](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j1/devices", nil, nil), http.StatusOK))
		got := map[string]string{}
		for _, d := range l.Items {
			got[d.DeviceID] = d.Status + " " + d.Error
		}
		want := map[string]string{
			p + "-ok-000": "succeeded ", p + "-ok-001": "succeeded ", p + "-ok-002": "succeeded ",
			p + "-bad": "failed compressor fault", p + "-gone": "failed " + dispatch.TimedOut(2),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("device statuses (-want +got):\n%s", diff)
		}
		s := MustReadJobStream(t, MustEventStore(t, m), "j1")
		for _, d := range ds {
			if s.results[d.id] != 1 {
				t.Errorf("%s has %d results in the job stream, want 1", d.id, s.results[d.id])
			}
		}
		if n := MustMetric(t, m.HTTPURL(), "fleetjobs_mqtt_delivered_total"); n < 5 {
			t.Errorf("fleetjobs_mqtt_delivered_total = %v, want at least 5", n)
		}
		if n := MustMetric(t, m.HTTPURL(), "fleetjobs_mqtt_answers_total"); n < 4 {
			t.Errorf("fleetjobs_mqtt_answers_total = %v, want at least 4", n)
		}
		if b.embedded() {
			if n := MustMetric(t, m.HTTPURL(), "fleetjobs_mqtt_broker_dropped_total"); n != 0 {
				t.Errorf("fleetjobs_mqtt_broker_dropped_total = %v, want 0", n)
			}
		}
	})
}

// TestMQTTStopHaltsSending stops a job whose devices never answer once its
// first batch is on its way: no device is sent the job after the stop, and
// none is recorded as timed out after it.
func TestMQTTStopHaltsSending(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		m := MustServe(t, MQTTServeConfig(t, b), nil)
		ds := devices("s"+tag(), "ignore", 20)
		api, token, keys := MustMQTTFleet(t, m.HTTPURL(), ds)
		MustAgents(t, b, m.MQTTURL(), keys, ds)
		es := MustEventStore(t, m)

		mustStopMidJob(t, m, api, token, es, len(ds))
		j := MustDecode[fjhttp.Job](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j-stop", nil, WithToken(MustHead(t, es).String())), http.StatusOK))
		if j.Status != "stopped" || j.Counts.Pending != len(ds) {
			t.Errorf("job: status %s, counts %+v; want stopped with every device pending (no timeout recorded after the stop)", j.Status, j.Counts)
		}
	})
}

// killTimeout is TestMQTTKillMidJob's job timeout, in seconds: the devices
// that never answer take that long to fail, and the others must be back
// on the broker well within it after the restart (they retry every 250 ms;
// the dispatcher resends after 1 s, then 2 s).
const killTimeout = 6

// TestMQTTKillMidJob kills serve (the real binary, SIGKILL) while a job
// runs and starts it again on the same data directory, Redis and broker
// address: the job finishes with every device's result exactly once.
func TestMQTTKillMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary")
	}
	bin := MustBuild(t)
	forEachBroker(t, func(t *testing.T, b broker) {
		redisURL, root := MustRedisURL(t)
		data := t.TempDir()
		mqttAddr := freeAddr(t)
		// The restart listens where the killed service did, as a service
		// restarted with its configuration does: it holds the dispatch
		// lease under the same ID (leaseHolder) and dispatches at once.
		httpAddr := freeAddr(t)
		env := func() (vars []string, base, esAddr string) {
			esAddr = freeAddr(t)
			return []string{
				"FLEETJOBS_DATA_DIR=" + data, "FLEETJOBS_HTTP_ADDR=" + httpAddr, "FLEETJOBS_EVENTSTORE_ADDR=" + esAddr,
				"FLEETJOBS_REDIS_URL=" + redisURL, "FLEETJOBS_DEVICES=mqtt", "FLEETJOBS_MQTT_ADDR=" + mqttAddr,
				"FLEETJOBS_MQTT_URL=" + b.url,
			}, "http://" + httpAddr, esAddr
		}
		brokerURL := b.url
		if b.embedded() {
			brokerURL = "mqtt://" + mqttAddr
		}
		e, base, esAddr := env()
		first := MustStart(t, bin, e, "serve", "--redis-key-root", root)
		MustAnswer(t, first, base+"/readyz", http.StatusOK)
		p := "k" + tag()
		ds := append(append(devices(p+"-ok", "ok", 30), devices(p+"-bad", "fail", 3)...), devices(p+"-off", "ignore", 3)...)
		api, token, keys := MustMQTTFleet(t, base, ds)
		MustAgents(t, b, brokerURL, keys, ds)
		es := MustDial(t, esAddr)

		// A timeout that leaves the restarted service time to resend the
		// job to devices that reconnect late.
		MustCreateSimJob(t, api, token, "j-kill", killTimeout, 3)
		var before jobStream
		MustPoll(t, "some results of j-kill recorded", func() bool {
			before = MustReadJobStream(t, es, "j-kill")
			return len(before.results) > 0
		})
		// The devices that never answer time out killTimeout after their
		// dispatch: the job is still running now.
		if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-first.done
		_ = es.Close()
		if len(before.results) == len(ds) {
			t.Fatal("the job ended before the kill: the test proves nothing")
		}

		e, base, esAddr = env()
		second := MustStart(t, bin, e, "serve", "--redis-key-root", root)
		MustAnswer(t, second, base+"/readyz", http.StatusOK)
		j := MustJobEnds(t, base+fjhttp.APIBase, "j-kill")
		es = MustDial(t, esAddr)
		s := MustReadJobStream(t, es, "j-kill")
		want := make(map[string]int, len(ds))
		for _, d := range ds {
			want[d.id] = 1
		}
		if diff := cmp.Diff(want, s.results); diff != "" {
			t.Errorf("results per device in the job stream (-want +got):\n%s", diff)
		}
		l := MustDecode[fjhttp.List[fjhttp.JobDevice]](t, MustStatus(t, Do(t, http.MethodGet, base+fjhttp.APIBase+"/jobs/j-kill/devices?limit=100", nil, nil), http.StatusOK))
		status := map[string]string{}
		for _, d := range l.Items {
			status[d.DeviceID] = d.Status + " " + d.Error
		}
		// Every device that answers has its own answer recorded, on the
		// embedded broker too, whose sessions end with the process: the
		// restarted service resends the job until the device is back.
		timedOut := "failed " + dispatch.TimedOut(killTimeout)
		for _, d := range ds {
			st := status[d.id]
			switch {
			case d.kind == "ok" && st == "succeeded ", d.kind == "fail" && st == "failed compressor fault", d.kind == "ignore" && st == timedOut:
			default:
				t.Errorf("device %s (%s) ended %q", d.id, d.kind, st)
			}
		}
		if j.Status != "failed" || j.Counts.Total != len(ds) || j.Counts.Pending != 0 {
			t.Errorf("job: status %s, counts %+v; want failed, every device with a result", j.Status, j.Counts)
		}
		ends := 0
		for _, typ := range s.types {
			if typ == eventstore.JobFailed || typ == eventstore.JobCompleted {
				ends++
			}
		}
		if ends != 1 {
			t.Errorf("%d final events in the job stream, want 1: %v", ends, s.types)
		}
		second.MustStop(t)
	})
}

// MustDial connects to the embedded event store of a serve process at addr.
func MustDial(tb testing.TB, addr string) *eventstore.Client {
	tb.Helper()
	c, err := eventstore.Dial("esdb://"+addr+"?tls=false", eventstore.WithCodec(eventstore.NewCatalogCodec()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// dialDevice connects a plain MQTT v5 client (no reconnection) as device
// id with key to the broker at brokerURL: a device that misbehaves.
func dialDevice(brokerURL, id, key string) (*paho.Client, error) {
	addr := strings.TrimPrefix(brokerURL, "mqtt://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if key != "" {
		cp.Username, cp.UsernameFlag = id, true
		cp.Password, cp.PasswordFlag = []byte(key), true
	}
	if _, err := c.Connect(ctx, cp); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// MustDevice is dialDevice that fails the test on error and disconnects at
// its end.
func MustDevice(tb testing.TB, brokerURL, id, key string) *paho.Client {
	tb.Helper()
	c, err := dialDevice(brokerURL, id, key)
	if err != nil {
		tb.Fatalf("connect as %s: %v", id, err)
	}
	tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// MustRefused fails the test if device id connects with key.
func MustRefused(tb testing.TB, brokerURL, id, key, why string) {
	tb.Helper()
	c, err := dialDevice(brokerURL, id, key)
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
		tb.Errorf("%s: %s connected, want a refusal", why, id)
	}
}

// TestEmbeddedBrokerDevicePermissions: on the embedded broker a device
// connects with the key its registration answered (shown once, its hash
// in no query answer), reads only its own jobs and answers only for
// itself; a wrong key, a deleted device and a replaced key are refused,
// and replacing a key ends the connection made with the old one.
func TestEmbeddedBrokerDevicePermissions(t *testing.T) {
	t.Parallel()
	m := MustServe(t, MQTTServeConfig(t, broker{name: "embedded"}), nil)
	p := "p" + tag()
	a, bID := p+"-a", p+"-b"
	api, token, keys := MustMQTTFleet(t, m.HTTPURL(), []fleetDevice{{a, "ok"}, {bID, "ok"}})
	url := m.MQTTURL()

	// The key is shown once; no query shows it or its hash.
	again := MustStatus(t, Do(t, http.MethodPut, api+"/devices/"+a, map[string]any{"name": "Fridge " + a, "templateId": "fridge"}, nil), http.StatusOK)
	for _, ans := range []Answer{
		again,
		MustStatus(t, Do(t, http.MethodGet, api+"/devices/"+a, nil, WithToken(token)), http.StatusOK),
		MustStatus(t, Do(t, http.MethodGet, api+"/devices", nil, WithToken(token)), http.StatusOK),
		MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/fleet/devices", nil, WithToken(token)), http.StatusOK),
	} {
		body := string(ans.Body)
		if strings.Contains(body, "deviceKey") || strings.Contains(body, keys[a]) || strings.Contains(body, "sha256:") || strings.Contains(body, "keyHash") {
			t.Errorf("an answer shows a key or its hash: %s", body)
		}
	}

	MustAgents(t, broker{name: "embedded"}, url, keys, []fleetDevice{{bID, "ok"}})
	dev := MustDevice(t, url, a, keys[a])
	var mu sync.Mutex
	var received []string
	dev.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		mu.Lock()
		received = append(received, pr.Packet.Topic)
		mu.Unlock()
		return true, nil
	})
	for _, filter := range []string{mqtt.JobFilter(bID), mqtt.JobTopic(bID, "j-perm"), "fleetjobs/devices/+/jobs/+", "fleetjobs/#", "#", mqtt.SharedResultFilter("fleetjobs")} {
		sa, err := dev.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if err == nil && (sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] < 0x80) {
			t.Errorf("%s subscribed to %s: %+v", a, filter, sa)
		}
	}
	if _, err := dev.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: mqtt.JobFilter(a), QoS: 1}}}); err != nil {
		t.Fatalf("%s subscribing to its own jobs: %v", a, err)
	}
	if _, err := dev.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: mqtt.ResultTopic(bID, "j-perm"), Payload: []byte(`{"status":"failed","error":"forged"}`)}); err == nil {
		t.Errorf("%s answered for %s: want a refusal", a, bID)
	}

	// A job on both: b's agent answers; a answers its own job by hand.
	MustCreateSimJob(t, api, token, "j-perm", 5, 0)
	MustPoll(t, a+" received its job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(received) > 0
	})
	if _, err := dev.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: mqtt.ResultTopic(a, "j-perm"), Payload: []byte(`{"status":"failed","error":"door open"}`)}); err != nil {
		t.Fatalf("%s answering for itself: %v", a, err)
	}
	j := MustJobEnds(t, api, "j-perm")
	l := MustDecode[fjhttp.List[fjhttp.JobDevice]](t, MustStatus(t, Do(t, http.MethodGet, api+"/jobs/j-perm/devices", nil, nil), http.StatusOK))
	got := map[string]string{}
	for _, d := range l.Items {
		got[d.DeviceID] = d.Status + " " + d.Error
	}
	if diff := cmp.Diff(map[string]string{a: "failed door open", bID: "succeeded "}, got); diff != "" || j.Counts.Total != 2 {
		t.Errorf("device statuses (-want +got):\n%s", diff)
	}
	mu.Lock()
	for _, topic := range received {
		if topic != mqtt.JobTopic(a, "j-perm") {
			t.Errorf("%s received %s", a, topic)
		}
	}
	mu.Unlock()

	MustRefused(t, url, a, "not-the-key", "a wrong key")
	MustRefused(t, url, a, keys[bID], "another device's key")
	MustRefused(t, url, "nobody"+p, keys[a], "an unknown device")

	// A new key: the old connection ends, the old key is refused, the new one works.
	issued := MustDecode[fjhttp.DeviceKey](t, MustStatus(t, Do(t, http.MethodPost, api+"/devices/"+a+":issueKey", nil, nil), http.StatusOK))
	if issued.DeviceID != a || issued.DeviceKey == "" || issued.DeviceKey == keys[a] {
		t.Fatalf("issued %+v, want a new key for %s", issued, a)
	}
	select {
	case <-dev.Done():
	case <-time.After(10 * time.Second):
		t.Error("the connection made with the replaced key is still up")
	}
	MustRefused(t, url, a, keys[a], "a replaced key")
	MustDevice(t, url, a, issued.DeviceKey)
	// A retry of the same request cannot show that key again.
	h := map[string]string{"Idempotency-Key": "rotate-" + p}
	MustStatus(t, Do(t, http.MethodPost, api+"/devices/"+a+":issueKey", nil, h), http.StatusOK)
	MustProblem(t, Do(t, http.MethodPost, api+"/devices/"+a+":issueKey", nil, h), http.StatusConflict, "")

	// A deleted device is refused.
	MustStatus(t, Do(t, http.MethodDelete, api+"/devices/"+bID, nil, nil), http.StatusOK)
	MustRefused(t, url, bID, keys[bID], "a deleted device")
	MustProblem(t, Do(t, http.MethodPost, api+"/devices/"+bID+":issueKey", nil, nil), http.StatusConflict, "")
}

// TestMalformedAnswersAreCountedAndDropped: answers that are not JSON
// results, carry an unknown status or are too large are counted in
// /metrics by reason and dropped; the service stays ready.
func TestMalformedAnswersAreCountedAndDropped(t *testing.T) {
	forEachBroker(t, func(t *testing.T, b broker) {
		m := MustServe(t, MQTTServeConfig(t, b), nil)
		id := "m" + tag()
		_, _, keys := MustMQTTFleet(t, m.HTTPURL(), []fleetDevice{{id, "ok"}})
		key := ""
		if b.embedded() {
			key = keys[id]
		}
		dev := MustDevice(t, m.MQTTURL(), id, key)
		for _, payload := range []string{"not json", `{"status":"done"}`, `{"status":"failed","error":"` + strings.Repeat("e", mqtt.DefaultMaxAnswerBytes) + `"}`} {
			if _, err := dev.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: mqtt.ResultTopic(id, "j-bad"), Payload: []byte(payload)}); err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
		for _, reason := range []string{"malformed", "bad_status", "oversized"} {
			name := `fleetjobs_mqtt_answers_dropped_total{reason="` + reason + `"}`
			MustPoll(t, name+" counted", func() bool { return MustMetric(t, m.HTTPURL(), name) >= 1 })
		}
		MustStatus(t, Do(t, http.MethodGet, m.HTTPURL()+"/readyz", nil, nil), http.StatusOK)
	})
}

// TestExternalBrokerCredentialsAndReadiness: serve connects to the broker
// of FLEETJOBS_MQTT_URL with the credentials in the URL (here a broker the
// test runs, which checks them); /readyz says when that connection is down.
func TestExternalBrokerCredentialsAndReadiness(t *testing.T) {
	t.Parallel()
	ext, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: "127.0.0.1:0", ServiceUsername: "svc", ServicePassword: []byte("s3cret"),
		Keys: mqtt.DeviceKeysFunc(func(context.Context, string, string) bool { return false })})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	// Refused credentials keep serve from starting.
	cfg := MQTTServeConfig(t, broker{name: "external", url: "mqtt://svc:wrong@" + ext.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := main.NewMain(cfg, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))).Run(ctx); err == nil {
		t.Error("serve started with a refused MQTT credential")
	}

	cfg = MQTTServeConfig(t, broker{name: "external", url: "mqtt://svc:s3cret@" + ext.Addr()})
	m := MustServe(t, cfg, nil)
	if m.MQTTURL() != ext.URL() {
		t.Errorf("MQTTURL() = %q, want %q, without the credentials", m.MQTTURL(), ext.URL())
	}
	if err := ext.Close(); err != nil {
		t.Fatal(err)
	}
	MustPoll(t, "/readyz says the MQTT connection is down", func() bool {
		a := Do(t, http.MethodGet, m.HTTPURL()+"/readyz", nil, nil)
		return a.Status == http.StatusServiceUnavailable && strings.Contains(string(a.Body), "mqtt")
	})
}
