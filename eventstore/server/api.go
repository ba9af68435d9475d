package server

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// Log is what the gRPC service needs of the storage engine. *store.Store
// satisfies it; see package store for the exact semantics of each method.
type Log interface {
	Append(ctx context.Context, stream string, exp store.Expected, events []store.Proposed) (store.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from uint64, backwards bool, fn store.ReadFunc) error
	ReadAll(ctx context.Context, from uint64, backwards bool, fn store.ReadFunc) error
	Delete(ctx context.Context, stream string, exp store.Expected) (store.DeleteResult, error)
	Tombstone(ctx context.Context, stream string, exp store.Expected) (store.DeleteResult, error)
	// TombstoneRecord returns the "$streamDeleted" record of a tombstoned
	// stream (a stream subscription delivers it before failing, §6).
	TombstoneRecord(ctx context.Context, stream string) (store.Record, error)
	Head() uint64
	Changed() <-chan struct{}
}

// DefaultMaxAppendSize is KurrentDB's default limit for one append: the sum
// of event type, data and metadata sizes of all its events.
const DefaultMaxAppendSize = 1 << 20

// Version is the KurrentDB version the server reports through
// ServerFeatures. The client parses it as three dot-separated integers.
const Version = "24.10.0"

// Options configure an embedded event store started with Start.
type Options struct {
	Dir           string           // data directory (created if missing, unless ReadOnly); "" with InMemory
	InMemory      bool             // keep everything in memory (benchmark baseline, never for production)
	Listen        string           // host:port; ":0" or "127.0.0.1:0" picks a free port
	MaxAppendSize int              // 0 means DefaultMaxAppendSize
	Logger        *zap.Logger      // nil means zap.NewNop()
	Now           func() time.Time // nil means time.Now; the clock stamped on events
	// ReadOnly serves the existing store in Dir without changing anything
	// in it (store.Options.ReadOnly): appends and deletes are refused with
	// FailedPrecondition, "event store is read-only".
	ReadOnly bool
}
