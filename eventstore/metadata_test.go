package eventstore_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// fataler is what the checks need of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// referenceJSON is Metadata's wire form as encoding/json writes it: the
// contract the hand-written encoder must match byte for byte.
func referenceJSON(tb fataler, m eventstore.Metadata) []byte {
	tb.Helper()
	w := struct {
		CommandID     string `json:"commandId"`
		CorrelationID string `json:"correlationId"`
		CausationID   string `json:"causationId"`
		Actor         string `json:"actor"`
		OccurredAt    string `json:"occurredAt"`
	}{m.CommandID, m.CorrelationID, m.CausationID, m.Actor, ""}
	if !m.OccurredAt.IsZero() {
		w.OccurredAt = m.OccurredAt.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(w)
	if err != nil {
		tb.Fatalf("reference marshal: %v", err)
	}
	return b
}

// checkMetadataJSON compares every way of encoding m with encoding/json's
// bytes, and decodes them back.
func checkMetadataJSON(tb fataler, m eventstore.Metadata) {
	tb.Helper()
	want := referenceJSON(tb, m)
	got, err := m.MarshalJSON()
	if err != nil {
		tb.Fatalf("MarshalJSON: %v", err)
	}
	if !bytes.Equal(got, want) {
		tb.Fatalf("MarshalJSON(%#v)\n got %s\nwant %s", m, got, want)
	}
	prefix := []byte("prefix")
	if got := m.AppendJSON(prefix); !bytes.Equal(got, append(prefix, want...)) {
		tb.Fatalf("AppendJSON(%#v) = %s, want prefix then %s", m, got, want)
	}
	// json.Marshal compacts and validates a Marshaler's output: it must
	// have nothing to change.
	viaJSON, err := json.Marshal(m)
	if err != nil {
		tb.Fatalf("json.Marshal: %v", err)
	}
	if !bytes.Equal(viaJSON, want) {
		tb.Fatalf("json.Marshal(%#v) = %s, want %s", m, viaJSON, want)
	}
	var back eventstore.Metadata
	if err := json.Unmarshal(got, &back); err != nil {
		tb.Fatalf("unmarshal %s: %v", got, err)
	}
	wantBack := m
	wantBack.OccurredAt = m.OccurredAt.UTC()
	if m.OccurredAt.IsZero() {
		wantBack.OccurredAt = time.Time{}
	}
	// Invalid UTF-8 is stored as U+FFFD, as encoding/json does.
	for _, s := range []*string{&wantBack.CommandID, &wantBack.CorrelationID, &wantBack.CausationID, &wantBack.Actor} {
		if !utf8.ValidString(*s) {
			*s = string([]rune(*s))
		}
	}
	if diff := cmp.Diff(wantBack, back); diff != "" {
		tb.Fatalf("round trip of %s (-want +got):\n%s", got, diff)
	}
}

func TestMetadataJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 2, 10, 4, 5, 123_000_000, time.FixedZone("CET", 3600))
	for name, m := range map[string]eventstore.Metadata{
		"zero":           {},
		"plain":          {CommandID: "c1", CorrelationID: "r1", CausationID: "c0", Actor: "dispatcher", OccurredAt: at},
		"whole seconds":  {CommandID: "c1", OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		"nanoseconds":    {CommandID: "c1", OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC)},
		"quotes":         {Actor: `say "hi" \ bye`},
		"controls":       {Actor: "a\x00b\x01\b\f\n\r\t\x1f\x7f"},
		"html":           {Actor: "<script>&amp;</script>"},
		"separators":     {Actor: "line\u2028para\u2029end"},
		"invalid utf-8":  {Actor: "a\xffb\xc3(c\xed\xa0\x80"},
		"multibyte":      {Actor: "Zoë 東京 🚀"},
		"truncated rune": {Actor: "x\xf0\x9f\x9a"},
	} {
		t.Run(name, func(t *testing.T) { checkMetadataJSON(t, m) })
	}
}

// TestMetadataJSONProperty checks the encoder against encoding/json on
// strings drawn from every kind of byte and rune.
func TestMetadataJSONProperty(t *testing.T) {
	str := rapid.OneOf(
		rapid.String(),
		rapid.StringOf(rapid.RuneFrom([]rune{'"', '\\', '<', '>', '&', '\u2028', '\u2029', 0, '\b', '\f', '\n', '\r', '\t', 0x1f, 0x7f, 'a', 'é', utf8.RuneError})),
		rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) string { return string(b) }),
	)
	rapid.Check(t, func(t *rapid.T) {
		m := eventstore.Metadata{
			CommandID:     str.Draw(t, "commandID"),
			CorrelationID: str.Draw(t, "correlationID"),
			CausationID:   str.Draw(t, "causationID"),
			Actor:         str.Draw(t, "actor"),
		}
		if rapid.Bool().Draw(t, "stamped") {
			m.OccurredAt = time.Unix(rapid.Int64Range(0, 1<<35).Draw(t, "sec"), rapid.Int64Range(0, 999_999_999).Draw(t, "nsec"))
		}
		checkMetadataJSON(t, m)
	})
}

// FuzzMetadataJSON: go test -run '^$' -fuzz FuzzMetadataJSON ./eventstore
func FuzzMetadataJSON(f *testing.F) {
	for _, s := range []string{"", "c1", `"\`, "<>&", "\u2028\u2029", "\x00\x1f\x7f", "\xff\xfe", "é東🚀", "\xed\xa0\x80"} {
		f.Add(s, s+"x", "dispatcher", int64(1_793_000_000_123))
	}
	f.Fuzz(func(t *testing.T, cmd, corr, actor string, ms int64) {
		m := eventstore.Metadata{CommandID: cmd, CorrelationID: corr, CausationID: cmd, Actor: actor}
		if ms > 0 && ms < 1<<45 {
			m.OccurredAt = time.UnixMilli(ms)
		}
		checkMetadataJSON(t, m)
	})
}
