package mqtt_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// TestReplacedKeyEndsTheConnection: once a device's key is replaced, the
// broker refuses the old key at the next connection, and Disconnect ends
// the connection the device had; the new key connects. An agent with a
// refused key gives up at once with ErrRefused.
func TestReplacedKeyEndsTheConnection(t *testing.T) {
	hashes := &sync.Map{}
	oldKey, _ := mqtt.NewKey(rand.Reader)
	hashes.Store("vm-1", mqtt.HashKey(oldKey))
	br, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: "127.0.0.1:0", Keys: staticKeys(hashes), Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = br.Close() })
	b := backend{name: "embedded", url: br.URL(), acl: true}

	c, err := dialClient(b, "", "vm-1", []byte(oldKey))
	if err != nil {
		t.Fatalf("connect with the current key: %v", err)
	}
	if br.Disconnect("vm-2") {
		t.Error("Disconnect of a device that is not connected reported one")
	}
	newKey, _ := mqtt.NewKey(rand.Reader)
	hashes.Store("vm-1", mqtt.HashKey(newKey))
	if !br.Disconnect("vm-1") {
		t.Fatal("Disconnect did not find vm-1's connection")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("vm-1's connection is still up after Disconnect")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err = mqtt.ConnectAgent(ctx, mqtt.AgentConfig{URL: b.url, DeviceID: "vm-1", Key: oldKey, Handler: newRecorder().handle})
	if !errors.Is(err, mqtt.ErrRefused) {
		t.Fatalf("agent with the old key: %v, want ErrRefused", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the refusal took the whole deadline (%v): want it at the first CONNACK", time.Since(start))
	}
	b.keys = map[string]string{"vm-1": newKey}
	MustAgent(t, b, "vm-1", newRecorder().handle)
}

// TestAgentEndsWhenItsKeyIsRefusedOnReconnection: an agent connected with
// a key that is then replaced is disconnected by the broker, which refuses
// the old key when the agent reconnects: the agent ends (Done, Err wrapping
// ErrRefused) instead of trying it forever.
func TestAgentEndsWhenItsKeyIsRefusedOnReconnection(t *testing.T) {
	b := MustBroker(t, "vm-1")
	a := MustAgent(t, b, "vm-1", newRecorder().handle)
	if err := a.Err(); err != nil {
		t.Fatalf("Err of a connected agent: %v", err)
	}
	newKey, _ := mqtt.NewKey(rand.Reader)
	b.hashes.Store("vm-1", mqtt.HashKey(newKey))
	if !b.broker.Disconnect("vm-1") {
		t.Fatal("Disconnect did not find vm-1's connection")
	}
	select {
	case <-a.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the agent still runs 30 s after its key was replaced and it was disconnected")
	}
	if err := a.Err(); !errors.Is(err, mqtt.ErrRefused) {
		t.Errorf("Err: %v, want ErrRefused", err)
	}
	if mqtt.Reconnecting(a) {
		t.Error("the agent's connection manager still runs after Done: it would try the refused key again")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Errorf("Close after the refusal: %v", err)
	}
}

// TestAnswersWaitForASlowService: answers for the service that find its
// queue of pending writes full are not dropped, as the broker library
// would: the device that sent them waits until the service reads. The
// service here stops reading while a device sends far more than its queue
// (4 packets) and the sockets' buffers hold; then it reads every answer.
// A device's own full queue still drops (Dropped counts it); none here.
func TestAnswersWaitForASlowService(t *testing.T) {
	const answers, size = 100, 200 << 10 // 20 MB: more than loopback buffers hold
	hashes := &sync.Map{}
	key, _ := mqtt.NewKey(rand.Reader)
	hashes.Store("vm-1", mqtt.HashKey(key))
	br, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: "127.0.0.1:0", Keys: staticKeys(hashes), MaxPendingWrites: 4, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = br.Close() })
	user, pass := br.ServiceCredential()
	svc, err := rawDial(br.Addr(), mqtt.ServiceClientPrefix+"slow", user, pass, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := svc.subscribe(mqtt.SharedResultFilter("slow"), mqtt.AnswerQoS); err != nil {
		t.Fatal(err)
	}
	dev, err := rawDial(br.Addr(), "vm-1", "vm-1", []byte(key), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()

	sent := make(chan error, 1)
	go func() {
		payload := make([]byte, size)
		for i := range answers {
			copy(payload, fmt.Sprintf(`{"status":"succeeded","n":%d}`, i))
			dev.publish(mqtt.ResultTopic("vm-1", fmt.Sprintf("job-%d", i)), payload, 0)
			if err := dev.Flush(); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	// Wait until the broker has found the service's queue full, or the
	// device has sent everything (a broker that drops lets it finish).
	deadline := time.Now().Add(30 * time.Second)
wait:
	for br.Stats().ServiceWaited == 0 {
		select {
		case err := <-sent:
			if err != nil {
				t.Fatal(err)
			}
			break wait
		case <-time.After(10 * time.Millisecond): // polling interval
		}
		if time.Now().After(deadline) {
			t.Fatal("the device is still sending after 30 s, and the broker never found the service's queue full")
		}
	}

	got := 0
	for got < answers {
		_ = svc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		first, _, err := svc.readPacket()
		if err != nil {
			t.Fatalf("after %d of %d answers: %v (broker: %+v)", got, answers, err, br.Stats())
		}
		if first>>4 == pktPublish {
			got++
		}
	}
	if st := br.Stats(); st.ServiceWaited == 0 || st.Dropped != 0 {
		t.Errorf("broker stats %+v: want answers that waited for the service and none dropped", st)
	}
}

// TestCloseWhileClientsChange: closing the broker while clients come and
// go returns. The broker library's own shutdown lists the clients under a
// read lock it takes twice, and a client leaving (or arriving) in between
// waits for the lock as a writer, which blocks the second read lock: the
// shutdown hung for good (seen as a benchmark that never ended, 1 run in
// 6, with 10,000 devices leaving at once). Here writers take the clients'
// lock in a loop while the broker closes, which hung the library's
// shutdown within 20 rounds.
func TestCloseWhileClientsChange(t *testing.T) {
	for r := range 20 {
		b := mustStartBroker(t) // not closed again by a cleanup, which would wait for a hung Close
		clients := mqtt.ServerOf(b.broker).Clients
		stop := make(chan struct{})
		var writers sync.WaitGroup
		for range 4 {
			writers.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						clients.Delete("nobody") // takes the write lock, as a client leaving does
					}
				}
			})
		}
		func() {
			defer close(stop) // also when Close hangs, which ends the test (then a writer waiting for the lock stays)
			t.Logf("round %d", r)
			mustCloseWithin(t, b.broker, 10*time.Second)
		}()
		writers.Wait()
	}
}

