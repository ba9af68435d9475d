package eventstoretest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// CheckRoundTrip encodes ev with codec, checks that the event type name is
// want and the data is a JSON object, decodes it back and compares the
// result with ev (cmp.Diff, with opts). It fails tb on any difference.
//
// A round trip that loses a field (a missing or mistyped JSON tag, an
// unexported field) shows up here rather than in a replay months later.
func CheckRoundTrip(tb testing.TB, codec *eventstore.Codec, want string, ev any, opts ...cmp.Option) {
	tb.Helper()
	name, data, err := codec.Encode(ev)
	if err != nil {
		tb.Fatalf("encode %T: %v", ev, err)
	}
	if name != want {
		tb.Errorf("encode %T: event type %q, want %q", ev, name, want)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		tb.Errorf("encode %T: data is not a JSON object: %v: %s", ev, err, data)
	}
	got, err := codec.Decode(name, data)
	if err != nil {
		tb.Fatalf("decode %s: %v (data %s)", name, err, data)
	}
	if diff := cmp.Diff(ev, got, opts...); diff != "" {
		tb.Errorf("%s round trip changed the event (-sent +decoded):\n%s\ndata: %s", name, diff, data)
	}
}

// CheckAllRoundTrip runs CheckRoundTrip on each sample (keyed by the event
// type name it must encode to) and fails tb if a type registered in codec
// has no sample, so that a newly registered event cannot skip its test.
// Give samples with every field set to a non-zero value.
func CheckAllRoundTrip(tb testing.TB, codec *eventstore.Codec, samples map[string]any, opts ...cmp.Option) {
	tb.Helper()
	for _, name := range codec.Types() {
		ev, ok := samples[name]
		if !ok {
			tb.Errorf("event type %q is registered but has no round-trip sample", name)
			continue
		}
		CheckRoundTrip(tb, codec, name, ev, opts...)
	}
	registered := codec.Types()
	for name := range samples {
		if !slices.Contains(registered, name) {
			tb.Errorf("sample %q: no such event type is registered", name)
		}
	}
}
