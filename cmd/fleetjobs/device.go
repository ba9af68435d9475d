package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/mqtt"
)

// `fleetjobs device` is a small device agent, to try the MQTT transport by
// hand: it connects to the broker as a device, prints each job it receives
// and answers it.

// deviceKeyEnv is the variable behind --key: a key in the environment
// stays out of the process list.
const deviceKeyEnv = "FLEETJOBS_DEVICE_KEY"

// defaultDeviceBroker is the embedded broker at its default address.
const defaultDeviceBroker = "mqtt://127.0.0.1:1884"

// deviceBroker is --broker's default: the broker serve uses, as serve's
// configuration says it. That is FLEETJOBS_MQTT_URL's broker (without its
// credentials, which are the service's own account), else the embedded
// broker at FLEETJOBS_MQTT_ADDR (loopback when it listens on every
// address), else the embedded broker at its default address.
func deviceBroker(getenv func(string) string) string {
	if raw := getenv("FLEETJOBS_MQTT_URL"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil {
			return raw // refused as --broker would be, naming it
		}
		u.User = nil
		return u.String()
	}
	addr := getenv("FLEETJOBS_MQTT_ADDR")
	if addr == "" {
		return defaultDeviceBroker
	}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
	}
	return "mqtt://" + addr
}

// deviceConnectTimeout bounds the first connection: a broker that cannot be
// reached is a failure, said plainly, not an endless wait.
const deviceConnectTimeout = 15 * time.Second

// DeviceConfig is the configuration of `fleetjobs device`.
type DeviceConfig struct {
	ID     string
	Key    string
	Broker string
	Fail   string // answer failed with this message; "" succeeds
	Ignore bool   // never answer
}

func deviceFlags(getenv func(string) string) (*flag.FlagSet, func() (DeviceConfig, error)) {
	fs := newFlagSet("device")
	id := fs.String("id", "", "the device's ID (required): its MQTT username and client ID")
	key := fs.String("key", getenv(deviceKeyEnv), "the device's key, shown when it was registered (required; $"+deviceKeyEnv+")")
	broker := fs.String("broker", deviceBroker(getenv), "the MQTT broker, mqtt://host:port or mqtts://host:port; when not given, serve's: $FLEETJOBS_MQTT_URL's broker (without its credentials), else the embedded broker at $FLEETJOBS_MQTT_ADDR, else the one below")
	fail := fs.String("fail", "", "answer every job failed with this message (default: succeeded)")
	ignore := fs.Bool("ignore", false, "never answer, as a device that lost power would (the job times it out)")
	return fs, func() (DeviceConfig, error) {
		c := DeviceConfig{ID: *id, Key: *key, Broker: *broker, Fail: *fail, Ignore: *ignore}
		switch {
		case c.ID == "":
			return c, usageErrorf("--id is required")
		case c.Key == "":
			return c, usageErrorf("--key (or $%s) is required", deviceKeyEnv)
		case c.Fail != "" && c.Ignore:
			return c, usageErrorf("--fail and --ignore exclude each other")
		}
		if err := checkIDFlag("id", c.ID); err != nil {
			return c, err
		}
		if err := checkMQTTURL(c.Broker); err != nil || c.Broker == "" {
			return c, usageErrorf("invalid --broker %q: want mqtt://host:port", redactURL(c.Broker))
		}
		if u, _ := url.Parse(c.Broker); u.User != nil {
			return c, usageErrorf("invalid --broker %q: the credentials are --id and --key, not part of the URL", redactURL(c.Broker))
		}
		return c, nil
	}
}

// runDevice is `fleetjobs device`: it serves until ctx ends (SIGINT), then
// disconnects and returns nil.
func runDevice(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, load := deviceFlags(getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	logger := newLogger(stderr, zapcore.WarnLevel)
	defer func() { _ = logger.Sync() }()
	p := &jobPrinter{w: stdout, cfg: cfg}
	cctx, cancel := context.WithTimeout(ctx, deviceConnectTimeout)
	defer cancel()
	agent, err := mqtt.ConnectAgent(cctx, mqtt.AgentConfig{
		URL: cfg.Broker, DeviceID: cfg.ID, Key: cfg.Key, Handler: p.handle, Logger: logger,
		// Jobs sent while the device is briefly offline wait for it (on a
		// broker that keeps sessions), and it is back soon after a
		// broker restart.
		SessionExpiry: time.Hour, MaxReconnectDelay: 2 * time.Second,
	})
	switch {
	case errors.Is(err, mqtt.ErrRefused):
		return refusedKeyError(cfg.ID, err)
	case err != nil && ctx.Err() != nil:
		return nil // interrupted while connecting
	case err != nil:
		return fmt.Errorf("device %s: cannot connect to %s within %s: %w", cfg.ID, redactURL(cfg.Broker), deviceConnectTimeout, err)
	}
	p.printf("device %s connected to %s; waiting for jobs (Ctrl-C to stop)\n", cfg.ID, redactURL(cfg.Broker))
	var refused error
	select {
	case <-ctx.Done():
	case <-agent.Done():
		// The broker disconnected the device and refuses its key now (a
		// new key was issued, or the device deleted).
		refused = refusedKeyError(cfg.ID, agent.Err())
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if err := agent.Close(dctx); err != nil {
		return errors.Join(refused, err)
	}
	if refused != nil {
		return refused
	}
	p.printf("device %s disconnected\n", cfg.ID)
	return nil
}

// refusedKeyError says what to do about a key the broker refuses, at the
// first connection or on a reconnection.
func refusedKeyError(id string, err error) error {
	return fmt.Errorf("device %s: %w: check --id and --key (a device's key is shown when it is registered; POST /api/v1/devices/%s:issueKey gives it a new one, and the old one stops working)", id, err, id)
}

// jobPrinter is the agent's Handler: it prints each job (one line, then
// one line per operation) and says how it answers.
type jobPrinter struct {
	mu  sync.Mutex
	w   io.Writer
	cfg DeviceConfig
}

func (p *jobPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *jobPrinter) handle(_ context.Context, d dispatch.Delivery) error {
	answer, err := "answering succeeded", error(nil)
	switch {
	case p.cfg.Ignore:
		answer, err = "not answering (--ignore)", mqtt.ErrNoAnswer
	case p.cfg.Fail != "":
		answer, err = fmt.Sprintf("answering failed: %s", p.cfg.Fail), errors.New(p.cfg.Fail)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "job %s (%s, %d operations, answer by %s): %s\n", d.JobID, d.JobType, len(d.Operations), d.Deadline.UTC().Format(time.RFC3339), answer)
	for _, op := range d.Operations {
		v, jerr := json.Marshal(op.Value)
		if jerr != nil {
			v = []byte(fmt.Sprint(op.Value))
		}
		fmt.Fprintf(&b, "  %s = %s\n", op.Name, v)
	}
	p.printf("%s", b.String())
	return err
}
