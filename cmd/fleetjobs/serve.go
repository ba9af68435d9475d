package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/server"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

const defaultMaxAppendSize = server.DefaultMaxAppendSize

// shutdownTimeout bounds how long in-flight HTTP requests may take to finish
// once a shutdown has begun.
const shutdownTimeout = 15 * time.Second

// Main is the `fleetjobs serve` program: it builds every component from a
// Config, runs them, and closes them in order. Tests run it in-process the
// way main does: Run, wait, Close.
type Main struct {
	Config Config
	Logger *zap.Logger
	Now    func() time.Time // the clock stamped on events; nil means time.Now
	NewID  func() string    // command IDs for requests without an Idempotency-Key; nil means random UUIDs
	// Out receives what a person at the terminal should read (the demo's
	// instructions), as plain text; nil means nowhere.
	Out io.Writer

	store     *server.Embedded      // nil when FLEETJOBS_EVENTSTORE_URL is set
	events    *eventstore.Client    // the official client, the only way to the event log
	redis     redis.UniversalClient // the read models
	miniredis *miniredis.Miniredis  // the embedded Redis, nil when FLEETJOBS_REDIS_URL is set
	runner    *projections.Runner   // applies the log to the read models
	stopRun   context.CancelFunc    // ends the runner
	runDone   chan struct{}         // closed when the runner's goroutine returned
	commands  *commands.Handler     // the one command-handling path
	dispatch  *dispatcher           // the dispatcher and its device transport; nil without one
	mqtt      *mqttDevices          // the MQTT transport and embedded broker; nil unless FLEETJOBS_DEVICES=mqtt
	http      *fjhttp.Server        // the HTTP edge
	closed    bool
}

// NewMain returns a Main for cfg that logs to logger.
func NewMain(cfg Config, logger *zap.Logger) *Main {
	return &Main{Config: cfg, Logger: logger, Now: time.Now, NewID: uuid.NewString}
}

