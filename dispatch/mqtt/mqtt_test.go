package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// recorder is a Handler that keeps what it was given and answers by device.
type recorder struct {
	mu    sync.Mutex
	got   []dispatch.Delivery
	calls chan string
	fail  map[string]string // device -> error message
	mute  map[string]bool   // device never answers
}

func newRecorder() *recorder {
	return &recorder{calls: make(chan string, 1024), fail: map[string]string{}, mute: map[string]bool{}}
}

func (r *recorder) handle(_ context.Context, d dispatch.Delivery) error {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
	r.calls <- d.DeviceID
	if r.mute[d.DeviceID] {
		return mqtt.ErrNoAnswer
	}
	if msg := r.fail[d.DeviceID]; msg != "" {
		return errors.New(msg)
	}
	return nil
}

func (r *recorder) deliveries() []dispatch.Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]dispatch.Delivery(nil), r.got...)
}

func sortAnswers(as []dispatch.Answer) {
	sort.Slice(as, func(a, b int) bool { return as[a].DeviceID < as[b].DeviceID })
}

func TestDeliveriesReachAgentsThatAnswer(t *testing.T) {
	devices := []string{"vm-ok", "vm-fails", "vm-silent"}
	forEachBroker(t, devices, func(t *testing.T, b backend) {
		answers := make(chan []dispatch.Answer, 64)
		tr := MustTransport(t, b, unique("deliver"), answers)
		rec := newRecorder()
		rec.fail["vm-fails"] = "compressor fault"
		rec.mute["vm-silent"] = true
		for _, d := range devices {
			MustAgent(t, b, d, rec.handle)
		}
		job := unique("job")
		ops := []dispatch.Operation{{Name: "fanSpeed", Value: 1200.0}, {Name: "mode", Value: map[string]any{"eco": true}}}
		deadline := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
		var ds []dispatch.Delivery
		for _, d := range devices {
			ds = append(ds, dispatch.Delivery{JobID: job, DeviceID: d, JobType: "setting", Operations: ops, Deadline: deadline})
		}
		if err := tr.Send(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
		got := collect(t, answers, job, 2)
		// The silent device was given the job: wait for its handler, then
		// send a later job to a device that answers; the silent device's
		// answer, had it sent one, would have come before.
		for range devices {
			<-rec.calls
		}
		later := unique("later")
		if err := tr.Send(context.Background(), []dispatch.Delivery{{JobID: later, DeviceID: "vm-ok", JobType: "command", Deadline: deadline}}); err != nil {
			t.Fatal(err)
		}
		<-rec.calls
		laterAnswer := collectAll(t, answers, map[string]int{job: 0, later: 1}, &got)
		sortAnswers(got)
		want := []dispatch.Answer{
			{JobID: job, DeviceID: "vm-fails", Error: "compressor fault"},
			{JobID: job, DeviceID: "vm-ok", Succeeded: true},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]dispatch.Answer{{JobID: later, DeviceID: "vm-ok", Succeeded: true}}, laterAnswer); diff != "" {
			t.Errorf("later answer (-want +got):\n%s", diff)
		}
		delivered := rec.deliveries()
		sort.Slice(delivered, func(a, b int) bool {
			return delivered[a].JobID+delivered[a].DeviceID < delivered[b].JobID+delivered[b].DeviceID
		})
		wantDelivered := append(append([]dispatch.Delivery(nil), ds...), dispatch.Delivery{JobID: later, DeviceID: "vm-ok", JobType: "command", Deadline: deadline})
		sort.Slice(wantDelivered, func(a, b int) bool {
			return wantDelivered[a].JobID+wantDelivered[a].DeviceID < wantDelivered[b].JobID+wantDelivered[b].DeviceID
		})
		if diff := cmp.Diff(wantDelivered, delivered); diff != "" {
			t.Errorf("what the devices received (-want +got):\n%s", diff)
		}
		if s := tr.Stats(); s.Published != 4 || s.PublishFailed != 0 {
			t.Errorf("stats %+v: want 4 published, none failed", s)
		}
	})
}

