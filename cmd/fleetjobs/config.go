package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"go.uber.org/zap/zapcore"

	"github.com/fleetjobs/fleetjobs/domain"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// Config is the configuration of `fleetjobs serve` (API.md's table). Every
// field comes from a FLEETJOBS_* variable, overridden by its flag.
type Config struct {
	HTTPAddr       string        // FLEETJOBS_HTTP_ADDR
	DataDir        string        // FLEETJOBS_DATA_DIR: embedded parts keep their files below it
	EventStoreURL  string        // FLEETJOBS_EVENTSTORE_URL: empty means the embedded store
	EventStoreAddr string        // FLEETJOBS_EVENTSTORE_ADDR: where the embedded store listens
	RedisURL       string        // FLEETJOBS_REDIS_URL: empty means the embedded Redis
	Devices        string        // FLEETJOBS_DEVICES: "mqtt", "sim" (the simulated fleet) or "none" (no dispatcher)
	MQTTURL        string        // FLEETJOBS_MQTT_URL: empty means the embedded broker
	MQTTAddr       string        // FLEETJOBS_MQTT_ADDR: where the embedded broker listens
	APIKeys        []APIKey      // FLEETJOBS_API_KEYS
	LogLevel       zapcore.Level // FLEETJOBS_LOG_LEVEL

	// MaxAppendSize bounds one append to the embedded store (--max-append-size
	// only: a tuning knob, not part of the documented environment).
	MaxAppendSize int

	// RedisKeyRoot is the first segment of every read-model key
	// (--redis-key-root only; empty means projections.KeyRoot). Two
	// deployments, or parallel tests, can share one Redis under different
	// roots; Redis Cluster wants a hash tag such as "{fj}".
	RedisKeyRoot string

	// Demo seeds a demonstration fleet through the command path at start,
	// unless the log already has it (--demo or FLEETJOBS_DEMO=1).
	Demo bool

	// DispatchLease is how long the dispatching instance holds the dispatch
	// lease without renewing it, so how long a crashed one leaves jobs
	// undispatched before another instance takes over (no flag: tests
	// shorten it; zero means 10 s).
	DispatchLease time.Duration
}

// KeyRoot is the root of the read models' keys in Redis.
func (c Config) KeyRoot() string {
	if c.RedisKeyRoot == "" {
		return projections.KeyRoot
	}
	return c.RedisKeyRoot
}

// APIKey is one entry of FLEETJOBS_API_KEYS; the http package owns the
// format (fjhttp.ParseAPIKeys) and the access rules.
type APIKey = fjhttp.APIKey

// EventStoreDir is where the embedded event store keeps its data.
func (c Config) EventStoreDir() string { return filepath.Join(c.DataDir, "eventstore") }

// setting is one configuration value: its variable, its flag, its default
// and how it is checked and stored.
type setting struct {
	env, flag, def, usage string
	set                   func(c *Config, v string) error
}