// Run starts the components in dependency order and returns once they
// serve: the embedded event store (unless an external one is configured),
// the event store client, Redis (embedded unless configured), the
// projections runner (in the background: it catches up while /readyz says
// so), the command handler, the device transport (the embedded MQTT broker
// unless FLEETJOBS_MQTT_URL is set, and the MQTT connection; or the
// simulated fleet) and the dispatcher over it (in the background too; none
// with FLEETJOBS_DEVICES=none), the demo fleet (--demo) and the HTTP
// server. On error, what was started is closed again.
func (m *Main) Run(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()
	if m.Now == nil {
		m.Now = time.Now
	}
	if m.NewID == nil {
		m.NewID = uuid.NewString
	}
	cfg := m.Config
	url := cfg.EventStoreURL
	if url == "" {
		dir := cfg.EventStoreDir()
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create data directory %s: %w", dir, err)
		}
		m.store, err = server.Start(ctx, server.Options{
			Dir:           dir,
			Listen:        cfg.EventStoreAddr,
			MaxAppendSize: cfg.MaxAppendSize,
			Logger:        m.Logger.Named("eventstore"),
			Now:           m.Now,
		})
		if err != nil {
			return eventStoreStartError(dir, err)
		}
		url = m.store.URL()
		m.Logger.Info("embedded event store listening", zap.String("addr", m.store.Addr()), zap.String("url", url), zap.String("dir", dir))
	} else {
		m.Logger.Info("using an external event store", zap.String("url", redactURL(url)))
	}

	codec := eventstore.NewCatalogCodec()
	m.events, err = eventstore.Dial(url, eventstore.WithLogger(m.Logger.Named("esdb")), eventstore.WithClock(m.Now), eventstore.WithCodec(codec))
	if err != nil {
		return fmt.Errorf("event store client: %w", err)
	}

	m.redis, m.miniredis, err = openRedis(cfg.RedisURL)
	if err != nil {
		return err
	}
	if m.miniredis != nil {
		m.Logger.Info("embedded Redis started: the read models are rebuilt from the event log", zap.String("addr", m.miniredis.Addr()))
	} else {
		m.Logger.Info("using Redis for the read models", zap.String("url", redactURL(cfg.RedisURL)))
	}

	root := cfg.KeyRoot()
	// No Version: the runner writes the active versions and follows
	// `fleetjobs rebuild` when it switches them.
	writer, err := projections.NewWriter(m.redis, m.Logger.Named("projections"), root,
		projections.Target{Projector: projections.NewDevicesProjector(0)},
		projections.Target{Projector: projections.NewJobsProjector()})
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	m.runner, err = projections.NewRunner(projections.RunnerConfig{
		Store: m.events, Codec: codec, Writer: writer, Logger: m.Logger.Named("projections"), Now: m.Now,
	})
	if err != nil {
		return fmt.Errorf("projections: %w", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	m.stopRun, m.runDone = stop, make(chan struct{})
	go func() {
		defer close(m.runDone)
		// Run retries every failure itself and reports it through
		// Status (readyz, metrics); it returns only when stopped.
		_ = m.runner.Run(runCtx)
	}()

	m.commands = commands.New(m.events, codec, m.Now, m.NewID, m.Logger.Named("commands"), commands.WithDeviceKeys(drawDeviceKey))

	metrics := fjhttp.NewMetrics()
	if err := registerProjectionMetrics(metrics, m.runner); err != nil {
		return err
	}
	checks := []fjhttp.Check{
		{Name: "event log", Check: m.events.Ping},
		{Name: "redis", Check: func(ctx context.Context) error { return m.redis.Ping(ctx).Err() }},
		{Name: "projections", Check: m.projectionsReady},
	}
	dcfg := dispatch.Config{
		Events: m.events, Codec: codec, Outcomes: outcomes{m.commands},
		Checkpoints: &redisCheckpoints{rdb: m.redis, key: dispatchCheckpointKey(root)},
		Now:         m.Now, NewID: m.NewID, Logger: m.Logger.Named("dispatch"),
	}
	answers := make(chan []dispatch.Answer, 64)
	var transport deviceTransport
	switch cfg.Devices {
	case devicesSim:
		fleet := sim.New(&deviceProperties{rdb: m.redis, root: root, applied: m.runner}, answers, sim.Config{Now: m.Now})
		if err := registerSimMetrics(metrics, fleet); err != nil {
			return err
		}
		transport = fleet
		m.Logger.Info("dispatching jobs to the simulated fleet (FLEETJOBS_DEVICES=sim)")
	case devicesMQTT:
		m.mqtt, err = startMQTT(ctx, cfg, m.commands, m.events, answers, m.Logger.Named("mqtt"))
		if err != nil {
			return err
		}
		if err := registerMQTTMetrics(metrics, m.mqtt.transport, m.mqtt.broker); err != nil {
			return err
		}
		checks = append(checks, fjhttp.Check{Name: "mqtt", Check: m.mqtt.ready})
		transport = m.mqtt.transport
		m.Logger.Info("dispatching jobs to devices over MQTT", zap.String("broker", m.mqtt.url))
	default:
		m.Logger.Warn("no device transport (FLEETJOBS_DEVICES=none): this instance dispatches nothing; jobs stay pending unless an instance with a device transport runs on the same event log and Redis")
	}
	if transport != nil {
		// Its lease is made once HTTP listens, below.
		if m.dispatch, err = newDispatcher(dcfg, transport, answers, nil); err != nil {
			return err
		}
		if err := registerDispatchMetrics(metrics, m.dispatch); err != nil {
			return err
		}
		checks = append(checks, fjhttp.Check{Name: "dispatcher", Check: m.dispatch.ready})
	}
	if cfg.Demo {
		if _, err := seedDemo(ctx, m.commands, m.Logger.Named("demo")); err != nil {
			return err
		}
	}
	waiter := &runnerWaiter{runner: m.runner}
	// The queries keep rendered job pages while the runner's applied
	// position stays put: a request with a consistency token has waited
	// for the runner first, so it never gets a page older than its write.
	// They read the versions the runner writes, so a rebuild's switch
	// never shows them a version older than the runner's position.
	readModels := projections.NewQueries(m.redis, root, m.Now, projections.WithApplied(m.runner.Position),
		projections.WithVersions(m.runner.Version))
	queries := &deviceQueries{q: readModels, rdb: m.redis, root: root}

	m.http = fjhttp.NewServer(fjhttp.Config{
		Addr:           cfg.HTTPAddr,
		Logger:         m.Logger.Named("http"),
		Checks:         checks,
		APIKeys:        cfg.APIKeys,
		Metrics:        metrics,
		Waiter:         waiter,
		DeviceCommands: &deviceCommands{h: m.commands, queries: queries, waiter: waiter, noteWait: fjhttp.DefaultConsistencyWait},
		DeviceQueries:  queries,
		JobCommands:    &jobCommands{h: m.commands, q: readModels, events: m.events, codec: codec},
		JobQueries:     &jobQueries{q: readModels},
		JobHistory:     &jobHistory{events: m.events},
		Now:            m.Now,
		NewID:          m.NewID,
		Unavailable:    unreachable,
	})
	if err := m.http.Open(); err != nil {
		m.http = nil
		return err
	}
	m.Logger.Info("serving HTTP", zap.String("addr", m.http.Addr()), zap.String("url", m.http.URL()))
	if m.dispatch != nil {
		// The lease's holder is where HTTP listens (leaseHolder).
		ttl := cfg.DispatchLease
		if ttl <= 0 {
			ttl = defaultDispatchLease
		}
		m.dispatch.lease = newLease(m.redis, root, leaseHolder(m.http.Addr()), ttl)
		m.dispatch.start()
	}
	if cfg.Demo {
		m.Logger.Info("demo fleet: the API is here", zap.String("api", m.http.URL()+fjhttp.APIBase))
		printDemo(m.Out, m.http.URL(), cfg.Devices == devicesSim)
	}
	return nil
}

// projectionsReady is the readiness of the read models: the runner has
// applied the history and is not recovering from a failure. With the
// embedded Redis this is false until the rebuild at start is done.
func (m *Main) projectionsReady(context.Context) error {
	st := m.runner.Status()
	switch {
	case st.Err != nil:
		return fmt.Errorf("failing, retrying from %s: %w", st.Position, st.Err)
	case !st.CaughtUp:
		return fmt.Errorf("catching up with the event log (applied up to %s)", st.Position)
	}
	return nil
}

// eventStoreStartError says plainly when the data directory is taken, the
// usual mistake (a second instance on the same data).
func eventStoreStartError(dir string, err error) error {
	if errors.Is(err, store.ErrLocked) {
		return fmt.Errorf("data directory %s is in use by another process (another fleetjobs serve or eventstore, or an export, replay or rebuild reading it with --data?): %w", dir, err)
	}
	return fmt.Errorf("embedded event store in %s: %w", dir, err)
}

// HTTPURL is the base URL of the HTTP server, once Run succeeded.
func (m *Main) HTTPURL() string { return m.http.URL() }

// EventStoreURL is the connection string of the event log in use, once Run
// succeeded.
func (m *Main) EventStoreURL() string {
	if m.store != nil {
		return m.store.URL()
	}
	return m.Config.EventStoreURL
}

// MQTTURL is the MQTT broker devices connect to (without credentials), once
// Run succeeded with FLEETJOBS_DEVICES=mqtt; "" otherwise.
func (m *Main) MQTTURL() string {
	if m.mqtt == nil {
		return ""
	}
	return m.mqtt.url
}

// HTTPErr delivers an error if the HTTP server stops on its own.
func (m *Main) HTTPErr() <-chan error {
	if m.http == nil {
		return nil
	}
	return m.http.Err()
}

// Close shuts down in dependency order: stop accepting HTTP requests and let
// those in flight finish, stop the dispatcher (it sends commands, so before
// the handler; what it left unanswered is resent at the next start), close
// the MQTT connection and the embedded broker (which checks device keys
// through the handler), stop the command handler's per-job workers (an
// append in flight ends first), stop the projections runner (its batch in
// flight commits or is abandoned whole), then Redis, the event store client
// and the embedded store (which ends its subscriptions and lets in-flight
// appends finish). Close is safe to call more than once.
func (m *Main) Close() error {
	if m.closed {
		return nil
	}
	m.closed = true
	var errs []error
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		errs = append(errs, m.http.Shutdown(ctx))
		cancel()
	}
	if m.dispatch != nil {
		m.dispatch.close()
	}
	if m.mqtt != nil {
		// Before the command handler: the broker checks keys through it.
		if err := m.mqtt.close(); err != nil {
			errs = append(errs, fmt.Errorf("close MQTT: %w", err))
		}
	}
	if m.commands != nil {
		if err := m.commands.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close command handler: %w", err))
		}
	}
	if m.stopRun != nil {
		m.stopRun()
		<-m.runDone
	}
	if m.redis != nil {
		if err := m.redis.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close redis client: %w", err))
		}
	}
	if m.miniredis != nil {
		m.miniredis.Close()
	}
	if m.events != nil {
		errs = append(errs, m.events.Close())
	}
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close embedded event store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// The garbage collector's settings for serve, unless the environment sets
// GOGC or GOMEMLIMIT (the Go runtime's own variables, which then apply as
// they are).
const (
	// serveGCPercent: a running job allocates a few hundred bytes per
	// device and message that die at once; at Go's default of 100 the
	// collector took about an eighth of the CPU of a 100,000-device job
	// (CPU profile), and at 300 it runs about a third as often: the job
	// took 4.85-4.98 s instead of 5.80-5.89 s (BENCHMARKS.md, "Dispatch").
	serveGCPercent = 300
	// serveMemoryLimit bounds what serveGCPercent lets the heap grow to:
	// near it the collector runs as often as it must. It is a soft limit
	// on the Go heap, not the process: set GOMEMLIMIT to about 70% of the
	// memory the service may use.
	serveMemoryLimit = 1 << 30
)

