package commands

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ErrTooLargeToRecord is returned (wrapped) for a command whose event would
// weigh more than one append to the event store may carry: the caller's
// input (a long property value, a large operation), not a failure of the
// store.
var ErrTooLargeToRecord = errors.New("too large to record")

// Store is what the command path needs of the event log.
// *eventstore.Client satisfies it.
type Store interface {
	Append(ctx context.Context, stream string, expected eventstore.Revision, events []eventstore.Event) (eventstore.AppendResult, error)
	ReadStream(ctx context.Context, stream string, from uint64, fn func(eventstore.Recorded) error) error
	SubscribeAll(ctx context.Context, from eventstore.Position, filter eventstore.Filter, h eventstore.Handler) error
}

// Meta says who asked for a command and why; it becomes every recorded
// event's metadata (with occurredAt from the Handler's clock).
type Meta struct {
	// CommandID identifies the command: event IDs derive from it, and a
	// command whose ID is already recorded on its stream is not decided
	// again (its original position is returned). Give the same ID when
	// retrying a request (an Idempotency-Key); empty: the Handler draws one.
	CommandID string
	// CorrelationID groups the commands of one conversation. Default:
	// CommandID.
	CorrelationID string
	// CausationID is the message that caused the command. Default:
	// CommandID.
	CausationID string
	// Actor is who asked (an API key's name, "dispatcher"...).
	Actor string
}

// Result is the outcome of a command that was accepted.
type Result struct {
	// Position is the consistency token: where the command's last event
	// landed in $all or, when nothing was recorded, the position of the
	// stream's last event (zero for a stream without events). A query that
	// waits for read models to reach it sees the command's effect.
	Position eventstore.Position
	// Events is how many events this call recorded: 0 when the command
	// changed nothing or was already recorded under the same command ID.
	Events int
	// Created is true when the call recorded the stream's first events.
	Created bool
	// DeviceKey is the device key this call issued (registering a new
	// device, IssueDeviceKey), to be shown once; empty otherwise.
	DeviceKey string
	// Reason is, for StopJob, the reason the job's JobStopped recorded:
	// the domain's (trimmed, or job.DefaultStopReason), this call's or,
	// for a retry under the same command ID, the first call's. Empty
	// otherwise.
	Reason string
}

// Handler runs commands: the one command-handling path of fleetjobs. It is
// safe for concurrent use.
type Handler struct {
	store       Store
	codec       *eventstore.Codec
	now         func() time.Time
	newID       func() string
	logger      *zap.Logger
	cache       *cache
	maxAttempts int
	workers     int
	// maxAppendBytes bounds one append (DefaultMaxAppendBytes).
	maxAppendBytes int
	// jobs runs the per-job workers (jobworker.go).
	jobs *jobWorkers
	// drawKey draws device keys (WithDeviceKeys); nil issues none.
	drawKey KeyDrawer
}

// Option configures a Handler.
type Option func(*Handler)

// WithMaxAttempts sets how many times a command is decided and appended
// before a run of concurrency conflicts is given up as a CodeConflict error.
// Default 5.
func WithMaxAttempts(n int) Option {
	return func(h *Handler) {
		if n > 0 {
			h.maxAttempts = n
		}
	}
}

// WithWorkers sets how many streams an import loads and appends to
// concurrently. Default 64: appends of single events are bound by round
// trips, not CPU.
func WithWorkers(n int) Option {
	return func(h *Handler) {
		if n > 0 {
			h.workers = n
		}
	}
}

// WithMaxAppendBytes bounds what one append carries (event types, data and
// metadata): set it below the store's limit if that was lowered. Default
// DefaultMaxAppendBytes.
func WithMaxAppendBytes(n int) Option {
	return func(h *Handler) {
		if n > 0 {
			h.maxAppendBytes = n
		}
	}
}

