package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Errors of this package, matched with errors.Is.
var (
	// ErrStreamNotFound: ReadStream of a stream that was never written (or
	// was deleted).
	ErrStreamNotFound = errors.New("stream not found")
	// ErrStreamDeleted: the stream was tombstoned (hard-deleted); it can be
	// neither read nor written again.
	ErrStreamDeleted = errors.New("stream deleted")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("event store client closed")
)

// ConflictError is returned by Append when the stream is not at the expected
// revision: another writer got there first. Reload, decide again, retry.
type ConflictError struct {
	Stream   string
	Expected Revision
	// Actual is where the stream really is: NoStream() when it has no
	// events, else Exact(last revision). Unknown (StreamExists()) only if the
	// server's answer could not be read.
	Actual Revision
	Err    error // the client's error, for the log
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("append %s: wrong expected revision: expected %s, actual %s", e.Stream, e.Expected, e.Actual)
}

// Unwrap returns the official client's error.
func (e *ConflictError) Unwrap() error { return e.Err }

type revisionKind uint8

const (
	revAny revisionKind = iota
	revNoStream
	revStreamExists
	revExact
)

// Revision is what an Append expects of its stream: Any(), NoStream(),
// StreamExists() or Exact(n), n being the revision (0-based) of the stream's
// last event. The zero Revision is Any(), as in the official client.
type Revision struct {
	kind revisionKind
	n    uint64
}

// Any expects nothing: the append always succeeds (unless the stream was
// tombstoned). Use it only for streams without invariants.
func Any() Revision { return Revision{kind: revAny} }

// NoStream expects the stream to have no events yet.
func NoStream() Revision { return Revision{kind: revNoStream} }

// StreamExists expects the stream to have at least one event.
func StreamExists() Revision { return Revision{kind: revStreamExists} }

// Exact expects the stream's last event to be at revision n.
func Exact(n uint64) Revision { return Revision{kind: revExact, n: n} }

// Value returns n and true for Exact(n), else 0 and false.
func (r Revision) Value() (uint64, bool) { return r.n, r.kind == revExact }

// IsNoStream reports whether r is NoStream().
func (r Revision) IsNoStream() bool { return r.kind == revNoStream }

// String renders r as "any", "no_stream", "stream_exists" or the number.
func (r Revision) String() string {
	switch r.kind {
	case revNoStream:
		return "no_stream"
	case revStreamExists:
		return "stream_exists"
	case revExact:
		return strconv.FormatUint(r.n, 10)
	default:
		return "any"
	}
}

// Position is a place in $all, the global order of every event in the log.
// Positions only grow; the position an Append returns is the consistency
// token read models compare against. The zero Position is the start of $all.
type Position struct {
	Commit  uint64
	Prepare uint64
}

// IsZero reports whether p is the start of $all.
func (p Position) IsZero() bool { return p == Position{} }

// Compare orders positions as $all does (commit, then prepare): -1, 0 or +1.
func (p Position) Compare(q Position) int {
	switch {
	case p.Commit < q.Commit:
		return -1
	case p.Commit > q.Commit:
		return 1
	case p.Prepare < q.Prepare:
		return -1
	case p.Prepare > q.Prepare:
		return 1
	}
	return 0
}

// String renders p as KurrentDB does, "C:<commit>/P:<prepare>"; ParsePosition
// reads it back. This is the text of the consistency token.
func (p Position) String() string {
	return "C:" + strconv.FormatUint(p.Commit, 10) + "/P:" + strconv.FormatUint(p.Prepare, 10)
}

// ParsePosition parses what Position.String writes.
func ParsePosition(s string) (Position, error) {
	c, pp, ok := strings.Cut(s, "/")
	if !ok || !strings.HasPrefix(c, "C:") || !strings.HasPrefix(pp, "P:") {
		return Position{}, fmt.Errorf("parse position %q: want C:<commit>/P:<prepare>", s)
	}
	commit, err := strconv.ParseUint(c[2:], 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("parse position %q: commit: %w", s, err)
	}
	prepare, err := strconv.ParseUint(pp[2:], 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("parse position %q: prepare: %w", s, err)
	}
	return Position{Commit: commit, Prepare: prepare}, nil
}

// Event is one event to append.
type Event struct {
	// ID identifies the event; the store recognises a retried append by it,
	// so derive it from the command ID (uuid.NewSHA1) rather than drawing it
	// at random. Required.
	ID uuid.UUID
	// Type is the event type name. Empty means: ask the Client's codec,
	// which must have Data's Go type registered.
	Type string
	// Data is the event's payload: a registered Go value, or any value
	// encoding/json marshals (Type then required), or json.RawMessage /
	// []byte holding JSON, stored verbatim (and checked to be JSON), or
	// Encoded.
	Data any
	// Metadata is stored as the event's user metadata. A zero OccurredAt is
	// stamped with the Client's clock.
	Metadata Metadata
}

// Encoded is event data that Codec.Encode produced (encoding/json's
// output): Append stores it verbatim without checking again that it is
// JSON, which for a job's targeting events is a sixth of the append's CPU.
type Encoded []byte

// AppendResult is the outcome of a successful Append.
type AppendResult struct {
	// Position is where the last appended event landed in $all: hand it to
	// callers as the consistency token. Zero when nothing was written.
	Position Position
	// Next is the revision to expect in the stream's next append:
	// Exact(last revision), or NoStream() if zero events were appended to a
	// stream that does not exist.
	Next Revision
}

// Recorded is one stored event, as reads and subscriptions deliver it.
type Recorded struct {
	Stream   string
	Revision uint64 // 0-based position in Stream
	Position Position
	ID       uuid.UUID
	Type     string
	Data     json.RawMessage // the stored data, verbatim (JSON for every fleetjobs event)
	Metadata Metadata        // parsed from RawMetadata; zero if that is not fleetjobs metadata
	// RawMetadata is the stored user metadata, verbatim.
	RawMetadata json.RawMessage
	RecordedAt  time.Time // when the store committed it (UTC), not when it occurred
}

// Decode turns r's data into the Go value registered for r.Type.
func (r Recorded) Decode(c *Codec) (any, error) {
	ev, err := c.Decode(r.Type, r.Data)
	if err != nil {
		return nil, fmt.Errorf("%s@%d: %w", r.Stream, r.Revision, err)
	}
	return ev, nil
}
