package eventstore

import (
	"bytes"
	"time"
)

// metadataParser reads the user metadata of a run of delivered events. It
// parses the exact form Metadata.AppendJSON writes without encoding/json,
// reusing the previous event's strings when they repeat (the events of one
// command share their IDs and actor), and hands anything else (escapes,
// non-ASCII, other keys or order: events written by other tools) to
// parseMetadata: either way the result is what parseMetadata returns. Not
// safe for concurrent use; one per read or subscription.
type metadataParser struct {
	last [4]string // commandId, correlationId, causationId, actor
}

// metadataKeys are the keys of AppendJSON's form, in its order.
var metadataKeys = [5]string{`{"commandId":"`, `","correlationId":"`, `","causationId":"`, `","actor":"`, `","occurredAt":"`}

// parse returns the metadata of raw; like parseMetadata, anything that is
// not fleetjobs metadata gives the zero Metadata and an error.
func (p *metadataParser) parse(raw []byte) (Metadata, error) {
	if m, ok := p.fast(raw); ok {
		return m, nil
	}
	return parseMetadata(raw)
}

func (p *metadataParser) fast(raw []byte) (Metadata, bool) {
	var fields [5][]byte
	rest := raw
	for i, key := range metadataKeys {
		var ok bool
		if rest, ok = bytes.CutPrefix(rest, []byte(key)); !ok {
			return Metadata{}, false
		}
		end := plainStringEnd(rest)
		if end < 0 {
			return Metadata{}, false
		}
		fields[i], rest = rest[:end], rest[end:]
	}
	if string(rest) != `"}` {
		return Metadata{}, false
	}
	var m Metadata
	if len(fields[4]) > 0 {
		t, err := time.Parse(time.RFC3339Nano, string(fields[4]))
		if err != nil {
			return Metadata{}, false // parseMetadata says why
		}
		m.OccurredAt = t.UTC()
	}
	for i := range p.last {
		if string(fields[i]) != p.last[i] { // compiled without allocation
			p.last[i] = string(fields[i])
		}
	}
	m.CommandID, m.CorrelationID, m.CausationID, m.Actor = p.last[0], p.last[1], p.last[2], p.last[3]
	return m, true
}

// plainStringEnd returns the index of the quote that ends the JSON string
// content at the start of b, or -1 when the string has an escape, a control
// character or a non-ASCII byte (which encoding/json may rewrite), or no end.
func plainStringEnd(b []byte) int {
	for i, c := range b {
		switch {
		case c == '"':
			return i
		case c == '\\' || c < 0x20 || c >= 0x80:
			return -1
		}
	}
	return -1
}