// TestCloseWhileDevicesLeave: closing the broker while half its devices
// drop their connections returns, and disconnects the other half and
// waits for them (Broker.Close does that itself, not the broker library).
func TestCloseWhileDevicesLeave(t *testing.T) {
	const rounds, devices = 5, 200
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("vm-%03d", i)
	}
	for r := range rounds {
		b := mustStartBroker(t, ids...) // not closed again by a cleanup, which would wait for a hung Close
		conns := make([]*rawConn, devices)
		for i, id := range ids {
			c, err := rawDial(b.broker.Addr(), id, id, []byte(b.keyFor(id)), 4<<10)
			if err != nil {
				t.Fatal(err)
			}
			conns[i] = c
		}
		var leave sync.WaitGroup
		for _, c := range conns[:devices/2] {
			leave.Go(func() { c.Close() })
		}
		mustCloseWithin(t, b.broker, 30*time.Second)
		leave.Wait()
		for i, c := range conns[devices/2:] {
			_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				if _, _, err := c.readPacket(); err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("round %d: device %s still connected after Close", r, ids[devices/2+i])
					}
					break
				}
			}
			c.Close()
		}
	}
}

// TestDeviceThatStopsReadingIsEnded: a device that stops reading its
// connection (here, with no keep-alive) is disconnected once a write to it
// has waited WriteTimeout, instead of holding the deliveries sent to it,
// and with them the dispatcher, for as long as its socket stays open.
func TestDeviceThatStopsReadingIsEnded(t *testing.T) {
	hashes := &sync.Map{}
	key, _ := mqtt.NewKey(rand.Reader)
	hashes.Store("vm-1", mqtt.HashKey(key))
	br, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: "127.0.0.1:0", Keys: staticKeys(hashes), WriteTimeout: 200 * time.Millisecond, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = br.Close() })
	dev, err := rawDial(br.Addr(), "vm-1", "vm-1", []byte(key), 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if err := dev.subscribe(mqtt.JobFilter("vm-1"), 1); err != nil {
		t.Fatal(err)
	}
	tr := br.Attach(mqtt.Config{Logger: zaptest.NewLogger(t)}, make(chan []dispatch.Answer, 1))
	defer tr.Close(context.Background())
	// 100 jobs of 200 kB: more than the sockets' buffers hold, with the
	// device reading none of it.
	big := []dispatch.Operation{{Name: "firmware", Value: strings.Repeat("x", 200<<10)}}
	ds := make([]dispatch.Delivery, 100)
	for i := range ds {
		ds[i] = dispatch.Delivery{JobID: fmt.Sprintf("job-%d", i), DeviceID: "vm-1", JobType: "command", Operations: big}
	}
	sent := make(chan error, 1)
	go func() { sent <- tr.Send(context.Background(), ds) }()
	select {
	case <-sent: // delivered, or refused for a device already gone: either way not held
	case <-time.After(10 * time.Second):
		t.Fatal("Send to a device that does not read is still waiting after 10 s")
	}
	// Its connection was ended: reading what the sockets hold ends in an error.
	_ = dev.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := dev.readPacket(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the device is still connected 10 s after its writes stalled")
			}
			break
		}
	}
}

