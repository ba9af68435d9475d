package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	data, err := c.eventData(stream, events)
	if err != nil {
		return AppendResult{}, err
	}
	es, err := c.client()
	if err != nil {
		return AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	res, err := appendToStream(ctx, es, stream, esdb.AppendToStreamOptions{ExpectedRevision: toESDBExpected(expected)}, data...)
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

// eventData encodes events for the official client.
//
// This is per-event work on the hottest path (a job's results, an import's
// devices), so it allocates little: the metadata of the events go into one
// buffer sized in advance, encoded by Metadata.AppendJSON, and an event
// whose metadata equals the one before it (the events of one command)
// shares its bytes. Bytes once written are never changed, so an event's
// metadata would stay valid even if the buffer had to move. The official
// client only reads them, and is done with them when AppendToStream
// returns.
func (c *Client) eventData(stream string, events []Event) ([]esdb.EventData, error) {
	data := make([]esdb.EventData, len(events))
	var now time.Time // one stamp for the append's unstamped events
	size := 0         // of every distinct metadata, about
	for i := range events {
		ev := &events[i]
		typ, payload, err := c.payload(ev)
		if err != nil {
			return nil, fmt.Errorf("append %s: event %d: %w", stream, i, err)
		}
		data[i] = esdb.EventData{EventID: ev.ID, EventType: typ, ContentType: esdb.ContentTypeJson, Data: payload}
		if ev.Metadata.OccurredAt.IsZero() && now.IsZero() {
			now = c.now()
		}
		if i == 0 || !sameMetadata(ev.Metadata, events[i-1].Metadata) {
			size += ev.Metadata.jsonSizeHint()
		}
	}
	meta := make([]byte, 0, size)
	var shared []byte
	for i := range events {
		md := events[i].Metadata
		if i > 0 && sameMetadata(md, events[i-1].Metadata) {
			data[i].Metadata = shared
			continue
		}
		if md.OccurredAt.IsZero() {
			md.OccurredAt = now
		}
		lo := len(meta)
		meta = md.AppendJSON(meta)
		shared = meta[lo:len(meta):len(meta)]
		data[i].Metadata = shared
	}
	return data, nil
}

// sameMetadata reports whether a and b encode to the same JSON.
func sameMetadata(a, b Metadata) bool {
	return a.CommandID == b.CommandID && a.CorrelationID == b.CorrelationID && a.CausationID == b.CausationID &&
		a.Actor == b.Actor && a.OccurredAt.Equal(b.OccurredAt)
}

// payload returns the type name and JSON data of ev.
func (c *Client) payload(ev *Event) (string, []byte, error) {
	if ev.ID == uuid.Nil {
		return "", nil, errors.New("no event ID (derive one from the command ID)")
	}
	typ := ev.Type
	var data []byte
	switch d := ev.Data.(type) {
	case Encoded:
		if typ == "" {
			return "", nil, errors.New("no event type (set Event.Type to the name Codec.Encode gave)")
		}
		return typ, d, nil
	case json.RawMessage:
		data = d
	case []byte:
		data = d
	default:
		if typ == "" && c.codec != nil {
			// The codec's encoding/json output needs no validation.
			return c.codec.Encode(ev.Data)
		}
		b, err := json.Marshal(ev.Data)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w: %w", typ, ErrBadEventData, err)
		}
		data = b
	}
	if typ == "" {
		return "", nil, errors.New("no event type (set Event.Type or give the Client a codec that knows the data's Go type)")
	}
	if !json.Valid(data) {
		return "", nil, fmt.Errorf("%s: %w: data is not JSON", typ, ErrBadEventData)
	}
	return typ, data, nil
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
	rs, rerr := readStream(ctx, es, stream, esdb.ReadStreamOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	c.observe(es, rerr)
	if rerr != nil {
		return StreamExists()
	}
	defer rs.Close()
	ev, rerr := recv(rs)
	switch {
	case isCode(rerr, esdb.ErrorCodeResourceNotFound):
		return NoStream()
	case rerr != nil || ev == nil || ev.Event == nil:
		return StreamExists()
	}
	return Exact(ev.Event.EventNumber)
}