// collectAll reads answers until each job of want has that many answers
// (beyond those already in got for the first job), appending answers of
// other jobs in want to got; it returns the answers of the jobs with a
// positive count.
func collectAll(tb testing.TB, answers chan []dispatch.Answer, want map[string]int, got *[]dispatch.Answer) []dispatch.Answer {
	tb.Helper()
	var out []dispatch.Answer
	need := 0
	for _, n := range want {
		need += n
	}
	timeout := time.After(20 * time.Second)
	for len(out) < need {
		select {
		case batch := <-answers:
			for _, a := range batch {
				n, ok := want[a.JobID]
				switch {
				case !ok:
				case n > 0:
					out = append(out, a)
				default:
					*got = append(*got, a)
				}
			}
		case <-timeout:
			tb.Fatalf("got %d of %d answers", len(out), need)
		}
	}
	return out
}

func TestDuplicateDeliveryIsAppliedOnceAndAnsweredAgain(t *testing.T) {
	forEachBroker(t, []string{"vm-dup"}, func(t *testing.T, b backend) {
		answers := make(chan []dispatch.Answer, 64)
		tr := MustTransport(t, b, unique("dup"), answers)
		rec := newRecorder()
		rec.fail["vm-dup"] = "door open"
		agent := MustAgent(t, b, "vm-dup", rec.handle)
		job := unique("job")
		d := dispatch.Delivery{JobID: job, DeviceID: "vm-dup", JobType: "setting", Deadline: time.Now().Add(time.Minute)}
		for range 2 {
			if err := tr.Send(context.Background(), []dispatch.Delivery{d}); err != nil {
				t.Fatal(err)
			}
		}
		got := collect(t, answers, job, 2)
		want := []dispatch.Answer{
			{JobID: job, DeviceID: "vm-dup", Error: "door open"},
			{JobID: job, DeviceID: "vm-dup", Error: "door open"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(mqtt.AgentStats{Applied: 1, Duplicates: 1}, agent.Stats()); diff != "" {
			t.Errorf("agent stats (-want +got):\n%s", diff)
		}
	})
}

func TestDeviceCannotReadOrAnswerForAnotherDevice(t *testing.T) {
	for _, attached := range []bool{true, false} {
		t.Run(map[bool]string{true: "attached", false: "connected"}[attached], func(t *testing.T) {
			b := MustBroker(t, "vm-a", "vm-b")
			b.attached = attached
			deviceCannotReadOrAnswerForAnother(t, b)
		})
	}
}

func deviceCannotReadOrAnswerForAnother(t *testing.T, b backend) {
	answers := make(chan []dispatch.Answer, 64)
	tr := MustTransport(t, b, unique("acl"), answers)
	rec := newRecorder()
	MustAgent(t, b, "vm-b", rec.handle)

	a := MustClient(t, b, "", "vm-a", []byte(b.keyFor("vm-a")))
	var snooped []string
	var mu sync.Mutex
	a.AddOnPublishReceived(func(pr paho.PublishReceived) (bool, error) {
		mu.Lock()
		snooped = append(snooped, pr.Packet.Topic)
		mu.Unlock()
		return true, nil
	})
	for _, filter := range []string{
		mqtt.JobFilter("vm-b"),
		mqtt.JobTopic("vm-b", "j1"),
		"fleetjobs/devices/+/jobs/+",
		"fleetjobs/#",
		"#",
		mqtt.SharedResultFilter("fleetjobs"),
	} {
		sa, err := a.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if err == nil && (sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] < 0x80) {
			t.Errorf("vm-a subscribed to %s: %+v", filter, sa)
		}
	}
	// Its own topic is allowed.
	if _, err := a.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: mqtt.JobFilter("vm-a"), QoS: 1}}}); err != nil {
		t.Errorf("vm-a subscribing to its own jobs: %v", err)
	}
	for _, topic := range []string{mqtt.ResultTopic("vm-b", "j1"), mqtt.JobTopic("vm-b", "j1"), "fleetjobs/other"} {
		if _, err := a.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: topic, Payload: []byte(`{"status":"succeeded"}`)}); err == nil {
			t.Errorf("vm-a published on %s: want a refusal", topic)
		}
	}

	job := unique("job")
	if err := tr.Send(context.Background(), []dispatch.Delivery{{JobID: job, DeviceID: "vm-b", JobType: "setting"}}); err != nil {
		t.Fatal(err)
	}
	got := collect(t, answers, job, 1)
	if diff := cmp.Diff([]dispatch.Answer{{JobID: job, DeviceID: "vm-b", Succeeded: true}}, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	// vm-a's own answer goes through, after vm-b's: anything it could read
	// of vm-b's would have reached it by now.
	if _, err := a.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: mqtt.ResultTopic("vm-a", job), Payload: []byte(`{"status":"succeeded"}`)}); err != nil {
		t.Fatalf("vm-a answering for itself: %v", err)
	}
	got = collect(t, answers, job, 1)
	if diff := cmp.Diff([]dispatch.Answer{{JobID: job, DeviceID: "vm-a", Succeeded: true}}, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(snooped) != 0 {
		t.Errorf("vm-a received other devices' messages: %v", snooped)
	}
}