// settings is API.md's configuration table, in its order. It is a function,
// not a package variable: no package-level mutable state.
func settings() []setting {
	return []setting{
		{"FLEETJOBS_HTTP_ADDR", "http-addr", "127.0.0.1:8080", "HTTP listen address (host:port)",
			func(c *Config, v string) error { c.HTTPAddr = v; return checkHostPort(v) }},
		{"FLEETJOBS_DATA_DIR", "data-dir", "./data", "where embedded parts keep their files",
			func(c *Config, v string) error {
				if v == "" {
					return errors.New("must not be empty")
				}
				c.DataDir = v
				return nil
			}},
		{"FLEETJOBS_EVENTSTORE_URL", "eventstore-url", "", "KurrentDB connection string, e.g. esdb://127.0.0.1:2113?tls=false; empty: the embedded store",
			func(c *Config, v string) error {
				c.EventStoreURL = v
				if v == "" {
					return nil
				}
				if !strings.HasPrefix(v, "esdb://") && !strings.HasPrefix(v, "esdb+discover://") {
					return errors.New("want an esdb:// or esdb+discover:// connection string")
				}
				_, err := esdb.ParseConnectionString(v)
				return err
			}},
		{"FLEETJOBS_EVENTSTORE_ADDR", "eventstore-addr", "127.0.0.1:2113", "where the embedded event store listens (host:port)",
			func(c *Config, v string) error { c.EventStoreAddr = v; return checkHostPort(v) }},
		{"FLEETJOBS_REDIS_URL", "redis-url", "", "Redis URL, e.g. redis://127.0.0.1:6379/0, rediss://... (TLS), redis://h1:6379,h2:6379 (Cluster), redis://s1:26379,s2:26379?master=NAME (Sentinel); empty: embedded, rebuilt from the log at start",
			func(c *Config, v string) error {
				c.RedisURL = v
				if v == "" {
					return nil
				}
				_, err := redisOptions(v)
				return err
			}},
		{"FLEETJOBS_DEVICES", "devices", "mqtt", "device transport: mqtt (devices over MQTT), sim (a simulated fleet in process) or none (no dispatcher: serve the API beside an instance that dispatches; alone, jobs stay pending)",
			func(c *Config, v string) error {
				c.Devices = v
				if v != devicesMQTT && v != devicesSim && v != devicesNone {
					return errors.New("want mqtt, sim or none")
				}
				return nil
			}},
		{"FLEETJOBS_MQTT_URL", "mqtt-url", "", "MQTT broker URL, mqtt://[user:password@]host:port or mqtts://...; empty: the embedded broker",
			func(c *Config, v string) error { c.MQTTURL = v; return checkMQTTURL(v) }},
		{"FLEETJOBS_MQTT_ADDR", "mqtt-addr", "127.0.0.1:1884", "where the embedded MQTT broker listens (host:port)",
			func(c *Config, v string) error { c.MQTTAddr = v; return checkHostPort(v) }},
		{"FLEETJOBS_API_KEYS", "api-keys", "", "API keys, key:role,... with role operator, auditor or admin",
			func(c *Config, v string) error {
				keys, err := fjhttp.ParseAPIKeys(v)
				c.APIKeys = keys
				return err
			}},
		{"FLEETJOBS_LOG_LEVEL", "log-level", "info", "log level: debug, info, warn or error",
			func(c *Config, v string) error {
				l, err := zapcore.ParseLevel(v)
				c.LogLevel = l
				return err
			}},
	}
}

// serveFlags is serve's flag set: one flag per setting, defaulting to its
// variable when set, plus the tuning flags.
type serveFlags struct {
	fs        *flag.FlagSet
	values    map[string]*string // by variable name
	maxAppend *int
	keyRoot   *string
	demo      *bool
}

// demoEnv is the variable behind --demo. It is not in API.md's table (a
// convenience of make run, not a deployment setting), so it is not a
// setting: --demo is a plain boolean flag.
const demoEnv = "FLEETJOBS_DEMO"

func newServeFlags(getenv func(string) string) serveFlags {
	f := serveFlags{fs: newFlagSet("serve"), values: make(map[string]*string)}
	for _, s := range settings() {
		def := s.def
		if v, ok := lookup(getenv, s.env); ok {
			def = v
		}
		f.values[s.env] = f.fs.String(s.flag, def, s.usage+" ($"+s.env+")")
	}
	f.maxAppend = f.fs.Int("max-append-size", defaultMaxAppendSize, "largest append the embedded event store accepts, in bytes")
	demoDef, _ := strconv.ParseBool(getenv(demoEnv)) // a bad value is refused by LoadConfig
	f.demo = f.fs.Bool("demo", demoDef, "seed a demo fleet (template vending-fridge, a few hundred devices, device sets) at start unless the log has it ($"+demoEnv+")")
	f.keyRoot = f.fs.String("redis-key-root", projections.KeyRoot, "first segment of every read-model key in Redis (for deployments sharing one Redis; Cluster: a hash tag such as {fj})")
	return f
}