// New returns a Handler appending to store. codec must know every event the
// handled aggregates record; now stamps occurredAt; newID draws command IDs
// for commands that come without one; logger may be nil.
func New(store Store, codec *eventstore.Codec, now func() time.Time, newID func() string, logger *zap.Logger, opts ...Option) *Handler {
	if logger == nil {
		logger = zap.NewNop()
	}
	h := &Handler{
		store:       store,
		codec:       codec,
		now:         now,
		newID:       newID,
		logger:      logger,
		cache:       newCache(100_000),
		maxAttempts: 5,
		workers:     64,

		maxAppendBytes: DefaultMaxAppendBytes,
		jobs:           newJobWorkers(),
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// aggregate is what the path needs to know of one kind of aggregate: its
// Decider. S is its state, C its commands, E its events.
type aggregate[S, C, E any] struct {
	kind   string // for messages: "template", "device"...
	decide func(S, C) ([]E, error)
	evolve func(S, E) S
	// incomplete, when set, reports a state whose latest command may not
	// have recorded all of its events (a job whose targeting was cut
	// short): a retry under the same command ID is then decided again, to
	// finish it, instead of being answered from the snapshot's marks.
	incomplete func(S) bool
}

// decideFunc decides one command on a state: the events to record, and the
// index among all the command's events of the first of them (non-zero when
// it finishes an interrupted earlier try, so that every event keeps the ID
// it would have had).
type decideFunc[S, E any] func(S) (events []E, first int, err error)

// fill defaults a command's metadata.
func (h *Handler) fill(m Meta) Meta {
	if m.CommandID == "" {
		m.CommandID = h.newID()
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.CommandID
	}
	if m.CausationID == "" {
		m.CausationID = m.CommandID
	}
	return m
}

// handle is THE command path for the aggregates whose states the shared
// cache may hold: the cached snapshot (if any) goes through run, and what
// run ends with is cached.
func handle[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, cmd C, meta Meta) (Result, error) {
	res, snap, err := run(ctx, h, agg, stream, h.cache.get(stream), meta, func(s S) ([]E, int, error) {
		events, err := agg.decide(s, cmd)
		return events, 0, err
	})
	if snap != nil {
		h.cache.put(stream, snap)
	}
	return res, err
}

// run is the load, decide, append, retry loop of one command on stream,
// starting from snap (nil: read the stream). It returns the latest
// snapshot it knows, to keep (nil when it knows none it can vouch for: a
// read failed half-way, which may have left a mutable state changed).
//
// A decision taken on a snapshot that was not just read and not guarded by
// an append (zero events, or a refusal) is checked against the stream
// first: another instance may have written since the snapshot was taken.
// On a concurrency conflict it catches up and decides again, up to
// maxAttempts times.
func run[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, snap *snapshot, meta Meta, decide decideFunc[S, E]) (Result, *snapshot, error) {
	fresh := snap == nil
	if fresh {
		var err error
		if snap, err = catchUp(ctx, h, agg, stream, &snapshot{state: *new(S)}); err != nil {
			return Result{}, nil, err
		}
	}
	for attempt := 1; ; attempt++ {
		state := snap.state.(S)
		if pos, done := snap.recorded(meta.CommandID); done && (agg.incomplete == nil || !agg.incomplete(state)) {
			return Result{Position: pos}, snap, nil
		}
		events, first, err := decide(state)
		if (err != nil || len(events) == 0) && !fresh {
			if snap, err = catchUp(ctx, h, agg, stream, snap); err != nil {
				return Result{}, nil, err
			}
			fresh = true
			attempt--
			continue
		}
		if err != nil {
			return Result{}, snap, fmt.Errorf("%s %s: %w", agg.kind, stream, err)
		}
		if len(events) == 0 {
			return Result{Position: snap.pos}, snap, nil
		}
		res, next, err := appendFrom(ctx, h, agg, stream, snap, events, first, meta)
		snap = next // what landed, even if a later part of the command did not
		var conflict *eventstore.ConflictError
		if errors.As(err, &conflict) {
			if attempt >= h.maxAttempts {
				return Result{}, snap, fmt.Errorf("%s: %w (%w)", stream,
					domain.Conflict("%s %s kept changing while the command was decided (%d attempts); try again", agg.kind, stream, attempt), err)
			}
			h.logger.Debug("concurrency conflict: catching up and deciding again",
				zap.String("stream", stream), zap.Int("attempt", attempt), zap.Stringer("actual", conflict.Actual))
			if snap, err = catchUp(ctx, h, agg, stream, snap); err != nil {
				return Result{}, nil, err
			}
			fresh = true
			continue
		}
		if err != nil {
			return Result{}, snap, err
		}
		return res, snap, nil
	}
}

// appendEvents appends events decided on snap and returns the result and
// the snapshot after them.
func appendEvents[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, snap *snapshot, events []E, meta Meta) (Result, *snapshot, error) {
	res, next, err := appendFrom(ctx, h, agg, stream, snap, events, 0, meta)
	if err != nil {
		return Result{}, nil, err
	}
	return res, next, nil
}

// appendFrom appends events decided on snap, the first being the command's
// first-th event, and returns the result and the snapshot after them.
//
// Events that do not fit one append (the store refuses more than
// maxAppendBytes of types, data and metadata at once) go in several
// appends, each expecting the revision the previous one ended at: a job's
// targeting of a million devices is some 50 MiB. They are not atomic
// together, so on an error the returned snapshot is the one after the
// appends that landed (snap itself if none did) and the Result is zero;
// the command's next try continues from there (see aggregate.incomplete).
func appendFrom[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, snap *snapshot, events []E, first int, meta Meta) (Result, *snapshot, error) {
	batch, sizes, err := envelope(h, stream, meta, events, first)
	if err != nil {
		return Result{}, snap, err
	}
	parts, err := splitAppend(sizes, nil, h.maxAppendBytes)
	if err != nil {
		return Result{}, snap, fmt.Errorf("%s: %w", stream, err)
	}
	res := Result{Created: !snap.exists}
	cur := snap
	lo := 0
	for _, hi := range parts {
		ar, err := h.store.Append(ctx, stream, cur.expected(), batch[lo:hi])
		if err != nil {
			return Result{}, cur, err
		}
		// States may be mutable (a job's): evolve only what landed.
		state := cur.state.(S)
		for _, ev := range events[lo:hi] {
			state = agg.evolve(state, ev)
		}
		rev, _ := ar.Next.Value()
		next := &snapshot{state: state, exists: true, rev: rev, pos: ar.Position, marks: cur.marks}
		next.mark(meta.CommandID, ar.Position)
		cur = next
		res.Position = ar.Position
		res.Events += hi - lo
		lo = hi
	}
	return res, cur, nil
}

// envelope turns decided events into events to append: type and data from
// the codec, metadata from meta, IDs derived from the command ID (the
// first event being the command's first-th). sizes are what each weighs
// against the store's append limit.
func envelope[E any](h *Handler, stream string, meta Meta, events []E, first int) (out []eventstore.Event, sizes []int, err error) {
	md := eventstore.Metadata{
		CommandID:     meta.CommandID,
		CorrelationID: meta.CorrelationID,
		CausationID:   meta.CausationID,
		Actor:         meta.Actor,
		OccurredAt:    h.now(),
	}
	mdSize := metadataSize(md)
	out = make([]eventstore.Event, len(events))
	sizes = make([]int, len(events))
	for i, ev := range events {
		name, data, err := h.codec.Encode(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", stream, err)
		}
		out[i] = eventstore.Event{ID: eventID(meta.CommandID, stream, first+i, ev), Type: name, Data: eventstore.Encoded(data), Metadata: md}
		sizes[i] = len(name) + len(data) + mdSize
	}
	return out, sizes, nil
}

// metadataSize is how many bytes md weighs in an append: the store counts
// the user metadata as stored, which is md's JSON.
func metadataSize(md eventstore.Metadata) int {
	var scratch [256]byte
	return len(md.AppendJSON(scratch[:0]))
}

// DefaultMaxAppendBytes is the most one append carries (event types, data
// and metadata, as KurrentDB counts them): its default limit of 1 MiB,
// less a margin for a server that counts a little differently.
const DefaultMaxAppendBytes = 1<<20 - 16<<10

// splitAppend cuts events of the given sizes into consecutive appends of at
// most limit bytes each, returning where each append ends. An event whose
// glued flag is set stays in the append of the event before it (a job's
// Completed with the result that brought it). A single event, or glued
// run, above the limit can never be appended: an error.
func splitAppend(sizes []int, glued []bool, limit int) ([]int, error) {
	var ends []int
	sum := 0            // bytes of the current append
	run, runSum := 0, 0 // where the run of glued events i belongs to starts, and its bytes
	for i, n := range sizes {
		if i == 0 || glued == nil || !glued[i] {
			run, runSum = i, 0
		}
		runSum += n
		if runSum > limit {
			return nil, fmt.Errorf("%w: event %d (with the events it must be appended with) weighs %d bytes, more than the %d one append may carry", ErrTooLargeToRecord, run, runSum, limit)
		}
		if sum+n > limit {
			// Close the current append before the run this event
			// belongs to.
			ends = append(ends, run)
			sum = runSum - n
		}
		sum += n
	}
	if len(sizes) > 0 {
		ends = append(ends, len(sizes))
	}
	return ends, nil
}

// eventIDSpace is the UUID namespace of event IDs (a fixed random UUID:
// changing it would stop retries of old commands from being recognised).
func eventIDSpace() uuid.UUID {
	return uuid.UUID{0x6f, 0x1c, 0x2a, 0x5e, 0x93, 0x47, 0x4b, 0x0d, 0xa1, 0x52, 0x0e, 0x8b, 0x3c, 0x7d, 0x19, 0xf4}
}

// EventID is the ID of the index-th event (0-based) a command records on a
// stream: a version 5 UUID of the command ID, the stream and the index. The
// same command retried gets the same IDs, which the store recognises; one
// command over many streams (an import) gets distinct IDs on each.
//
// It is uuid.NewSHA1 computed without allocating: a job's results take one
// ID each, a million per job.
func EventID(commandID, stream string, index int) uuid.UUID {
	var scratch [160]byte // namespace, command ID, stream, index: room for most without allocating
	space := eventIDSpace()
	buf := append(scratch[:0], space[:]...)
	buf = append(buf, commandID...)
	buf = append(buf, 0)
	buf = append(buf, stream...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(index), 10)
	sum := sha1.Sum(buf)
	var id uuid.UUID
	copy(id[:], sum[:len(id)])
	id[6] = id[6]&0x0f | 0x50 // version 5 (name-based, SHA-1)
	id[8] = id[8]&0x3f | 0x80 // RFC 4122 variant
	return id
}

// catchUp returns snap with the stream's events after it applied: the
// whole stream for an empty snapshot. The caller decides whether to cache
// the result. A mutable state (a job's) is changed in place, so on an error
// the caller must drop snap as well.
func catchUp[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, snap *snapshot) (*snapshot, error) {
	from := uint64(0)
	if snap.exists {
		from = snap.rev + 1
	}
	next := &snapshot{state: snap.state, exists: snap.exists, rev: snap.rev, pos: snap.pos, marks: snap.marks}
	state := snap.state.(S)
	read := 0
	err := h.store.ReadStream(ctx, stream, from, func(r eventstore.Recorded) error {
		v, err := h.codec.Decode(r.Type, r.Data)
		if err != nil {
			return fmt.Errorf("load %s@%d: %w", stream, r.Revision, err)
		}
		ev, ok := v.(E)
		if !ok {
			return fmt.Errorf("load %s@%d: event %s (%T) is not a %s event", stream, r.Revision, r.Type, v, agg.kind)
		}
		state = agg.evolve(state, ev)
		next.exists, next.rev, next.pos = true, r.Revision, r.Position
		next.mark(r.Metadata.CommandID, r.Position)
		read++
		return nil
	})
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound) && !snap.exists:
		return next, nil
	case err != nil:
		return nil, fmt.Errorf("load %s: %w", stream, err)
	}
	if read == 0 {
		return snap, nil
	}
	next.state = state
	return next, nil
}
