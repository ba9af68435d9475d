package main

import (
	"encoding/json"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestValidJSONIsJSONValid: the export's validity check agrees with
// json.Valid on any data made of JSON pieces, and appendJSONString with
// json.Marshal on any string.
func TestValidJSONIsJSONValid(t *testing.T) {
	pieces := []string{`{`, `}`, `[`, `]`, `"a"`, `"k"`, `"b\"c"`, `"é"`, `:`, `,`, `0`, `01`, `-`, `-7`, `12`, `1.5`, `true`, `fals`, `null`, ` `, "\t", `"`}
	rapid.Check(t, func(t *rapid.T) {
		data := strings.Join(rapid.SliceOfN(rapid.SampledFrom(pieces), 0, 12).Draw(t, "pieces"), "")
		if got, want := validJSON([]byte(data)), json.Valid([]byte(data)); got != want {
			t.Fatalf("validJSON(%s) = %v, json.Valid: %v", data, got, want)
		}
		s := rapid.String().Draw(t, "s")
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, json.Marshal: %s", s, got, want)
		}
	})
}
