package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Metadata is what every fleetjobs event carries besides its data: who asked
// for it, which command produced it, and when. It is stored as the event's
// user metadata, a JSON object with camelCase keys (a public contract that
// auditors read):
//
//	{"commandId":"...","correlationId":"...","causationId":"...","actor":"...","occurredAt":"2026-11-02T10:04:05.123Z"}
//
// occurredAt is RFC 3339 in UTC, whatever the zone of OccurredAt.
type Metadata struct {
	CommandID     string    // the command that decided the event; event IDs derive from it
	CorrelationID string    // the conversation the command belongs to (e.g. one HTTP request, one job)
	CausationID   string    // the message (command or event ID) that caused this one
	Actor         string    // who asked: an API key's name, "dispatcher", ...
	OccurredAt    time.Time // when the decision was taken (the command's time, not the store's)
}

// metadataJSON is the wire form of Metadata. Strings stay present even when
// empty so that every event has the same keys; occurredAt is a string so the
// zone is always Z.
type metadataJSON struct {
	CommandID     string `json:"commandId"`
	CorrelationID string `json:"correlationId"`
	CausationID   string `json:"causationId"`
	Actor         string `json:"actor"`
	OccurredAt    string `json:"occurredAt"`
}

// MarshalJSON renders m with camelCase keys and occurredAt in RFC 3339 UTC
// (with fractional seconds only when there are some). A zero OccurredAt is
// rendered as "". The bytes are those encoding/json would write for the
// same object (same key order, same escaping).
func (m Metadata) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, m.jsonSizeHint())), nil
}

// AppendJSON appends what MarshalJSON returns to b and returns the extended
// buffer. Append encodes every event's metadata with it: encoding/json would
// cost reflection, an allocation and a second pass (json.Marshal compacts
// and re-validates a Marshaler's output), per event.
func (m Metadata) AppendJSON(b []byte) []byte {
	b = append(b, `{"commandId":`...)
	b = appendJSONString(b, m.CommandID)
	b = append(b, `,"correlationId":`...)
	b = appendJSONString(b, m.CorrelationID)
	b = append(b, `,"causationId":`...)
	b = appendJSONString(b, m.CausationID)
	b = append(b, `,"actor":`...)
	b = appendJSONString(b, m.Actor)
	b = append(b, `,"occurredAt":"`...)
	if !m.OccurredAt.IsZero() {
		// RFC 3339 never needs escaping.
		b = m.OccurredAt.UTC().AppendFormat(b, time.RFC3339Nano)
	}
	return append(b, `"}`...)
}

// jsonSizeHint is about what AppendJSON writes: exact for strings that need
// no escaping.
func (m Metadata) jsonSizeHint() int {
	const fixed = len(`{"commandId":"","correlationId":"","causationId":"","actor":"","occurredAt":""}`)
	return fixed + len(m.CommandID) + len(m.CorrelationID) + len(m.CausationID) + len(m.Actor) + len(time.RFC3339Nano)
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// does by default: `"` and `\` escaped, \b \f \n \r \t short, other
// control characters and the HTML-sensitive <, > and & as \u00XX, U+2028 and
// U+2029 as \u2028 and \u2029, and each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// UnmarshalJSON parses the form MarshalJSON writes. Unknown keys are ignored
// (other tools may add some); an occurredAt that is not RFC 3339 is an error.
func (m *Metadata) UnmarshalJSON(data []byte) error {
	var w metadataJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	out := Metadata{
		CommandID:     w.CommandID,
		CorrelationID: w.CorrelationID,
		CausationID:   w.CausationID,
		Actor:         w.Actor,
	}
	if w.OccurredAt != "" {
		t, err := time.Parse(time.RFC3339Nano, w.OccurredAt)
		if err != nil {
			return fmt.Errorf("occurredAt: %w", err)
		}
		out.OccurredAt = t.UTC()
	}
	*m = out
	return nil
}

// parseMetadata reads stored user metadata. Events written by other tools,
// and the store's own system events, may carry none: that is the zero
// Metadata, not an error.
func parseMetadata(raw []byte) (Metadata, error) {
	var m Metadata
	if len(bytes.TrimSpace(raw)) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return Metadata{}, fmt.Errorf("metadata: %w", err)
	}
	return m, nil
}
