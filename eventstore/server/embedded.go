package server

import (
	"context"
	"errors"
)

// Embedded is a running event store: the Pebble-backed log and the gRPC
// server in front of it.
type Embedded struct {
	addr string
}

// Start opens the log in opts.Dir, listens on opts.Listen and serves the
// KurrentDB gRPC protocol until Close. It fails at once, with store.ErrLocked
// in the chain, when another process holds the data directory.
func Start(ctx context.Context, opts Options) (*Embedded, error) {
	return nil, errors.New("TODO: not implemented yet")
}

// Addr is the host:port the server listens on.
func (e *Embedded) Addr() string { return e.addr }

// URL is the connection string for the official client: esdb://ADDR?tls=false.
func (e *Embedded) URL() string { return "esdb://" + e.addr + "?tls=false" }

// Close stops accepting connections, ends subscriptions, lets in-flight
// appends finish, then closes the log.
func (e *Embedded) Close() error { return nil }
