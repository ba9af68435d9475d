package projections_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

func metaAt(at time.Time) eventstore.Metadata { return eventstore.Metadata{OccurredAt: at} }

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

func doc(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestApplyDeviceEvent(t *testing.T) {
	t.Parallel()
	tmpl := projections.Template{ID: "vending", Name: "Vending",
		Properties: []device.Capability{{Name: "city", Schema: device.SchemaString}, {Name: "temp", Schema: device.SchemaNumber}}}
	seattle := projections.DeviceSet{ID: "seattle", Name: "Seattle", TemplateID: "vending",
		Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}}
	dev := func(id, city string) projections.Device {
		return projections.Device{ID: id, Name: id, TemplateID: "vending", Properties: map[string]any{"city": city}, UpdatedAt: t0}
	}
	base := func() projections.DeviceState {
		return projections.DeviceState{
			Templates: map[string]projections.Template{"vending": tmpl},
			Sets:      map[string]projections.DeviceSet{"seattle": seattle},
			Devices:   map[string]projections.Device{"d1": dev("d1", "Seattle"), "d2": dev("d2", "Tacoma")},
		}
	}
	at := t0.Add(time.Minute)
	deviceDoc := func(d projections.Device) string {
		// The hand-written document must decode to the same device.
		d.UpdatedAt = at
		return doc(t, d)
	}
	brokenReason, _ := device.BrokenReason(device.Set{ID: "seattle", Name: "Seattle", TemplateID: "vending",
		Conditions: seattle.Conditions, Defined: true}, device.Template{})

	tests := []struct {
		name  string
		event any
		want  func(s projections.DeviceState) []projections.Op
	}{{
		name:  "registering a device lists it, under its template, and in the sets it matches",
		event: device.Registered{DeviceID: "d3", Name: "d3", TemplateID: "vending", Properties: map[string]any{"city": "Seattle"}},
		want: func(projections.DeviceState) []projections.Op {
			return []projections.Op{
				projections.Set("device:d3", deviceDoc(dev("d3", "Seattle"))),
				projections.ZAdd("devices", 0, "d3"),
				projections.ZAdd("template:vending:devices", 0, "d3"),
				projections.ZAdd("set:seattle:members", 0, "d3"),
			}
		},
	}, {
		name:  "a device whose properties start matching joins the set",
		event: device.PropertiesChanged{DeviceID: "d2", Properties: map[string]any{"city": "Seattle"}},
		want: func(projections.DeviceState) []projections.Op {
			return []projections.Op{
				projections.Set("device:d2", deviceDoc(dev("d2", "Seattle"))),
				projections.ZAdd("set:seattle:members", 0, "d2"),
			}
		},
	}, {
		name:  "a device whose properties stop matching leaves the set",
		event: device.PropertiesChanged{DeviceID: "d1", Properties: map[string]any{"city": "Tacoma"}},
		want: func(projections.DeviceState) []projections.Op {
			return []projections.Op{
				projections.Set("device:d1", deviceDoc(dev("d1", "Tacoma"))),
				projections.ZRem("set:seattle:members", "d1"),
			}
		},
	}, {
		name:  "a change that keeps the device a member only rewrites it",
		event: device.PropertiesChanged{DeviceID: "d1", Properties: map[string]any{"city": "Seattle", "temp": 3.0}},
		want: func(projections.DeviceState) []projections.Op {
			d := dev("d1", "Seattle")
			d.Properties = map[string]any{"city": "Seattle", "temp": 3.0}
			return []projections.Op{projections.Set("device:d1", deviceDoc(d))}
		},
	}, {
		name:  "a deleted device leaves every list and set",
		event: device.Deleted{DeviceID: "d1"},
		want: func(projections.DeviceState) []projections.Op {
			return []projections.Op{
				projections.Del("device:d1"), projections.ZRem("devices", "d1"),
				projections.ZRem("template:vending:devices", "d1"), projections.ZRem("set:seattle:members", "d1"),
			}
		},
	}, {
		name:  "changes to an unknown device change nothing",
		event: device.PropertiesChanged{DeviceID: "nope", Properties: map[string]any{"city": "Seattle"}},
		want:  func(projections.DeviceState) []projections.Op { return nil },
	}, {
		name:  "defining a set lists the devices that match, in ID order",
		event: device.SetDefined{SetID: "tacoma", Name: "Tacoma", TemplateID: "vending", Conditions: []device.Condition{{Property: "city", Op: device.OpNe, Value: "Portland"}}},
		want: func(projections.DeviceState) []projections.Op {
			return []projections.Op{
				projections.ZAdd("sets", 0, "tacoma"),
				projections.Set("set:tacoma", doc(t, projections.DeviceSet{ID: "tacoma", Name: "Tacoma", TemplateID: "vending",
					Conditions: []device.Condition{{Property: "city", Op: device.OpNe, Value: "Portland"}}, UpdatedAt: at})),
				projections.Del("set:tacoma:members"),
				projections.ZAdd("set:tacoma:members", 0, "d1"), projections.ZAdd("set:tacoma:members", 0, "d2"),
			}
		},
	}, {
		name:  "deleting the template breaks its sets and empties them",
		event: device.TemplateDeleted{TemplateID: "vending"},
		want: func(projections.DeviceState) []projections.Op {
			broken := seattle
			broken.Broken, broken.BrokenReason = true, brokenReason
			return []projections.Op{
				projections.Del("template:vending"), projections.ZRem("templates", "vending"),
				projections.Set("set:seattle", doc(t, broken)),
				projections.Del("set:seattle:members"),
			}
		},
	}, {
		name:  "deleting a set removes it and its members",
		event: device.SetDeleted{SetID: "seattle"},
		want: func(projections.DeviceState) []projections.Op {
			return []projections.Op{projections.Del("set:seattle"), projections.Del("set:seattle:members"), projections.ZRem("sets", "seattle")}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			got := projections.ApplyDeviceEvent(&s, projections.Event{Data: tt.event, Metadata: metaAt(at)}, nil)
			// Documents are compared decoded: their bytes are an
			// encoding detail.
			if diff := cmp.Diff(tt.want(s), got, cmp.Comparer(sameJSON)); diff != "" {
				t.Errorf("ops (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a device moved to another template leaves the old template's list and sets", func(t *testing.T) {
		s := base()
		s.Templates["kiosk"] = projections.Template{ID: "kiosk", Name: "Kiosk"}
		got := projections.ApplyDeviceEvent(&s, projections.Event{Data: device.Registered{DeviceID: "d1", Name: "d1",
			TemplateID: "kiosk", Properties: map[string]any{"city": "Seattle"}}, Metadata: metaAt(at)}, nil)
		moved := dev("d1", "Seattle")
		moved.TemplateID = "kiosk"
		want := []projections.Op{
			projections.Set("device:d1", deviceDoc(moved)),
			projections.ZRem("template:vending:devices", "d1"),
			projections.ZAdd("template:kiosk:devices", 0, "d1"),
			projections.ZRem("set:seattle:members", "d1"),
		}
		if diff := cmp.Diff(want, got, cmp.Comparer(sameJSON)); diff != "" {
			t.Errorf("ops (-want +got):\n%s", diff)
		}
	})
	t.Run("later events see earlier ones: a set defined after a registration in one batch lists it", func(t *testing.T) {
		s := base()
		projections.ApplyDeviceEvent(&s, projections.Event{Data: device.Registered{DeviceID: "d0", Name: "d0",
			TemplateID: "vending", Properties: map[string]any{"city": "Seattle"}}}, nil)
		got := projections.ApplyDeviceEvent(&s, projections.Event{Data: device.SetDefined{SetID: "seattle", Name: "Seattle",
			TemplateID: "vending", Conditions: seattle.Conditions}, Metadata: metaAt(at)}, nil)
		var members []string
		for _, op := range got {
			if op.Kind == projections.OpZAdd && op.Key == "set:seattle:members" {
				members = append(members, op.Member)
			}
		}
		if diff := cmp.Diff([]string{"d0", "d1"}, members); diff != "" {
			t.Errorf("members (-want +got):\n%s", diff)
		}
	})
}

// sameJSON compares two op values as JSON documents when both are.
func sameJSON(a, b projections.Op) bool {
	if a.Value != b.Value {
		var x, y any
		if json.Unmarshal([]byte(a.Value), &x) != nil || json.Unmarshal([]byte(b.Value), &y) != nil || !cmp.Equal(x, y) {
			return false
		}
		a.Value, b.Value = "", ""
	}
	return a == b
}
