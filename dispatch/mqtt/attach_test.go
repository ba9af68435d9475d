package mqtt_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// TestAttachedTransportHoldsDevicesBack: an attached Transport that the
// dispatcher does not read holds back the devices answering it, on their
// own connections, rather than drop their answers. Here it holds four
// answers and one batch of one; two devices send twenty answers each
// before anyone reads; then every answer arrives, once.
func TestAttachedTransportHoldsDevicesBack(t *testing.T) {
	const perDevice = 20
	b := MustBroker(t, "vm-1", "vm-2")
	answers := make(chan []dispatch.Answer) // unbuffered: nothing is read until the devices have sent
	tr := b.broker.Attach(mqtt.Config{AnswerBatch: 1, Logger: zaptest.NewLogger(t)}, answers)
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = tr.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-ran; _ = tr.Close(context.Background()) })

	job := unique("job")
	for _, id := range []string{"vm-1", "vm-2"} {
		dev, err := rawDial(b.broker.Addr(), id, id, []byte(b.keyFor(id)), 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dev.Close() })
		for i := range perDevice {
			dev.publish(mqtt.ResultTopic(id, fmt.Sprintf("%s-%d", job, i)), []byte(`{"status":"succeeded"}`), 1)
		}
		if err := dev.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	timeout := time.After(30 * time.Second)
	for n := 0; n < 2*perDevice; {
		select {
		case batch := <-answers:
			for _, a := range batch {
				got[a.DeviceID+"/"+a.JobID]++
				n++
			}
		case <-timeout:
			t.Fatalf("%d of %d answers after 30 s (transport: %+v, broker: %+v)", len(got), 2*perDevice, tr.Stats(), b.broker.Stats())
		}
	}
	if s := tr.Stats(); s.Waited == 0 {
		t.Errorf("stats %+v: want answers that waited", s)
	}
	for _, id := range []string{"vm-1", "vm-2"} {
		for i := range perDevice {
			if k := fmt.Sprintf("%s/%s-%d", id, job, i); got[k] != 1 {
				t.Errorf("answer %s received %d times", k, got[k])
			}
		}
	}
}

// TestAttachedTransportEndsWithItsBroker: an attached Transport is
// connected while its broker runs; after the broker or the Transport is
// closed, Send says that nothing was delivered, and Connected says the
// broker is gone. A Send whose context has ended delivers nothing either.
func TestAttachedTransportEndsWithItsBroker(t *testing.T) {
	delivery := []dispatch.Delivery{{JobID: "j1", DeviceID: "vm-1", JobType: "command"}, {JobID: "j1", DeviceID: "vm-2", JobType: "command"}}
	b := MustBroker(t, "vm-1", "vm-2")
	tr := b.broker.Attach(mqtt.Config{Logger: zaptest.NewLogger(t)}, make(chan []dispatch.Answer))
	if err := tr.Connected(context.Background()); err != nil {
		t.Errorf("Connected while the broker runs: %v", err)
	}
	if err := tr.Send(context.Background(), delivery); err != nil {
		t.Errorf("Send while the broker runs: %v", err)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(context.Background(), delivery); err == nil {
		t.Error("Send after Close: no error")
	}
	cancelled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	tr = b.broker.Attach(mqtt.Config{Logger: zaptest.NewLogger(t)}, make(chan []dispatch.Answer))
	if err := tr.Send(cancelled, delivery); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with an ended context: %v, want context.Canceled", err)
	}

	tr = b.broker.Attach(mqtt.Config{Logger: zaptest.NewLogger(t)}, make(chan []dispatch.Answer))
	if err := b.broker.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := tr.Connected(ctx); err == nil {
		t.Error("Connected after the broker closed: no error")
	}
	if err := tr.Send(context.Background(), delivery); err == nil {
		t.Error("Send after the broker closed: no error")
	}
	if s := tr.Stats(); s.PublishFailed != 2 || s.Published != 0 {
		t.Errorf("stats %+v: want 2 failed, none published", s)
	}
}

// TestBrokerClosesWhileAnAttachedTransportHoldsDevicesBack: closing the
// broker ends the wait of devices held back by an attached Transport that
// nobody reads (the broker waits for every connection to end).
func TestBrokerClosesWhileAnAttachedTransportHoldsDevicesBack(t *testing.T) {
	b := mustStartBroker(t, "vm-1") // not closed again by a cleanup, which would wait for a hung Close
	tr := b.broker.Attach(mqtt.Config{AnswerBatch: 1, Logger: zaptest.NewLogger(t)}, make(chan []dispatch.Answer))
	dev, err := rawDial(b.broker.Addr(), "vm-1", "vm-1", []byte(b.keyFor("vm-1")), 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	for i := range 10 { // more than the Transport holds (4, as nothing runs Run)
		dev.publish(mqtt.ResultTopic("vm-1", fmt.Sprintf("job-%d", i)), []byte(`{"status":"succeeded"}`), 1)
	}
	if err := dev.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().Waited == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the device was never held back")
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	mustCloseWithin(t, b.broker, 30*time.Second)
}
