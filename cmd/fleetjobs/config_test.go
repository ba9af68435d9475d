package main_test

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	got, err := main.LoadConfig(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := main.Config{
		HTTPAddr:       "127.0.0.1:8080",
		DataDir:        "./data",
		EventStoreAddr: "127.0.0.1:2113",
		Devices:        "mqtt",
		MQTTAddr:       "127.0.0.1:1884",
		LogLevel:       zapcore.InfoLevel,
		MaxAppendSize:  1 << 20,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got.EventStoreDir() != "data/eventstore" {
		t.Errorf("EventStoreDir = %q", got.EventStoreDir())
	}
}

func TestLoadConfigEnvThenFlags(t *testing.T) {
	got, err := main.LoadConfig(
		[]string{"--http-addr", ":9090", "--log-level", "debug"},
		env(map[string]string{
			"FLEETJOBS_HTTP_ADDR":      "127.0.0.1:1",
			"FLEETJOBS_DATA_DIR":       "/var/lib/fleetjobs",
			"FLEETJOBS_EVENTSTORE_URL": "esdb://10.0.0.1:2113?tls=false",
			"FLEETJOBS_REDIS_URL":      "redis://127.0.0.1:6379/0",
			"FLEETJOBS_DEVICES":        "sim",
			"FLEETJOBS_MQTT_URL":       "mqtt://127.0.0.1:1883",
			"FLEETJOBS_API_KEYS":       "k1:operator, k2:admin",
			"FLEETJOBS_LOG_LEVEL":      "warn",
		}))
	if err != nil {
		t.Fatal(err)
	}
	want := main.Config{
		HTTPAddr:       ":9090",
		DataDir:        "/var/lib/fleetjobs",
		EventStoreURL:  "esdb://10.0.0.1:2113?tls=false",
		EventStoreAddr: "127.0.0.1:2113",
		RedisURL:       "redis://127.0.0.1:6379/0",
		Devices:        "sim",
		MQTTURL:        "mqtt://127.0.0.1:1883",
		MQTTAddr:       "127.0.0.1:1884",
		APIKeys:        []main.APIKey{{Key: "k1", Role: "operator"}, {Key: "k2", Role: "admin"}},
		LogLevel:       zapcore.DebugLevel,
		MaxAppendSize:  1 << 20,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLoadConfigNamesTheBadVariable(t *testing.T) {
	cases := map[string]string{
		"FLEETJOBS_HTTP_ADDR":       "8080",
		"FLEETJOBS_EVENTSTORE_URL":  "esdb+discover://",
		"FLEETJOBS_EVENTSTORE_ADDR": "127.0.0.1:99999",
		"FLEETJOBS_REDIS_URL":       "http://x",
		"FLEETJOBS_DEVICES":         "zigbee",
		"FLEETJOBS_MQTT_URL":        "mqtt://",
		"FLEETJOBS_MQTT_ADDR":       "x",
		"FLEETJOBS_API_KEYS":        "secret:operator,secret:admin",
		"FLEETJOBS_LOG_LEVEL":       "chatty",
	}
	for variable, value := range cases {
		t.Run(variable, func(t *testing.T) {
			_, err := main.LoadConfig(nil, env(map[string]string{variable: value}))
			if err == nil {
				t.Fatalf("%s=%q accepted", variable, value)
			}
			if !strings.Contains(err.Error(), variable) {
				t.Errorf("error %q does not name %s", err, variable)
			}
			if variable == "FLEETJOBS_API_KEYS" && strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q shows an API key", err)
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	if _, err := main.LoadConfig([]string{"--help"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("err = %v, want flag.ErrHelp", err)
	}
}

// MustMainConfig is a serve configuration on a temporary data directory and
// free loopback ports.
func MustMainConfig(tb testing.TB, dataDir string) main.Config {
	tb.Helper()
	cfg, err := main.LoadConfig(nil, env(map[string]string{
		"FLEETJOBS_DATA_DIR":        dataDir,
		"FLEETJOBS_HTTP_ADDR":       "127.0.0.1:0",
		"FLEETJOBS_EVENTSTORE_ADDR": "127.0.0.1:0",
		"FLEETJOBS_MQTT_ADDR":       "127.0.0.1:0",
	}))
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

func TestMainRunsInProcess(t *testing.T) {
	m := main.NewMain(MustMainConfig(t, t.TempDir()), zap.NewNop())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !strings.HasPrefix(m.EventStoreURL(), "esdb://127.0.0.1:") {
		t.Errorf("EventStoreURL = %q", m.EventStoreURL())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, err := get(m.HTTPURL() + "/readyz")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz: %d, %v after 30s", code, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, bounded by the deadline above
	}
	if err := m.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestMainRunReleasesWhatItStartedOnFailure(t *testing.T) {
	// The HTTP address is taken, so Run fails after the store started: the
	// store must be closed again, leaving the data directory free.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	data := t.TempDir()
	cfg := MustMainConfig(t, data)
	cfg.HTTPAddr = taken.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := main.NewMain(cfg, zap.NewNop()).Run(ctx); err == nil {
		t.Fatal("Run succeeded on a taken HTTP address")
	}

	m := main.NewMain(MustMainConfig(t, data), zap.NewNop())
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run on the same data after a failed Run: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
}

// TestRedisURLForms pins the FLEETJOBS_REDIS_URL forms serve accepts: one
// server (plain or TLS), a Cluster's seed nodes, Sentinels with a master
// name, and go-redis's own cluster form.
func TestRedisURLForms(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"redis://127.0.0.1:6379/0", true},
		{"rediss://user:secret@127.0.0.1:6380/2", true},
		{"redis://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379", true},
		{"redis://10.0.0.1:26379,10.0.0.2:26379/1?master=mymaster", true},
		{"redis://10.0.0.1:6379?addr=10.0.0.2:6379&addr=10.0.0.3:6379", true},
		{"redis://10.0.0.1:6379,10.0.0.2:6379/3", false}, // Cluster has only database 0
		{"redis://10.0.0.1:6379,,10.0.0.2:6379", false},
		{"http://127.0.0.1:6379", false},
		{"redis://127.0.0.1:6379/notadb", false},
	}
	for _, c := range cases {
		var args []string
		if strings.Contains(c.url, ",") && !strings.Contains(c.url, "master=") || strings.Contains(c.url, "addr=") {
			args = []string{"--redis-key-root", "{fj}"} // a Cluster: see TestRedisClusterWantsAHashTag
		}
		_, err := main.LoadConfig(args, env(map[string]string{"FLEETJOBS_REDIS_URL": c.url}))
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.url, err, c.ok)
		}
	}
}

// TestRedisClusterWantsAHashTag: with a Redis Cluster the key root must
// hold a hash tag (every key of a projection's MULTI/EXEC in one slot), in
// both its URL forms; serve refuses a root without one, naming the flag and
// a root that would do; other Redis forms take any root.
func TestRedisClusterWantsAHashTag(t *testing.T) {
	for _, tc := range []struct {
		url, root string
		ok        bool
	}{
		{"redis://10.0.0.1:6379,10.0.0.2:6379", "", false},
		{"redis://10.0.0.1:6379,10.0.0.2:6379", "fleet", false},
		{"redis://10.0.0.1:6379,10.0.0.2:6379", "fleet{}", false},
		{"redis://10.0.0.1:6379,10.0.0.2:6379", "{fleet", false},
		{"redis://10.0.0.1:6379?addr=10.0.0.2:6379", "fj", false},
		{"redis://10.0.0.1:6379,10.0.0.2:6379", "{fleet}", true},
		{"redis://10.0.0.1:6379,10.0.0.2:6379", "prod-{fleet}", true},
		{"redis://10.0.0.1:6379?addr=10.0.0.2:6379", "{fj}", true},
		{"redis://127.0.0.1:6379/0", "fleet", true},
		{"redis://10.0.0.1:26379,10.0.0.2:26379/1?master=mymaster", "fleet", true},
	} {
		var args []string
		if tc.root != "" {
			args = []string{"--redis-key-root", tc.root}
		}
		_, err := main.LoadConfig(args, env(map[string]string{"FLEETJOBS_REDIS_URL": tc.url}))
		if (err == nil) != tc.ok {
			t.Errorf("%s, root %q: err %v, want ok=%v", tc.url, tc.root, err, tc.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "--redis-key-root") || !strings.Contains(err.Error(), "hash tag")) {
			t.Errorf("%s, root %q: error %q should name --redis-key-root and a hash tag", tc.url, tc.root, err)
		}
	}
}

// TestLoadConfigDemo: --demo or FLEETJOBS_DEMO turns the demo on, the flag
// wins over the variable, and a bad value is a usage error naming both.
func TestLoadConfigDemo(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want bool
	}{
		{"off by default", nil, nil, false},
		{"the flag alone", nil, []string{"--demo"}, true},
		{"the variable", map[string]string{"FLEETJOBS_DEMO": "1"}, nil, true},
		{"the flag wins over the variable", map[string]string{"FLEETJOBS_DEMO": "1"}, []string{"--demo=false"}, false},
		{"the flag overrides a bad variable", map[string]string{"FLEETJOBS_DEMO": "maybe"}, []string{"--demo"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := main.LoadConfig(tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Demo != tc.want {
				t.Errorf("Demo = %v, want %v", c.Demo, tc.want)
			}
		})
	}
	_, err := main.LoadConfig(nil, env(map[string]string{"FLEETJOBS_DEMO": "maybe"}))
	if err == nil || !strings.Contains(err.Error(), "FLEETJOBS_DEMO") || !strings.Contains(err.Error(), "--demo") {
		t.Errorf("bad FLEETJOBS_DEMO: error %v, want one naming FLEETJOBS_DEMO and --demo", err)
	}
}
