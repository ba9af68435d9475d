package projections_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/projections"
)

// The device document is encoded by hand for speed; it must read back as
// the Device it was, whatever the values.
func TestDeviceDocumentReadsBack(t *testing.T) {
	t.Parallel()
	props := map[string]any{
		"plain": "Seattle", "escaped": "a \"quoted\" <tag> & \\ \n é", "int": 42.0, "neg": -7.0, "frac": 0.1,
		"big": 1e21, "tiny": 5e-324, "yes": true, "no": false, "null": nil,
		"object": map[string]any{"b": 1.0, "a": []any{"x", 2.0}}, "é": "key with accent",
	}
	s := projections.DeviceState{Templates: map[string]projections.Template{}, Sets: map[string]projections.DeviceSet{},
		Devices: map[string]projections.Device{}}
	at := time.Date(2026, 11, 2, 10, 4, 5, 123456789, time.UTC)
	ops := projections.ApplyDeviceEvent(&s, projections.Event{Data: device.Registered{DeviceID: "d-1", Name: "Dev \"one\"",
		TemplateID: "t", Properties: props}, Metadata: metaAt(at)}, nil)
	var got projections.Device
	if err := json.Unmarshal([]byte(ops[0].Value), &got); err != nil {
		t.Fatalf("device document %s: %v", ops[0].Value, err)
	}
	want := projections.Device{ID: "d-1", Name: "Dev \"one\"", TemplateID: "t", Properties: props, UpdatedAt: at}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("device read back (-want +got):\n%s", diff)
	}
}

// TestMemberReadsLikeJSON: the member read of a device document (its ID
// and name without a JSON decoder) is what encoding/json reads, whatever
// the ID and name hold; a document of another shape is decoded too.
func TestMemberReadsLikeJSON(t *testing.T) {
	t.Parallel()
	str := rapid.SampledFrom([]string{"", "d-1", "Fridge 7", `a"b`, `c\d`, "tab\there", "é", "<&>", "\x01", "\u2028"})
	rapid.Check(t, func(t *rapid.T) {
		id := rapid.StringOf(rapid.SampledFrom([]rune{'a', '"', '\\', '\n', 'é', ' ', '<'})).Draw(t, "id") + str.Draw(t, "id2")
		name := str.Draw(t, "name") + rapid.String().Draw(t, "name2")
		s := projections.DeviceState{Templates: map[string]projections.Template{}, Sets: map[string]projections.DeviceSet{},
			Devices: map[string]projections.Device{}}
		ops := projections.ApplyDeviceEvent(&s, projections.Event{Data: device.Registered{DeviceID: id, Name: name,
			TemplateID: "t", Properties: map[string]any{"p": name}}, Metadata: metaAt(time.Now())}, nil)
		docs := []string{ops[0].Value, `{"name":` + strconv.Quote("n") + `,"id":"x"}`}
		for _, doc := range docs {
			var want projections.Member
			if err := json.Unmarshal([]byte(doc), &want); err != nil {
				t.Fatalf("document %s: %v", doc, err)
			}
			got, err := projections.DecodeMember(doc)
			if err != nil || got != want {
				t.Fatalf("member of %s: %+v, %v; encoding/json: %+v", doc, got, err, want)
			}
		}
	})
}

// TestJobResultDocumentIsEncodingJSONs: the device result document written
// by hand is byte for byte what encoding/json writes, whatever the error
// text and time.
func TestJobResultDocumentIsEncodingJSONs(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		status := rapid.SampledFrom([]string{"succeeded", "failed", "pending", `we"ird`}).Draw(t, "status")
		errText := rapid.OneOf(rapid.Just(""), rapid.String(), rapid.SampledFrom([]string{"timed out", "<b>&</b>", "a\u2028b", "\xff", "line\nbreak"})).Draw(t, "error")
		at := time.Unix(rapid.Int64Range(-62_135_510_400, 253_370_764_800).Draw(t, "sec"), rapid.Int64Range(0, 999_999_999).Draw(t, "nsec")).
			In(time.FixedZone("Z", rapid.IntRange(-12, 12).Draw(t, "zone")*3600))
		if rapid.Bool().Draw(t, "utc") {
			at = at.UTC()
		}
		fast, want := projections.JobResultJSON(status, errText, at)
		if fast != want {
			t.Fatalf("hand-written %s, encoding/json %s", fast, want)
		}
	})
}
