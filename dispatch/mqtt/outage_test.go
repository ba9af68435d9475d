package mqtt_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// TestTransportLogsAnOutageOnce: while the broker is down the Transport
// retries every few seconds; it warns once that the connection is lost,
// logs the failed attempts at debug only, and says once, at info, that it
// is connected again when the broker is back.
func TestTransportLogsAnOutageOnce(t *testing.T) {
	t.Parallel()
	pass := []byte("the-service-password")
	start := func(addr string) *mqtt.Broker {
		t.Helper()
		b, err := mqtt.StartBroker(mqtt.BrokerConfig{Addr: addr, Keys: staticKeys(&sync.Map{}), ServicePassword: pass})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start("127.0.0.1:0")
	addr := b.Addr()
	user, _ := b.ServiceCredential()

	core, logs := observer.New(zap.DebugLevel)
	// Every entry logged is also sent on entries, for the test to wait on.
	entries := make(chan zapcore.Entry, 1000)
	logger := zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		select {
		case entries <- e:
		default:
		}
		return nil
	}))
	await := func(what, msg string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case e := <-entries:
				if e.Message == msg {
					return
				}
			case <-timeout:
				t.Fatalf("after 30 s, still not: %s; logged: %v", what, logs.All())
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := mqtt.Dial(ctx, mqtt.Config{URL: b.URL(), Username: user, Password: pass, Logger: logger}, make(chan []dispatch.Answer, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close(context.Background()) })

	level := func(l zapcore.Level) *observer.ObservedLogs { return logs.FilterLevelExact(l) }
	failed := func() int { return logs.FilterMessage("mqtt: connection attempt failed").Len() }
	// The broker goes down once the subscription is in place (else its
	// failure would be a warning of its own).
	await("the answers subscribed", "mqtt: connected and subscribed")
	mustCloseWithin(t, b, 10*time.Second)
	for range 2 {
		await("two failed connection attempts", "mqtt: connection attempt failed")
	}
	if n := level(zap.WarnLevel).Len(); n != 1 || level(zap.WarnLevel).FilterMessageSnippet("lost the connection").Len() != 1 {
		t.Errorf("%d warnings while the broker is down, want the one that the connection is lost: %v", n, level(zap.WarnLevel).All())
	}
	if n := level(zap.DebugLevel).FilterMessage("mqtt: connection attempt failed").Len(); n != failed() {
		t.Errorf("%d of %d failed attempts logged at debug, want all", n, failed())
	}

	b = start(addr)
	t.Cleanup(func() { _ = b.Close() })
	await("the Transport says it is connected again", "mqtt: connected to the broker again")
	if e := logs.FilterMessage("mqtt: connected to the broker again").All(); len(e) != 1 || e[0].Level != zap.InfoLevel {
		t.Errorf("said it is connected again %v, want once at info", e)
	}
	if n := level(zap.WarnLevel).Len(); n != 1 {
		t.Errorf("%d warnings over the outage, want 1: %v", n, level(zap.WarnLevel).All())
	}
}