// TestDeviceCannotLeaveAWill: a device's connection with a will message is
// refused, whatever its topic. The broker library publishes a will without
// the topic checks, so a device leaving one on another device's result
// topic, then dropping its connection, would forge that device's answer.
func TestDeviceCannotLeaveAWill(t *testing.T) {
	b := MustBroker(t, "vm-a", "vm-b")
	for _, topic := range []string{mqtt.ResultTopic("vm-b", "forged"), mqtt.ResultTopic("vm-a", "j1"), "fleetjobs/devices/vm-a/status"} {
		conn, err := net.Dial("tcp", b.broker.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{ClientID: "vm-a", Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: "vm-a", CleanStart: true, KeepAlive: 30,
			UsernameFlag: true, Username: "vm-a", PasswordFlag: true, Password: []byte(b.keyFor("vm-a")),
			WillMessage: &paho.WillMessage{Topic: topic, Payload: []byte(`{"status":"succeeded"}`), QoS: 1}})
		cancel()
		if err == nil {
			_ = c.Disconnect(&paho.Disconnect{})
			t.Errorf("vm-a connected with a will on %s (CONNACK %+v)", topic, ca)
		}
		_ = conn.Close()
	}
	// The same device without a will is admitted.
	MustAgent(t, b, "vm-a", newRecorder().handle)
}