// LoadConfig reads serve's configuration from the environment (getenv) and
// the command line (args, after "serve"). Bad flags and bad values are usage
// errors naming the variable and the flag; --help is flag.ErrHelp.
func LoadConfig(args []string, getenv func(string) string) (Config, error) {
	f := newServeFlags(getenv)
	if err := parseFlags(f.fs, args); err != nil {
		return Config{}, err
	}
	var c Config
	for _, s := range settings() {
		v := *f.values[s.env]
		if err := s.set(&c, v); err != nil {
			return Config{}, usageErrorf("invalid %s (--%s) %q: %v", s.env, s.flag, redact(s.env, v), err)
		}
	}
	if *f.maxAppend <= 0 {
		return Config{}, usageErrorf("invalid --max-append-size %d: must be positive", *f.maxAppend)
	}
	c.MaxAppendSize = *f.maxAppend
	if err := checkKeyRoot(*f.keyRoot); err != nil {
		return Config{}, usageErrorf("invalid --redis-key-root %q: %v", *f.keyRoot, err)
	}
	if *f.keyRoot != projections.KeyRoot {
		c.RedisKeyRoot = *f.keyRoot
	}
	if err := checkClusterKeyRoot(c.RedisURL, c.KeyRoot()); err != nil {
		return Config{}, usageErrorf("--redis-key-root %q: %v", c.KeyRoot(), err)
	}
	if v, ok := lookup(getenv, demoEnv); ok && !flagSet(f.fs, "demo") {
		if _, err := strconv.ParseBool(v); err != nil {
			return Config{}, usageErrorf("invalid %s (--demo) %q: want 1, true, 0 or false", demoEnv, v)
		}
	}
	c.Demo = *f.demo
	// Without keys anyone who reaches the service may command the fleet,
	// so it must then stay on loopback: a configuration error, exit 2.
	if err := fjhttp.CheckListenAddr(c.HTTPAddr, len(c.APIKeys) > 0); err != nil {
		return Config{}, usageErrorf("FLEETJOBS_HTTP_ADDR (--http-addr): %v", err)
	}
	return c, nil
}

// flagSet reports whether flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// lookup treats a variable set to "" as unset: an empty assignment in a
// compose file or unit means "default", not "empty".
func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

// redact keeps secrets out of error messages.
func redact(env, v string) string {
	switch env {
	case "FLEETJOBS_API_KEYS":
		return "<redacted>"
	case "FLEETJOBS_MQTT_URL":
		return redactURL(v)
	}
	return v
}

func checkHostPort(v string) error {
	// An empty host means every interface, which net.Listen accepts.
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	return nil
}

// checkKeyRoot keeps the root to characters that need no quoting in key
// names and patterns (plus the braces of a Cluster hash tag).
func checkKeyRoot(v string) error {
	if v == "" || len(v) > 64 {
		return errors.New("want 1 to 64 characters")
	}
	for _, r := range v {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-_.{}", r)) {
			return fmt.Errorf("%q: want letters, digits and - _ . { }", r)
		}
	}
	return nil
}

// checkClusterKeyRoot refuses a key root without a hash tag when redisURL
// is a Redis Cluster. A projection writes each batch and its checkpoint in
// one MULTI/EXEC, which a Cluster runs only when every key is in one slot:
// with a root such as "{fj}" every key hashes on "fj". Without one the
// projections could never commit, and serve would wait for them forever.
func checkClusterKeyRoot(redisURL, root string) error {
	if redisURL == "" {
		return nil
	}
	o, err := redisOptions(redisURL)
	if err != nil || !o.IsClusterMode {
		return nil // a bad URL is reported as such
	}
	if open := strings.IndexByte(root, '{'); open >= 0 {
		if end := strings.IndexByte(root[open+1:], '}'); end > 0 {
			return nil
		}
	}
	return fmt.Errorf("FLEETJOBS_REDIS_URL is a Redis Cluster, and every read-model key must then hash to one slot (a projection commits a batch and its checkpoint in one MULTI/EXEC): give a root with a hash tag, such as --redis-key-root {%s}", strings.NewReplacer("{", "", "}", "").Replace(root))
}

func checkMQTTURL(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return err
	}
	if !slices.Contains([]string{"mqtt", "mqtts", "tcp", "ssl", "ws", "wss"}, u.Scheme) {
		return fmt.Errorf("scheme %q: want mqtt, mqtts, tcp, ssl, ws or wss", u.Scheme)
	}
	if u.Port() == "" {
		return errors.New("no port: want host:port")
	}
	if p, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || p == 0 {
		return fmt.Errorf("port %q: want a number from 1 to 65535", u.Port())
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// usageError is a mistake on the command line or in the environment: exit
// status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// checkIDFlag refuses, as a usage error, an identifier flag (--job, --id)
// that the domain would refuse: such an ID names nothing in the log.
func checkIDFlag(name, id string) error {
	if err := domain.CheckID("--"+name, id); err != nil {
		return usageErrorf("invalid %v", err)
	}
	return nil
}

// newFlagSet makes a subcommand's flag set. Its output is discarded: parse
// errors and --help are reported by run, to the right stream.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("fleetjobs "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
