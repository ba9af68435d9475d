package eventstore

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestMetadataParserAgreesWithParseMetadata: whatever the bytes, the
// parser of delivered events returns what parseMetadata does, whether it
// takes its fast path (AppendJSON's exact form) or not.
func TestMetadataParserAgreesWithParseMetadata(t *testing.T) {
	var p metadataParser // shared: its string reuse must not leak values
	check := func(t interface{ Fatalf(string, ...any) }, raw []byte) {
		want, wantErr := parseMetadata(raw)
		got, err := p.parse(raw)
		if got != want || (err == nil) != (wantErr == nil) {
			t.Fatalf("parse(%q) = %+v, %v; parseMetadata: %+v, %v", raw, got, err, want, wantErr)
		}
	}
	fixed := []string{
		``, `{}`, `null`, `"x"`, `{"actor":"a"}`,
		`{"commandId":"c","correlationId":"k","causationId":"z","actor":"a","occurredAt":""}`,
		`{"commandId":"c","correlationId":"k","causationId":"z","actor":"a","occurredAt":"bad"}`,
		`{"commandId":"c\"d","correlationId":"k","causationId":"z","actor":"a","occurredAt":""}`,
		`{"commandId":"c","correlationId":"k","causationId":"z","actor":"a","occurredAt":""} `,
		`{"commandId":"c","correlationId":"k","causationId":"z","actor":"a","occurredAt":"","x":1}`,
	}
	for _, raw := range fixed {
		check(t, []byte(raw))
	}
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.SampledFrom([]string{"", "cmd-1", "job-7", "a\"b", "é", "\x01", "<&>", "dispatcher"})
		m := Metadata{CommandID: s.Draw(t, "cmd"), CorrelationID: s.Draw(t, "corr"), CausationID: s.Draw(t, "cause"),
			Actor: s.Draw(t, "actor")}
		if rapid.Bool().Draw(t, "at") {
			m.OccurredAt = time.Unix(rapid.Int64Range(0, 4e9).Draw(t, "sec"), rapid.Int64Range(0, 999999999).Draw(t, "ns")).
				In(time.FixedZone("x", 3600))
		}
		check(t, m.AppendJSON(nil))
	})
}
