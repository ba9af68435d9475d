package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

// Append writes events to stream atomically (all or none, with consecutive
// revisions and contiguous positions in $all) if the stream is at expected.
//
// A stream that is not at expected gives a *ConflictError; a tombstoned
// stream gives an error wrapping ErrStreamDeleted. Retrying an append with
// the same event IDs at the same expected revision is recognised by the
// store and returns the original result without writing twice.
func (c *Client) Append(ctx context.Context, stream string, expected Revision, events []Event) (AppendResult, error) {
	if stream == "" {
		return AppendResult{}, errors.New("append: empty stream name")
	}
	data := make([]esdb.EventData, len(events))
	for i, ev := range events {
		d, err := c.eventData(ev)
		if err != nil {
			return AppendResult{}, fmt.Errorf("append %s: event %d: %w", stream, i, err)
		}
		data[i] = d
	}
	es, err := c.client()
	if err != nil {
		return AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	res, err := es.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: toESDBExpected(expected)}, data...)
	c.observe(es, err)
	if err != nil {
		return AppendResult{}, c.appendError(ctx, es, stream, expected, err)
	}
	pos := Position{Commit: res.CommitPosition, Prepare: res.PreparePosition}
	if pos.IsZero() {
		// Only a zero-event append to a missing stream has no position;
		// the client then reports a meaningless NextExpectedVersion.
		return AppendResult{Next: NoStream()}, nil
	}
	return AppendResult{Position: pos, Next: Exact(res.NextExpectedVersion)}, nil
}

// eventData encodes one Event for the official client.
func (c *Client) eventData(ev Event) (esdb.EventData, error) {
	if ev.ID == uuid.Nil {
		return esdb.EventData{}, errors.New("no event ID (derive one from the command ID)")
	}
	typ := ev.Type
	var data []byte
	switch d := ev.Data.(type) {
	case json.RawMessage:
		data = d
	case []byte:
		data = d
	default:
		if typ == "" && c.codec != nil {
			name, b, err := c.codec.Encode(ev.Data)
			if err != nil {
				return esdb.EventData{}, err
			}
			typ, data = name, b
			break
		}
		b, err := json.Marshal(ev.Data)
		if err != nil {
			return esdb.EventData{}, fmt.Errorf("%s: %w: %w", typ, ErrBadEventData, err)
		}
		data = b
	}
	if typ == "" {
		return esdb.EventData{}, errors.New("no event type (set Event.Type or give the Client a codec that knows the data's Go type)")
	}
	if !json.Valid(data) {
		return esdb.EventData{}, fmt.Errorf("%s: %w: data is not JSON", typ, ErrBadEventData)
	}
	md := ev.Metadata
	if md.OccurredAt.IsZero() {
		md.OccurredAt = c.now()
	}
	meta, err := json.Marshal(md)
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("%s: metadata: %w", typ, err)
	}
	return esdb.EventData{
		EventID:     ev.ID,
		EventType:   typ,
		ContentType: esdb.ContentTypeJson,
		Data:        data,
		Metadata:    meta,
	}, nil
}

func toESDBExpected(r Revision) esdb.ExpectedRevision {
	switch r.kind {
	case revNoStream:
		return esdb.NoStream{}
	case revStreamExists:
		return esdb.StreamExists{}
	case revExact:
		return esdb.Revision(r.n)
	default:
		return esdb.Any{}
	}
}

// appendError translates the official client's errors for Append.
func (c *Client) appendError(ctx context.Context, es *esdb.Client, stream string, expected Revision, err error) error {
	switch {
	case isCode(err, esdb.ErrorCodeWrongExpectedVersion):
		return &ConflictError{Stream: stream, Expected: expected, Actual: c.actualRevision(ctx, es, stream, err), Err: err}
	case isCode(err, esdb.ErrorCodeStreamDeleted):
		return fmt.Errorf("append %s: %w: %w", stream, ErrStreamDeleted, err)
	}
	return fmt.Errorf("append %s: %w", stream, err)
}

// actualRevision reads the stream's actual revision out of a
// wrong-expected-version error, or, failing that, from the stream's last
// event.
func (c *Client) actualRevision(ctx context.Context, es *esdb.Client, stream string, err error) Revision {
	// The client keeps the actual revision in no field, only in its message:
	// "wrong expected version: expecting '5' but got '1'" (or 'no_stream').
	if _, rest, ok := strings.Cut(err.Error(), "but got '"); ok {
		if got, _, ok := strings.Cut(rest, "'"); ok {
			if got == "no_stream" {
				return NoStream()
			}
			if n, perr := strconv.ParseUint(got, 10, 64); perr == nil {
				return Exact(n)
			}
		}
	}
	rs, rerr := es.ReadStream(ctx, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if rerr != nil {
		return StreamExists()
	}
	defer rs.Close()
	ev, rerr := rs.Recv()
	switch {
	case isCode(rerr, esdb.ErrorCodeResourceNotFound):
		return NoStream()
	case rerr != nil || ev == nil || ev.Event == nil:
		return StreamExists()
	}
	return Exact(ev.Event.EventNumber)
}
