package mqtt_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

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
