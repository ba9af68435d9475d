package projections_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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