// TestCloseEndsConnectionsThatNeverConnect: connections that have not sent
// their CONNECT (the broker library waits for it without a limit, and does
// not list them among its clients) do not keep Close waiting.
func TestCloseEndsConnectionsThatNeverConnect(t *testing.T) {
	const conns = 20
	b := mustStartBroker(t) // not closed again by a cleanup, which would wait for a hung Close
	for range conns {
		c, err := net.Dial("tcp", b.broker.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); mqtt.OpenConns(b.broker) < conns; {
		if time.Now().After(deadline) {
			t.Fatalf("the broker has accepted %d of %d connections after 5 s", mqtt.OpenConns(b.broker), conns)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	mustCloseWithin(t, b.broker, 5*time.Second) // shorter than the 10 s a connection has to send its CONNECT
}

// TestKeepAliveIsBounded: a connection that asks for no keep-alive, or a
// longer one than the broker's bound, is given the bound (announced in the
// CONNACK) and ended when it stays silent past it; one within the bound
// keeps its own.
func TestKeepAliveIsBounded(t *testing.T) {
	hashes := &sync.Map{}
	key, _ := mqtt.NewKey(rand.Reader)
	for _, id := range []string{"vm-1", "vm-2", "vm-3"} {
		hashes.Store(id, mqtt.HashKey(key))
	}
	br, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: "127.0.0.1:0", Keys: staticKeys(hashes), MaxKeepAlive: 2 * time.Second, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = br.Close() })
	for _, c := range []struct {
		device    string
		asked     uint16
		announced bool
	}{{"vm-1", 0, true}, {"vm-2", 600, true}, {"vm-3", 2, false}} {
		dev, err := rawDialKeepAlive(br.Addr(), c.device, c.device, []byte(key), 4<<10, c.asked)
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		got, ok, err := dev.serverKeepAlive()
		switch {
		case err != nil:
			t.Fatal(err)
		case ok != c.announced:
			t.Errorf("keep-alive %d s asked: Server Keep Alive announced = %v (%d s), want %v", c.asked, ok, got, c.announced)
		case ok && got != 2:
			t.Errorf("keep-alive %d s asked: Server Keep Alive %d s, want 2", c.asked, got)
		}
		if c.asked != 0 {
			continue
		}
		// Silent past one and a half times the bound (3 s): ended.
		start := time.Now()
		_ = dev.c.SetReadDeadline(start.Add(15 * time.Second))
		if _, _, err := dev.readPacket(); err == nil {
			t.Fatal("a packet from the broker on a silent connection")
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("a connection without keep-alive is still open after 15 s of silence")
		}
		if waited := time.Since(start); waited < 2*time.Second {
			t.Errorf("the silent connection was ended after %v, before its keep-alive", waited)
		}
	}
}
