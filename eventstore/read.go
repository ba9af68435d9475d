package eventstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// ReadStream calls fn with the events of stream from revision from
// (inclusive) onwards, oldest first, until the end of the stream, fn's first
// error (returned as is), or ctx's end. Events stream through one at a time,
// so memory stays bounded whatever the stream's length.
//
// A stream that was never written, or was deleted, gives an error wrapping
// ErrStreamNotFound; a tombstoned one, ErrStreamDeleted. Reading past the end
// of an existing stream calls fn zero times and returns nil.
func (c *Client) ReadStream(ctx context.Context, stream string, from uint64, fn func(Recorded) error) error {
	es, err := c.client()
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := readStream(ctx, es, stream, esdb.ReadStreamOptions{Direction: esdb.Forwards, From: esdb.Revision(from)}, math.MaxUint64)
	c.observe(es, err)
	if err != nil {
		return readError(stream, err)
	}
	defer rs.Close()
	var mp metadataParser
	for {
		ev, err := recv(rs)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			c.observe(es, err)
			if ctx.Err() != nil {
				return fmt.Errorf("read %s: %w", stream, context.Cause(ctx))
			}
			return readError(stream, err)
		}
		rec, err := toRecorded(ev, &mp)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}

func readError(stream string, err error) error {
	switch {
	case isCode(err, esdb.ErrorCodeResourceNotFound):
		return fmt.Errorf("read %s: %w", stream, ErrStreamNotFound)
	case isCode(err, esdb.ErrorCodeStreamDeleted):
		return fmt.Errorf("read %s: %w: %w", stream, ErrStreamDeleted, err)
	}
	return fmt.Errorf("read %s: %w", stream, err)
}

// Head returns the position of the last event in $all, the zero Position
// when the log is empty. Projectors compare it with their checkpoint to
// report lag.
func (c *Client) Head(ctx context.Context) (Position, error) {
	es, err := c.client()
	if err != nil {
		return Position{}, fmt.Errorf("head: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := readAll(ctx, es, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	c.observe(es, err)
	if err != nil {
		return Position{}, fmt.Errorf("head: %w", err)
	}
	defer rs.Close()
	ev, err := recv(rs)
	if errors.Is(err, io.EOF) {
		return Position{}, nil
	}
	c.observe(es, err)
	if err != nil {
		return Position{}, fmt.Errorf("head: %w", err)
	}
	e := ev.OriginalEvent()
	if e == nil {
		return Position{}, errors.New("head: the store answered an event without a record")
	}
	return Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare}, nil
}

// Ping checks that the event log answers (readiness): it reads the head of
// $all. Give ctx a deadline: against a store that is down, the official
// client retries discovery for a few seconds.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.Head(ctx); err != nil {
		return fmt.Errorf("ping event store: %w", err)
	}
	return nil
}

// toRecorded copies a delivered event into a Recorded. Links are delivered
// as the link record itself (reads do not resolve links). mp parses the
// metadata.
func toRecorded(ev *esdb.ResolvedEvent, mp *metadataParser) (Recorded, error) {
	e := ev.OriginalEvent()
	if e == nil {
		return Recorded{}, errors.New("the store delivered an event without a record")
	}
	// Metadata that is not fleetjobs' (events written by other tools, system
	// events) must not stop a replay or a projector: it stays readable as
	// RawMetadata and Metadata is left zero.
	md, _ := mp.parse(e.UserMetadata)
	return Recorded{
		Stream:      e.StreamID,
		Revision:    e.EventNumber,
		Position:    Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare},
		ID:          e.EventID,
		Type:        e.EventType,
		Data:        e.Data,
		Metadata:    md,
		RawMetadata: e.UserMetadata,
		RecordedAt:  e.CreatedDate.UTC(),
	}, nil
}
