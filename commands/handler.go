package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

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

// WithCacheSize bounds how many aggregate states the Handler keeps in memory
// (0 disables the cache). Default 100,000.
func WithCacheSize(n int) Option {
	return func(h *Handler) {
		if n >= 0 {
			h.cache = newCache(n)
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
}

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

// handle is THE command path: load the stream's state (cache, caught up from
// the stream when it matters), decide, append with the expected revision,
// and on a conflict catch up and decide again, up to maxAttempts times.
//
// A decision taken on a cached state and not guarded by an append (zero
// events, or a refusal) is checked against the stream first: another
// instance may have written since the state was cached.
func handle[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, cmd C, meta Meta) (Result, error) {
	snap := h.cache.get(stream)
	fresh := snap == nil
	if fresh {
		var err error
		if snap, err = catchUp(ctx, h, agg, stream, &snapshot{state: *new(S)}); err != nil {
			return Result{}, err
		}
	}
	for attempt := 1; ; attempt++ {
		if pos, done := snap.recorded(meta.CommandID); done {
			return Result{Position: pos}, nil
		}
		events, err := agg.decide(snap.state.(S), cmd)
		if (err != nil || len(events) == 0) && !fresh {
			if snap, err = catchUp(ctx, h, agg, stream, snap); err != nil {
				return Result{}, err
			}
			fresh = true
			attempt--
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("%s %s: %w", agg.kind, stream, err)
		}
		if len(events) == 0 {
			return Result{Position: snap.pos}, nil
		}
		res, next, err := appendEvents(ctx, h, agg, stream, snap, events, meta)
		var conflict *eventstore.ConflictError
		if errors.As(err, &conflict) {
			if attempt >= h.maxAttempts {
				return Result{}, fmt.Errorf("%s: %w (%w)", stream,
					domain.Conflict("%s %s kept changing while the command was decided (%d attempts); try again", agg.kind, stream, attempt), err)
			}
			h.logger.Debug("concurrency conflict: catching up and deciding again",
				zap.String("stream", stream), zap.Int("attempt", attempt), zap.Stringer("actual", conflict.Actual))
			if snap, err = catchUp(ctx, h, agg, stream, snap); err != nil {
				return Result{}, err
			}
			fresh = true
			continue
		}
		if err != nil {
			return Result{}, err
		}
		h.cache.put(stream, next)
		return res, nil
	}
}

// appendEvents appends events decided on snap and returns the result and
// the snapshot after them.
func appendEvents[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string, snap *snapshot, events []E, meta Meta) (Result, *snapshot, error) {
	batch, err := envelope(h, stream, meta, events)
	if err != nil {
		return Result{}, nil, err
	}
	res, err := h.store.Append(ctx, stream, snap.expected(), batch)
	if err != nil {
		return Result{}, nil, err
	}
	state := snap.state.(S)
	for _, ev := range events {
		state = agg.evolve(state, ev)
	}
	rev, _ := res.Next.Value()
	next := &snapshot{state: state, exists: true, rev: rev, pos: res.Position, marks: snap.marks}
	next.mark(meta.CommandID, res.Position)
	return Result{Position: res.Position, Events: len(events), Created: !snap.exists}, next, nil
}

// envelope turns decided events into events to append: type and data from
// the codec, metadata from meta, IDs derived from the command ID.
func envelope[E any](h *Handler, stream string, meta Meta, events []E) ([]eventstore.Event, error) {
	md := eventstore.Metadata{
		CommandID:     meta.CommandID,
		CorrelationID: meta.CorrelationID,
		CausationID:   meta.CausationID,
		Actor:         meta.Actor,
		OccurredAt:    h.now(),
	}
	out := make([]eventstore.Event, len(events))
	for i, ev := range events {
		name, data, err := h.codec.Encode(ev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stream, err)
		}
		out[i] = eventstore.Event{ID: EventID(meta.CommandID, stream, i), Type: name, Data: json.RawMessage(data), Metadata: md}
	}
	return out, nil
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
func EventID(commandID, stream string, index int) uuid.UUID {
	buf := make([]byte, 0, len(commandID)+len(stream)+24)
	buf = append(buf, commandID...)
	buf = append(buf, 0)
	buf = append(buf, stream...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(index), 10)
	return uuid.NewSHA1(eventIDSpace(), buf)
}

// catchUp returns snap with the stream's events after it applied: the
// whole stream for an empty snapshot.
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
	h.cache.put(stream, next)
	return next, nil
}
