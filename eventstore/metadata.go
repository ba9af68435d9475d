package eventstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
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
// rendered as "".
func (m Metadata) MarshalJSON() ([]byte, error) {
	w := metadataJSON{
		CommandID:     m.CommandID,
		CorrelationID: m.CorrelationID,
		CausationID:   m.CausationID,
		Actor:         m.Actor,
	}
	if !m.OccurredAt.IsZero() {
		w.OccurredAt = m.OccurredAt.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(w)
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