func TestWrongCredentialsAreRefused(t *testing.T) {
	b := MustBroker(t, "vm-a", "vm-b")
	for _, tc := range []struct {
		name, clientID, user string
		password             []byte
	}{
		{"wrong device key", "", "vm-a", []byte("not-the-key")},
		{"another device's key", "", "vm-a", []byte(b.keyFor("vm-b"))},
		{"unknown device", "", "vm-z", []byte(b.keyFor("vm-a"))},
		{"no password", "", "vm-a", nil},
		{"client ID not the device ID", "vm-b", "vm-a", []byte(b.keyFor("vm-a"))},
		{"username not a device ID", "x/y", "x/y", []byte("k")},
		{"wrong service password", "svc", b.user, []byte("guess")},
		{"anonymous", "anon", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dialClient(b, tc.clientID, tc.user, tc.password)
			if err == nil {
				_ = c.Disconnect(&paho.Disconnect{})
				t.Fatal("connected: want a refusal")
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := mqtt.ConnectAgent(ctx, mqtt.AgentConfig{URL: b.url, DeviceID: "vm-a", Key: "wrong", Handler: newRecorder().handle}); err == nil {
		t.Error("an agent with a wrong key connected")
	}
}

// TestServiceWithWrongPasswordIsRefusedAtOnce: Dial gives up on refused
// credentials with ErrRefused instead of retrying until its context ends.
func TestServiceWithWrongPasswordIsRefusedAtOnce(t *testing.T) {
	b := MustBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr, err := mqtt.Dial(ctx, mqtt.Config{URL: b.url, Username: b.user, Password: []byte("guess")}, make(chan []dispatch.Answer, 1))
	if err == nil {
		_ = tr.Close(context.Background())
		t.Fatal("connected with a wrong password")
	}
	if !errors.Is(err, mqtt.ErrRefused) || ctx.Err() != nil {
		t.Fatalf("Dial with a wrong password: %v (context: %v), want ErrRefused before the context ends", err, ctx.Err())
	}
}

func TestBadAnswersAreCountedAndDropped(t *testing.T) {
	forEachBroker(t, nil, func(t *testing.T, b backend) {
		answers := make(chan []dispatch.Answer, 64)
		tr := MustTransport(t, b, unique("bad"), answers)
		before := tr.Stats()
		c := MustClient(t, b, "", b.user, b.password)
		job := unique("job")
		for _, m := range []struct{ topic, payload string }{
			{mqtt.ResultTopic("vm-1", job), strings.Repeat("x", mqtt.DefaultMaxAnswerBytes+1)},
			{mqtt.ResultTopic("vm-1", job), `{"status":"succeeded","error":"` + strings.Repeat("e", 5000) + `"}`},
			{mqtt.ResultTopic("vm-2", job), `not json`},
			{mqtt.ResultTopic("vm-2", job), `["succeeded"]`},
			{mqtt.ResultTopic("vm-2", job), `{"status":`},
			{mqtt.ResultTopic("vm-3", job), `{"status":"done"}`},
			{mqtt.ResultTopic("vm-3", job), `{}`},
			{mqtt.ResultTopic("vm-3", job), `null`},
			{"fleetjobs/devices/vm 4/jobs/" + job + "/result", `{"status":"succeeded"}`},
			{"fleetjobs/devices/" + strings.Repeat("d", 129) + "/jobs/" + job + "/result", `{"status":"succeeded"}`},
			{mqtt.ResultTopic("vm-5", ""), `{"status":"succeeded"}`},
			// then two good ones: a failure without a message gets one.
			{mqtt.ResultTopic("vm-6", job), `{"status":"failed"}`},
			{mqtt.ResultTopic("vm-7", job), `{"status":"succeeded","extra":1}`},
		} {
			if _, err := c.Publish(context.Background(), &paho.Publish{QoS: 1, Topic: m.topic, Payload: []byte(m.payload)}); err != nil {
				t.Fatalf("publish on %s: %v", m.topic, err)
			}
		}
		got := collect(t, answers, job, 2)
		sortAnswers(got)
		want := []dispatch.Answer{
			{JobID: job, DeviceID: "vm-6", Error: "the device reported a failure without a message"},
			{JobID: job, DeviceID: "vm-7", Succeeded: true},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("answers (-want +got):\n%s", diff)
		}
		after := tr.Stats()
		dropped := mqtt.Stats{
			Oversized: after.Oversized - before.Oversized,
			BadTopic:  after.BadTopic - before.BadTopic,
			Malformed: after.Malformed - before.Malformed,
			BadStatus: after.BadStatus - before.BadStatus,
		}
		wantDropped := mqtt.Stats{Oversized: 2, BadTopic: 3, Malformed: 3, BadStatus: 3}
		if b.acl {
			if diff := cmp.Diff(wantDropped, dropped); diff != "" {
				t.Errorf("dropped answers (-want +got):\n%s", diff)
			}
		} else if dropped.Dropped() < wantDropped.Dropped() {
			// A shared external broker may carry other runs' bad answers too.
			t.Errorf("dropped %+v: want at least %+v", dropped, wantDropped)
		}
	})
}

func TestTransportsSharingTheSubscriptionSplitTheAnswers(t *testing.T) {
	const devices, jobs = 40, 5
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%03d", i)
	}
	// Attached Transports do not share: each gets every answer (Broker.Attach).
	forEachConnectedBroker(t, ids, func(t *testing.T, b backend) {
		group := unique("share")
		a1 := make(chan []dispatch.Answer, 1024)
		a2 := make(chan []dispatch.Answer, 1024)
		tr1 := MustTransport(t, b, group, a1)
		MustTransport(t, b, group, a2)
		rec := newRecorder()
		for _, id := range ids {
			MustAgent(t, b, id, rec.handle)
		}
		prefix := unique("job")
		want := map[string]bool{}
		var ds []dispatch.Delivery
		for j := range jobs {
			for _, id := range ids {
				job := fmt.Sprintf("%s-%d", prefix, j)
				ds = append(ds, dispatch.Delivery{JobID: job, DeviceID: id, JobType: "setting"})
				want[job+"/"+id] = true
			}
		}
		if err := tr1.Send(context.Background(), ds); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		per := [2]int{}
		timeout := time.After(30 * time.Second)
		for len(got) < len(want) {
			var batch []dispatch.Answer
			var from int
			select {
			case batch = <-a1:
			case batch = <-a2:
				from = 1
			case <-timeout:
				t.Fatalf("got %d of %d answers", len(got), len(want))
			}
			for _, a := range batch {
				if strings.HasPrefix(a.JobID, prefix) {
					got[a.JobID+"/"+a.DeviceID]++
					per[from]++
				}
			}
		}
		for k, n := range got {
			if !want[k] || n != 1 {
				t.Errorf("answer %s received %d times", k, n)
			}
		}
		if per[0] == 0 || per[1] == 0 {
			t.Errorf("answers per transport %v: want each to get a share", per)
		}
	})
}
