package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
)

// EventStoreConfig is the configuration of `fleetjobs eventstore`.
type EventStoreConfig struct {
	// DataDir is the store's own directory (serve uses
	// FLEETJOBS_DATA_DIR/eventstore), or serve's data directory, whose
	// eventstore subdirectory then holds the store.
	DataDir       string
	Listen        string // host:port
	MaxAppendSize int
	LogLevel      zapcore.Level
}

// eventStoreFlags builds the flag set of `fleetjobs eventstore`. Defaults
// follow serve's variables, so that `fleetjobs eventstore` alone serves the
// data `fleetjobs serve` would use.
func eventStoreFlags(getenv func(string) string) (*flag.FlagSet, func() (EventStoreConfig, error)) {
	fs := newFlagSet("eventstore")
	dataDir := "./data"
	if v, ok := lookup(getenv, "FLEETJOBS_DATA_DIR"); ok {
		dataDir = v
	}
	listen := "127.0.0.1:2113"
	if v, ok := lookup(getenv, "FLEETJOBS_EVENTSTORE_ADDR"); ok {
		listen = v
	}
	level := "info"
	if v, ok := lookup(getenv, "FLEETJOBS_LOG_LEVEL"); ok {
		level = v
	}
	data := fs.String("data", filepath.Join(dataDir, "eventstore"), "the store's directory (created if missing; default $FLEETJOBS_DATA_DIR/eventstore), or serve's data directory (its eventstore subdirectory is used)")
	addr := fs.String("listen", listen, "host:port to listen on ($FLEETJOBS_EVENTSTORE_ADDR)")
	maxAppend := fs.Int("max-append-size", defaultMaxAppendSize, "largest append accepted, in bytes")
	logLevel := fs.String("log-level", level, "log level: debug, info, warn or error ($FLEETJOBS_LOG_LEVEL)")
	return fs, func() (EventStoreConfig, error) {
		c := EventStoreConfig{DataDir: *data, Listen: *addr, MaxAppendSize: *maxAppend}
		if c.DataDir == "" {
			return c, usageErrorf("invalid --data: must not be empty")
		}
		if err := checkHostPort(c.Listen); err != nil {
			return c, usageErrorf("invalid --listen %q: %v", c.Listen, err)
		}
		if c.MaxAppendSize <= 0 {
			return c, usageErrorf("invalid --max-append-size %d: must be positive", c.MaxAppendSize)
		}
		l, err := zapcore.ParseLevel(*logLevel)
		if err != nil {
			return c, usageErrorf("invalid FLEETJOBS_LOG_LEVEL (--log-level) %q: %v", *logLevel, err)
		}
		c.LogLevel = l
		return c, nil
	}
}

// EventStoreMain is the `fleetjobs eventstore` program: the embedded store
// alone.
type EventStoreMain struct {
	Config EventStoreConfig
	Logger *zap.Logger
	store  *server.Embedded
}

// Run starts the store and returns once it listens.
func (m *EventStoreMain) Run(ctx context.Context) error {
	dir, err := newStoreDir(m.Config.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create data directory %s: %w", dir, err)
	}
	st, err := server.Start(ctx, server.Options{
		Dir:           dir,
		Listen:        m.Config.Listen,
		MaxAppendSize: m.Config.MaxAppendSize,
		Logger:        m.Logger,
	})
	if err != nil {
		return eventStoreStartError(dir, err)
	}
	m.store = st
	m.Logger.Info("event store listening", zap.String("addr", st.Addr()), zap.String("url", st.URL()), zap.String("dir", dir))
	return nil
}

// Close stops the store: subscriptions end, in-flight appends finish, the
// data directory is released.
func (m *EventStoreMain) Close() error {
	if m.store == nil {
		return nil
	}
	st := m.store
	m.store = nil
	if err := st.Close(); err != nil {
		return fmt.Errorf("close event store: %w", err)
	}
	return nil
}

// runEventStore is `fleetjobs eventstore`.
func runEventStore(ctx context.Context, stopSignals func(), args []string, getenv func(string) string, stderr io.Writer) error {
	fs, load := eventStoreFlags(getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := load()
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	defer func() { _ = logger.Sync() }()

	m := &EventStoreMain{Config: cfg, Logger: logger}
	if err := m.Run(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	stopSignals()
	logger.Info("shutting down", zap.String("reason", "signal"))
	if err := m.Close(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}
