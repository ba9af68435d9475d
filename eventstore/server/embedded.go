package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"go.uber.org/zap"
)

// Embedded is a running event store: the Pebble-backed log and the gRPC
// server in front of it.
type Embedded struct {
	addr     string
	logger   *zap.Logger
	srv      *Server
	store    storeCloser
	serving  chan struct{} // closed when Serve has returned
	serveErr error         // Serve's error, set before serving is closed

	closeOnce sync.Once
	closeErr  error
}

// storeCloser is the Log that Start opens, which Close must close.
type storeCloser interface {
	Log
	Close() error
}

// Start opens the log in opts.Dir, listens on opts.Listen and serves the
// KurrentDB gRPC protocol until Close. It fails at once, with store.ErrLocked
// in the chain, when another process holds the data directory.
func Start(ctx context.Context, opts Options) (*Embedded, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start event store: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	st, err := openStore(opts, logger)
	if err != nil {
		return nil, fmt.Errorf("start event store: %w", err)
	}
	listen := opts.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("start event store: listen %s: %w", listen, err), st.Close())
	}
	e := &Embedded{
		addr:   lis.Addr().String(),
		logger: logger,
		store:  st,
		srv: New(st, Config{
			MaxAppendSize: opts.MaxAppendSize,
			Logger:        logger,
			Now:           opts.Now,
			AdvertiseAddr: lis.Addr().String(),
		}),
		serving: make(chan struct{}),
	}
	go func() {
		defer close(e.serving)
		if err := e.srv.Serve(lis); err != nil {
			// Logged now, since the process may run on without serving,
			// and returned by Close.
			e.serveErr = err
			logger.Error("event store stopped serving", zap.Error(err))
		}
	}()
	// That it listens is said by the caller, which knows what it serves it
	// for (fleetjobs serve and fleetjobs eventstore each log it once).
	return e, nil
}

// Addr is the host:port the server listens on.
func (e *Embedded) Addr() string { return e.addr }

// URL is the connection string for the official client: esdb://ADDR?tls=false.
func (e *Embedded) URL() string { return "esdb://" + e.addr + "?tls=false" }

// Close stops accepting connections, ends subscriptions, lets in-flight
// appends finish, then closes the log. Its error also reports a listener
// failure that had stopped the server earlier. It is safe to call more
// than once; every call returns the first call's result.
func (e *Embedded) Close() error {
	e.closeOnce.Do(func() {
		e.srv.Shutdown()
		<-e.serving
		var serveErr, storeErr error
		if e.serveErr != nil {
			serveErr = fmt.Errorf("event store stopped serving: %w", e.serveErr)
		}
		if err := e.store.Close(); err != nil {
			storeErr = fmt.Errorf("close event store: %w", err)
		}
		e.closeErr = errors.Join(serveErr, storeErr)
	})
	return e.closeErr
}
