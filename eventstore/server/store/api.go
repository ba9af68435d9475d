package store

// This file is the contract between the storage engine (this package) and the
// gRPC layer (package server). The gRPC layer translates protobuf messages to
// these types and back; every stream-level rule of KurrentDB (expected
// revisions, idempotent retries, metastreams, soft delete, tombstone,
// $maxCount/$maxAge/$tb truncation) lives here, so that it is tested once,
// without gRPC, and the server stays a thin translation.

import (
	"errors"
	"fmt"
	"time"
)

// TombstoneRevision is the revision at which a hard-deleted stream's
// "$streamDeleted" event is recorded, and the "$tb" value a soft delete writes.
const TombstoneRevision uint64 = 9223372036854775807 // math.MaxInt64

// Event types the store itself writes.
const (
	TypeMetadata      = "$metadata"      // the events of a $$X metastream
	TypeStreamDeleted = "$streamDeleted" // a tombstone
)

// End is the revision or position meaning "from the end" in a read.
const End uint64 = ^uint64(0)

// ExpectedKind says what an append, delete or tombstone expects of the stream.
type ExpectedKind uint8

// The expected-revision kinds of the protocol.
const (
	ExpectAny ExpectedKind = iota
	ExpectNoStream
	ExpectStreamExists
	ExpectRevision
)

// Expected is an expected stream revision. Revision is used only with
// ExpectRevision.
type Expected struct {
	Kind     ExpectedKind
	Revision uint64
}

// String renders the expectation as KurrentDB's int64 convention would
// (-1 no stream, -2 any, -4 stream exists, else the revision).
func (e Expected) String() string {
	switch e.Kind {
	case ExpectNoStream:
		return "-1"
	case ExpectAny:
		return "-2"
	case ExpectStreamExists:
		return "-4"
	default:
		return fmt.Sprint(e.Revision)
	}
}

// Proposed is one event offered to Append.
type Proposed struct {
	ID       [16]byte // RFC 4122 bytes; the nil UUID is refused
	Type     string   // required, non-empty
	JSON     bool     // content type application/json (else application/octet-stream)
	Data     []byte
	Metadata []byte // the user's custom metadata bytes, stored verbatim
}

// Record is one stored event as reads and subscriptions return it.
//
// The byte slices of a Record handed to a read callback are valid only during
// the callback: copy them to keep them.
type Record struct {
	Stream   string
	Revision uint64
	Position uint64 // unique, > 0, strictly increasing in $all order; commit == prepare == Position
	ID       [16]byte
	Type     string
	JSON     bool
	Created  time.Time // when the store committed it (UTC)
	Data     []byte
	Metadata []byte
}

// AppendResult is the outcome of a successful append.
//
// When zero events were appended to a stream that does not exist, NoStream is
// true and the other fields are zero. Otherwise LastRevision is the stream's
// last revision and Position the position of the last event written (for an
// idempotent retry: of the original append).
type AppendResult struct {
	NoStream     bool
	LastRevision uint64
	Position     uint64
}

// DeleteResult is the outcome of Delete or Tombstone: the position of the
// record the store wrote ($metadata in $$X for a soft delete, $streamDeleted
// in X for a tombstone). Always > 0.
type DeleteResult struct {
	Position uint64
}

// WrongExpectedVersionError is returned by Append, Delete and Tombstone when
// the stream is not where the caller expected.
type WrongExpectedVersionError struct {
	Stream   string
	Expected Expected
	// CurrentNoStream is true when the stream has no events (or never
	// existed); otherwise CurrentRevision is its last revision.
	CurrentNoStream bool
	CurrentRevision uint64
}

func (e *WrongExpectedVersionError) Error() string {
	cur := "no stream"
	if !e.CurrentNoStream {
		cur = fmt.Sprint(e.CurrentRevision)
	}
	return fmt.Sprintf("wrong expected version on %q: expected %s, current %s", e.Stream, e.Expected, cur)
}

// StreamDeletedError is returned for every operation on a tombstoned stream
// (and its $$ metastream), and by Append with ExpectStreamExists on a
// soft-deleted stream. Stream is the name the caller used.
type StreamDeletedError struct {
	Stream string
}

func (e *StreamDeletedError) Error() string {
	return fmt.Sprintf("Event stream '%s' is deleted.", e.Stream)
}

// Errors the store returns, matched with errors.Is.
var (
	// ErrStreamNotFound: a read of a stream that was never written, or that is
	// soft-deleted and not recreated.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrInvalidArgument wraps bad input (empty stream name, nil event ID,
	// empty event type, "$all" as a stream name...). Nothing is written.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrClosed: the store is closing or closed.
	ErrClosed = errors.New("event store closed")
	// ErrLocked: another process holds the data directory.
	ErrLocked = errors.New("data directory is in use by another process")
	// ErrReadOnly: a write to a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("event store is read-only")
)

// ReadFunc receives records in order; returning false stops the read early
// without error.
type ReadFunc func(Record) bool

// The methods *Store provides (implemented in store.go):
//
//	Open(opts Options) (*Store, error)
//	(*Store).Append(ctx, stream string, exp Expected, events []Proposed) (AppendResult, error)
//	(*Store).ReadStream(ctx, stream string, from uint64, backwards bool, fn ReadFunc) error
//	(*Store).ReadAll(ctx, from uint64, backwards bool, fn ReadFunc) error
//	(*Store).Delete(ctx, stream string, exp Expected) (DeleteResult, error)
//	(*Store).Tombstone(ctx, stream string, exp Expected) (DeleteResult, error)
//	(*Store).TombstoneRecord(ctx, stream string) (Record, error) // the "$streamDeleted" record, read.go
//	(*Store).Head() uint64            // position of the last committed event, 0 when empty
//	(*Store).Changed() <-chan struct{} // closed at the next commit after the call
//	(*Store).Close() error