// serveProcsPerCPU is how many Go processors (threads running Go code at
// once, GOMAXPROCS) serve runs per CPU, unless the environment sets
// GOMAXPROCS. serve spends much of its
// time in system calls: the embedded store's log syncs (fdatasync, about
// a tenth of a millisecond each) and a system call per packet on sockets.
// A thread in a system call keeps its processor until the runtime notices
// and hands it over, so with one processor per CPU a core sat idle while
// work waited: a 100,000-device import used 143% of two cores and took
// 7.1-7.4 s, against 5.7 s with two processors per CPU; MQTT round trips
// rose 8% (BENCHMARKS.md). Reading the log for a rebuild, which is CPU
// bound, was unchanged.
const serveProcsPerCPU = 2

// serveRuntime applies serveGCPercent, serveMemoryLimit and
// serveProcsPerCPU where the environment does not set its own.
func serveRuntime() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(serveGCPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(serveMemoryLimit)
	}
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		// The default already follows the CPUs this process may use (its
		// affinity and cgroup limit).
		runtime.GOMAXPROCS(serveProcsPerCPU * runtime.GOMAXPROCS(0))
	}
}

// runServe is `fleetjobs serve`.
func runServe(ctx context.Context, stopSignals func(), args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := LoadConfig(args, getenv)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	defer func() { _ = logger.Sync() }()
	serveRuntime()
	routeRedisLogs(logger)

	m := NewMain(cfg, logger)
	m.Out = stderr
	if err := m.Run(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		logger.Info("shutting down", zap.String("reason", "signal"))
	case err := <-m.HTTPErr():
		logger.Error("HTTP server stopped", zap.Error(err))
		return errors.Join(err, m.Close())
	}
	stopSignals()
	if err := m.Close(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
