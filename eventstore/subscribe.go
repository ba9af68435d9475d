package eventstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// The server-side filter's search window and checkpoint interval (in
// windows): a checkpoint every 32 × 32 = 1,024 events considered.
const (
	searchWindow       = 32
	checkpointInterval = 32
)

// Filter selects the events of a $all subscription. An empty Filter selects
// every event, system events ($-prefixed streams and types) included.
type Filter struct {
	// StreamPrefixes keeps events whose stream name starts with one of
	// these (e.g. "job-").
	StreamPrefixes []string
	// EventTypePrefixes keeps events whose type starts with one of these
	// (e.g. "Job", "DeviceOperation").
	EventTypePrefixes []string
}

// IsZero reports whether f selects everything.
func (f Filter) IsZero() bool { return len(f.StreamPrefixes) == 0 && len(f.EventTypePrefixes) == 0 }

// Handler receives what a subscription delivers, in order, on one goroutine.
// A nil func skips that kind of message. An error returned by any of them
// ends the subscription, and SubscribeAll returns it as is.
type Handler struct {
	// Event is called for every matching event.
	Event func(context.Context, Recorded) error
	// Checkpoint is called when the store has considered every event up to
	// and including the position, matching or not: save it as the
	// projection's checkpoint and resume from it later (resumption is
	// exclusive), so a projector whose filter matches nothing still makes
	// progress. Only filtered subscriptions get checkpoints: without a
	// filter every event is delivered, and its Position serves the same
	// purpose.
	Checkpoint func(context.Context, Position) error
	// CaughtUp is called once, when the subscription has delivered the
	// history and switches to live events.
	CaughtUp func(context.Context) error
}

// SubscribeAll delivers the events of $all after from (exclusive; the zero
// Position means from the very first event) that match filter, then keeps
// delivering live events, until ctx ends (it returns ctx's error), a handler
// fails (its error), or the subscription drops (an error saying why: the
// store went away, the client was closed...). Nothing is resumed
// automatically: the caller resubscribes from its last checkpoint.
//
// The stream prefixes are applied by the server. KurrentDB filters on either
// stream names or event types, not both: with both, event types are filtered
// here, after the server's stream filter (checkpoints then still come from
// the server).
func (c *Client) SubscribeAll(ctx context.Context, from Position, filter Filter, h Handler) error {
	es, err := c.client()
	if err != nil {
		return fmt.Errorf("subscribe $all: %w", err)
	}
	// A filtered subscription's checkpoints come every checkpointInterval
	// windows of considered events: often enough for a projector whose
	// filter matches nothing to make progress, seldom enough not to cut a
	// catch-up into small batches.
	opts := esdb.SubscribeToAllOptions{From: esdb.Start{}, MaxSearchWindow: searchWindow, CheckpointInterval: checkpointInterval}
	if !from.IsZero() {
		opts.From = esdb.Position{Commit: from.Commit, Prepare: from.Prepare}
	}
	var localTypes []string // event type prefixes the server cannot apply
	switch {
	case len(filter.StreamPrefixes) > 0:
		opts.Filter = &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: filter.StreamPrefixes}
		localTypes = filter.EventTypePrefixes
	case len(filter.EventTypePrefixes) > 0:
		opts.Filter = &esdb.SubscriptionFilter{Type: esdb.EventFilterType, Prefixes: filter.EventTypePrefixes}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sub, err := subscribeToAll(ctx, es, opts)
	c.observe(es, err)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("subscribe $all: %w", err)
	}
	defer sub.Close()

	var mp metadataParser
	for {
		msg := sub.Recv()
		switch {
		case msg.SubscriptionDropped != nil:
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			c.observe(es, msg.SubscriptionDropped.Error)
			return fmt.Errorf("subscribe $all: dropped: %w", dropReason(msg.SubscriptionDropped.Error))
		case msg.EventAppeared != nil:
			if h.Event == nil {
				continue
			}
			rec, err := toRecorded(msg.EventAppeared, &mp)
			if err != nil {
				return fmt.Errorf("subscribe $all: %w", err)
			}
			if len(localTypes) > 0 && !hasAnyPrefix(rec.Type, localTypes) {
				continue
			}
			if err := h.Event(ctx, rec); err != nil {
				return err
			}
		case msg.CheckPointReached != nil:
			if h.Checkpoint == nil {
				continue
			}
			if err := h.Checkpoint(ctx, Position{Commit: msg.CheckPointReached.Commit, Prepare: msg.CheckPointReached.Prepare}); err != nil {
				return err
			}
		case msg.CaughtUp != nil:
			if h.CaughtUp == nil {
				continue
			}
			if err := h.CaughtUp(ctx); err != nil {
				return err
			}
		}
	}
}

// dropReason never returns nil: a drop without an error would otherwise read
// as a clean end.
func dropReason(err error) error {
	if err == nil {
		return errors.New("the store ended the subscription")
	}
	return err
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
