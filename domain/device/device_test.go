package device_test

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/domaintest"
)

var (
	numberProp = device.Capability{Name: "fanSpeed", Schema: device.SchemaNumber}
	stringProp = device.Capability{Name: "city", Schema: device.SchemaString}
	boolProp   = device.Capability{Name: "refrigerated", Schema: device.SchemaBoolean}
	objectProp = device.Capability{Name: "config", Schema: device.SchemaObject}
)

func published(id string, props ...device.Capability) device.TemplatePublished {
	return device.TemplatePublished{TemplateID: id, Name: "Vending " + id, Settings: []device.Capability{}, Properties: props, Commands: []device.Capability{}}
}

func publish(id string, props ...device.Capability) device.PublishTemplate {
	return device.PublishTemplate{TemplateID: id, Name: "Vending " + id, Properties: props}
}

func vending() device.Template {
	return device.FoldTemplate([]device.TemplateEvent{published("vending-v2", numberProp, stringProp, boolProp, objectProp)})
}

func TestDecideTemplate(t *testing.T) {
	cases := []struct {
		name  string
		given []device.TemplateEvent
		when  device.TemplateCommand
		then  []device.TemplateEvent
		err   *domaintest.Refusal
	}{
		{name: "publishing a new template records it with empty lists, not nulls",
			when: publish("t1", numberProp),
			then: []device.TemplateEvent{published("t1", numberProp)}},
		{name: "publishing the same body again records nothing",
			given: []device.TemplateEvent{published("t1", numberProp)},
			when:  publish("t1", numberProp)},
		{name: "publishing another body records the whole template again",
			given: []device.TemplateEvent{published("t1", numberProp)},
			when:  publish("t1", numberProp, stringProp),
			then:  []device.TemplateEvent{published("t1", numberProp, stringProp)}},
		{name: "publishing a deleted template publishes it anew",
			given: []device.TemplateEvent{published("t1", numberProp), device.TemplateDeleted{TemplateID: "t1"}},
			when:  publish("t1", numberProp),
			then:  []device.TemplateEvent{published("t1", numberProp)}},
		{name: "a template needs an ID and a name",
			when: device.PublishTemplate{},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId", "name"}, Says: "is required"}},
		{name: "an ID with a slash is refused",
			when: device.PublishTemplate{TemplateID: "a/b", Name: "x"},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId"}, Says: `contains '/'`}},
		{name: "capability names must be present and unique in each list, schemas known",
			when: device.PublishTemplate{TemplateID: "t1", Name: "x",
				Settings:   []device.Capability{{Name: "a", Schema: "number"}, {Name: "a", Schema: "string"}},
				Properties: []device.Capability{{Name: "", Schema: "number"}},
				Commands:   []device.Capability{{Name: "reboot", Schema: "integer"}}},
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"settings[1].name", "properties[0].name", "commands[0].schema"}, Says: `unknown schema "integer"`}},
		{name: "the same name in two lists is fine",
			when: device.PublishTemplate{TemplateID: "t1", Name: "x", Settings: []device.Capability{numberProp}, Properties: []device.Capability{numberProp}},
			then: []device.TemplateEvent{device.TemplatePublished{TemplateID: "t1", Name: "x", Settings: []device.Capability{numberProp}, Properties: []device.Capability{numberProp}, Commands: []device.Capability{}}}},
		{name: "deleting a template records it",
			given: []device.TemplateEvent{published("t1")},
			when:  device.DeleteTemplate{TemplateID: "t1"},
			then:  []device.TemplateEvent{device.TemplateDeleted{TemplateID: "t1"}}},
		{name: "deleting twice records nothing",
			given: []device.TemplateEvent{published("t1"), device.TemplateDeleted{TemplateID: "t1"}},
			when:  device.DeleteTemplate{TemplateID: "t1"}},
		{name: "deleting a template never published is not found",
			when: device.DeleteTemplate{TemplateID: "t1"},
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: `template "t1" does not exist`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := device.DecideTemplate(device.FoldTemplate(c.given), c.when)
			domaintest.CheckRefusal(t, err, c.err)
			if diff := cmp.Diff(c.then, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func registered(id string, props map[string]any) device.Registered {
	return device.Registered{DeviceID: id, Name: "Machine " + id, TemplateID: "vending-v2", Properties: props}
}

func register(id string, props map[string]any) device.Register {
	return device.Register{DeviceID: id, Name: "Machine " + id, TemplateID: "vending-v2", Properties: props, Template: vending()}
}

func TestDecideDevice(t *testing.T) {
	deletedTemplate := device.EvolveTemplate(vending(), device.TemplateDeleted{TemplateID: "vending-v2"})
	cases := []struct {
		name  string
		given []device.DeviceEvent
		when  device.DeviceCommand
		then  []device.DeviceEvent
		err   *domaintest.Refusal
	}{
		{name: "registering a device records it with normalized values",
			when: register("d1", map[string]any{"fanSpeed": 1200, "city": "Seattle", "refrigerated": true, "config": map[string]any{"mode": "eco", "level": json.Number("2")}}),
			then: []device.DeviceEvent{registered("d1", map[string]any{"fanSpeed": 1200.0, "city": "Seattle", "refrigerated": true, "config": map[string]any{"mode": "eco", "level": 2.0}})}},
		{name: "a device without properties records an empty map",
			when: register("d1", nil),
			then: []device.DeviceEvent{registered("d1", map[string]any{})}},
		{name: "the same body again records nothing",
			given: []device.DeviceEvent{registered("d1", map[string]any{"fanSpeed": 1200.0})},
			when:  register("d1", map[string]any{"fanSpeed": json.Number("1200")})},
		{name: "new property values record the complete new values",
			given: []device.DeviceEvent{registered("d1", map[string]any{"fanSpeed": 1200.0, "city": "Seattle"})},
			when:  register("d1", map[string]any{"fanSpeed": 900.0}),
			then:  []device.DeviceEvent{device.PropertiesChanged{DeviceID: "d1", Properties: map[string]any{"fanSpeed": 900.0}}}},
		{name: "a new name records the whole device again",
			given: []device.DeviceEvent{registered("d1", map[string]any{"fanSpeed": 1200.0})},
			when:  device.Register{DeviceID: "d1", Name: "Renamed", TemplateID: "vending-v2", Properties: map[string]any{"fanSpeed": 1200.0}, Template: vending()},
			then:  []device.DeviceEvent{device.Registered{DeviceID: "d1", Name: "Renamed", TemplateID: "vending-v2", Properties: map[string]any{"fanSpeed": 1200.0}}}},
		{name: "a deleted device cannot be registered again",
			given: []device.DeviceEvent{registered("d1", nil), device.Deleted{DeviceID: "d1"}},
			when:  register("d1", nil),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was deleted"}},
		{name: "an unknown template is refused by field",
			when: device.Register{DeviceID: "d1", Name: "x", TemplateID: "nope", Template: device.Template{}},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId"}, Says: `template "nope" does not exist`}},
		{name: "a deleted template is refused by field",
			when: device.Register{DeviceID: "d1", Name: "x", TemplateID: "vending-v2", Template: deletedTemplate},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId"}, Says: "was deleted"}},
		{name: "a template other than the one named is no template",
			when: device.Register{DeviceID: "d1", Name: "x", TemplateID: "other", Template: vending()},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId"}, Says: "does not exist"}},
		{name: "every wrong property is named with what was expected",
			when: register("d1", map[string]any{"fanSpeed": "fast", "city": 3, "refrigerated": "yes", "config": []any{1}, "colour": "red"}),
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"properties.city", "properties.colour", "properties.config", "properties.fanSpeed", "properties.refrigerated"},
				Says: `properties.fanSpeed: must be a number, got a string ("fast")`}},
		{name: "null is not a value of any schema",
			when: register("d1", map[string]any{"city": nil}),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"properties.city"}, Says: "must be a string, got null"}},
		{name: "a device needs an ID and a name",
			when: device.Register{TemplateID: "vending-v2", Template: vending()},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceId", "name"}, Says: "is required"}},
		{name: "a device's name is one line of text",
			when: device.Register{DeviceID: "d1", Name: "Machine\x00d1", TemplateID: "vending-v2", Template: vending()},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"name"}, Says: "control character U+0000"}},
		{name: "a new device is given the key the handler drew, in the same decision",
			when: device.Register{DeviceID: "d1", Name: "Machine d1", TemplateID: "vending-v2", Template: vending(), KeyHash: "sha256:k1"},
			then: []device.DeviceEvent{registered("d1", map[string]any{}), device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k1"}}},
		{name: "changing an existing device issues no key",
			given: []device.DeviceEvent{registered("d1", nil), device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k1"}},
			when:  device.Register{DeviceID: "d1", Name: "Renamed", TemplateID: "vending-v2", Template: vending(), KeyHash: "sha256:k2"},
			then:  []device.DeviceEvent{device.Registered{DeviceID: "d1", Name: "Renamed", TemplateID: "vending-v2", Properties: map[string]any{}}}},
		{name: "the same body again issues no key either",
			given: []device.DeviceEvent{registered("d1", map[string]any{}), device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k1"}},
			when:  device.Register{DeviceID: "d1", Name: "Machine d1", TemplateID: "vending-v2", Template: vending(), KeyHash: "sha256:k2"}},
		{name: "issuing a key records the new one",
			given: []device.DeviceEvent{registered("d1", nil), device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k1"}},
			when:  device.IssueKey{DeviceID: "d1", KeyHash: "sha256:k2"},
			then:  []device.DeviceEvent{device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k2"}}},
		{name: "a device never registered has no key to replace",
			when: device.IssueKey{DeviceID: "d1", KeyHash: "sha256:k2"},
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: `device "d1" does not exist`}},
		{name: "a deleted device is given no key",
			given: []device.DeviceEvent{registered("d1", nil), device.Deleted{DeviceID: "d1"}},
			when:  device.IssueKey{DeviceID: "d1", KeyHash: "sha256:k2"},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was deleted"}},
		{name: "a key needs its hash",
			given: []device.DeviceEvent{registered("d1", nil)},
			when:  device.IssueKey{DeviceID: "d1"},
			err:   &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"keyHash"}, Says: "is required"}},
		{name: "deleting a device records it",
			given: []device.DeviceEvent{registered("d1", nil)},
			when:  device.Delete{DeviceID: "d1"},
			then:  []device.DeviceEvent{device.Deleted{DeviceID: "d1"}}},
		{name: "deleting a device twice records nothing",
			given: []device.DeviceEvent{registered("d1", nil), device.Deleted{DeviceID: "d1"}},
			when:  device.Delete{DeviceID: "d1"}},
		{name: "deleting a device never registered is not found",
			when: device.Delete{DeviceID: "d1"},
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: `device "d1" does not exist`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := device.DecideDevice(device.FoldDevice(c.given), c.when)
			domaintest.CheckRefusal(t, err, c.err)
			if diff := cmp.Diff(c.then, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEvolveDeviceKeepsDeletedDevicesDeleted(t *testing.T) {
	d := device.FoldDevice([]device.DeviceEvent{registered("d1", nil), device.Deleted{DeviceID: "d1"}, registered("d1", map[string]any{"city": "x"})})
	if d.Exists() || !d.Deleted {
		t.Errorf("device after delete and re-register = %+v, want it still deleted", d)
	}
}

func TestEvolveDeviceKeepsTheLatestKey(t *testing.T) {
	d := device.FoldDevice([]device.DeviceEvent{
		registered("d1", nil), device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k1"},
		device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:k2"},
		registered("d1", map[string]any{"city": "x"}), // a new name or template keeps the key
		device.PropertiesChanged{DeviceID: "d1", Properties: map[string]any{}},
	})
	if d.KeyHash != "sha256:k2" {
		t.Errorf("key hash %q, want the latest issued, sha256:k2", d.KeyHash)
	}
}

func defined(id string, conds ...device.Condition) device.SetDefined {
	if conds == nil {
		conds = []device.Condition{}
	}
	return device.SetDefined{SetID: id, Name: "Set " + id, TemplateID: "vending-v2", Conditions: conds}
}

func define(id string, conds ...device.Condition) device.DefineSet {
	return device.DefineSet{SetID: id, Name: "Set " + id, TemplateID: "vending-v2", Conditions: conds, Template: vending()}
}

func TestDecideSet(t *testing.T) {
	cases := []struct {
		name  string
		given []device.SetEvent
		when  device.SetCommand
		then  []device.SetEvent
		err   *domaintest.Refusal
	}{
		{name: "defining a set records it with normalized values",
			when: define("s1", device.Condition{Property: "fanSpeed", Op: device.OpGe, Value: 1000}, device.Condition{Property: "city", Op: device.OpEq, Value: "Seattle"}),
			then: []device.SetEvent{defined("s1", device.Condition{Property: "fanSpeed", Op: device.OpGe, Value: 1000.0}, device.Condition{Property: "city", Op: device.OpEq, Value: "Seattle"})}},
		{name: "a set without conditions is every device of the template",
			when: define("s1"),
			then: []device.SetEvent{defined("s1")}},
		{name: "the same definition again records nothing",
			given: []device.SetEvent{defined("s1", device.Condition{Property: "fanSpeed", Op: device.OpGe, Value: 1000.0})},
			when:  define("s1", device.Condition{Property: "fanSpeed", Op: device.OpGe, Value: 1000})},
		{name: "another definition records the whole set again",
			given: []device.SetEvent{defined("s1")},
			when:  define("s1", device.Condition{Property: "refrigerated", Op: device.OpEq, Value: true}),
			then:  []device.SetEvent{defined("s1", device.Condition{Property: "refrigerated", Op: device.OpEq, Value: true})}},
		{name: "a deleted set may be defined again",
			given: []device.SetEvent{defined("s1"), device.SetDeleted{SetID: "s1"}},
			when:  define("s1"),
			then:  []device.SetEvent{defined("s1")}},
		{name: "an unknown op is named with the ops there are",
			when: define("s1", device.Condition{Property: "city", Op: "like", Value: "S%"}),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"conditions[0].op"}, Says: `unknown op "like": use one of eq, ne, lt, le, gt, ge, contains`}},
		{name: "a condition on a property the template lacks is refused",
			when: define("s1", device.Condition{Property: "colour", Op: device.OpEq, Value: "red"}),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"conditions[0].property"}, Says: `declares no property "colour"`}},
		{name: "a value of the wrong schema is refused",
			when: define("s1", device.Condition{Property: "fanSpeed", Op: device.OpEq, Value: "fast"}),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"conditions[0].value"}, Says: "must be a number"}},
		{name: "ordering ops need a number or string property",
			when: define("s1", device.Condition{Property: "refrigerated", Op: device.OpLt, Value: true}, device.Condition{Property: "city", Op: device.OpLt, Value: "M"}),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"conditions[0].op"}, Says: "lt orders numbers or strings"}},
		{name: "contains needs a string or object property and a string value",
			when: define("s1", device.Condition{Property: "fanSpeed", Op: device.OpContains, Value: "1"}, device.Condition{Property: "config", Op: device.OpContains, Value: 1}),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"conditions[0].op", "conditions[1].value"}, Says: "contains looks into a string or an object"}},
		{name: "a set on an unknown template is refused",
			when: device.DefineSet{SetID: "s1", Name: "x", TemplateID: "nope"},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId"}, Says: "does not exist"}},
		{name: "a set on a deleted template is refused",
			when: device.DefineSet{SetID: "s1", Name: "x", TemplateID: "vending-v2", Template: device.EvolveTemplate(vending(), device.TemplateDeleted{TemplateID: "vending-v2"})},
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"templateId"}, Says: "was deleted"}},
		{name: "deleting a set records it",
			given: []device.SetEvent{defined("s1")},
			when:  device.DeleteSet{SetID: "s1"},
			then:  []device.SetEvent{device.SetDeleted{SetID: "s1"}}},
		{name: "deleting a set twice records nothing",
			given: []device.SetEvent{defined("s1"), device.SetDeleted{SetID: "s1"}},
			when:  device.DeleteSet{SetID: "s1"}},
		{name: "deleting a set never defined is not found",
			when: device.DeleteSet{SetID: "s1"},
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: `device set "s1" does not exist`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := device.DecideSet(device.FoldSet(c.given), c.when)
			domaintest.CheckRefusal(t, err, c.err)
			if diff := cmp.Diff(c.then, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBrokenReason(t *testing.T) {
	set := device.FoldSet([]device.SetEvent{defined("s1", device.Condition{Property: "city", Op: device.OpLt, Value: "M"})})
	cases := []struct {
		name   string
		tmpl   device.Template
		reason string
	}{
		{name: "a set on a live template that has its properties is not broken", tmpl: vending()},
		{name: "a deleted template breaks the set",
			tmpl:   device.EvolveTemplate(vending(), device.TemplateDeleted{TemplateID: "vending-v2"}),
			reason: "Template 'vending-v2' was deleted, so this set lists no devices."},
		{name: "a missing template breaks the set",
			tmpl:   device.Template{},
			reason: "Template 'vending-v2' does not exist, so this set lists no devices."},
		{name: "a property dropped from the template breaks the set",
			tmpl:   device.FoldTemplate([]device.TemplateEvent{published("vending-v2", numberProp)}),
			reason: "Template 'vending-v2' has no property 'city' any more (condition 1 names it), so this set lists no devices."},
		{name: "a schema change the condition cannot compare breaks the set",
			tmpl:   device.FoldTemplate([]device.TemplateEvent{published("vending-v2", device.Capability{Name: "city", Schema: device.SchemaBoolean})}),
			reason: "Template 'vending-v2' now declares property 'city' as a boolean, which condition 1 (city lt) cannot compare, so this set lists no devices."},
		{name: "a template published again after a delete repairs the set", tmpl: device.FoldTemplate([]device.TemplateEvent{
			published("vending-v2", stringProp), device.TemplateDeleted{TemplateID: "vending-v2"}, published("vending-v2", stringProp)})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reason, broken := device.BrokenReason(set, c.tmpl)
			if diff := cmp.Diff(c.reason, reason); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if broken != (c.reason != "") {
				t.Errorf("broken = %v with reason %q", broken, reason)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	dev := func(props map[string]any, more ...device.DeviceEvent) device.Device {
		return device.FoldDevice(append([]device.DeviceEvent{registered("d1", props)}, more...))
	}
	seattle := map[string]any{"fanSpeed": 1200.0, "city": "Seattle", "refrigerated": true, "config": map[string]any{"eco": true}}
	cond := func(p string, op device.Op, v any) device.Set {
		return device.FoldSet([]device.SetEvent{defined("s1", device.Condition{Property: p, Op: op, Value: v})})
	}
	cases := []struct {
		name string
		set  device.Set
		tmpl device.Template
		dev  device.Device
		want bool
	}{
		{"a set without conditions has every device of its template", device.FoldSet([]device.SetEvent{defined("s1")}), vending(), dev(nil), true},
		{"eq on a string", cond("city", device.OpEq, "Seattle"), vending(), dev(seattle), true},
		{"eq on a different string", cond("city", device.OpEq, "Boston"), vending(), dev(seattle), false},
		{"eq compares numbers whatever their Go type", cond("fanSpeed", device.OpEq, json.Number("1200")), vending(), dev(seattle), true},
		{"eq on an object compares the whole object", cond("config", device.OpEq, map[string]any{"eco": true}), vending(), dev(seattle), true},
		{"ne on a different value", cond("city", device.OpNe, "Boston"), vending(), dev(seattle), true},
		{"ne never matches a device without the property", cond("city", device.OpNe, "Boston"), vending(), dev(nil), false},
		{"lt on numbers is numeric", cond("fanSpeed", device.OpLt, 2000.0), vending(), dev(seattle), true},
		{"le includes equality", cond("fanSpeed", device.OpLe, 1200.0), vending(), dev(seattle), true},
		{"gt on numbers", cond("fanSpeed", device.OpGt, 1200.0), vending(), dev(seattle), false},
		{"ge includes equality", cond("fanSpeed", device.OpGe, 1200.0), vending(), dev(seattle), true},
		{"gt on strings is lexical", cond("city", device.OpGt, "Boston"), vending(), dev(seattle), true},
		{"contains on a string is a substring", cond("city", device.OpContains, "att"), vending(), dev(seattle), true},
		{"contains on an object is a key", cond("config", device.OpContains, "eco"), vending(), dev(seattle), true},
		{"contains on an object without the key", cond("config", device.OpContains, "turbo"), vending(), dev(seattle), false},
		{"a device whose value has another schema does not match", cond("fanSpeed", device.OpGt, 10.0), vending(), dev(map[string]any{"fanSpeed": "fast"}), false},
		{"a deleted device never matches", cond("city", device.OpEq, "Seattle"), vending(), dev(seattle, device.Deleted{DeviceID: "d1"}), false},
		{"a device of another template does not match", cond("city", device.OpEq, "Seattle"), vending(),
			device.FoldDevice([]device.DeviceEvent{device.Registered{DeviceID: "d1", Name: "x", TemplateID: "other", Properties: seattle}}), false},
		{"a broken set matches nothing", cond("city", device.OpEq, "Seattle"), device.EvolveTemplate(vending(), device.TemplateDeleted{TemplateID: "vending-v2"}), dev(seattle), false},
		{"a deleted set matches nothing", device.EvolveSet(cond("city", device.OpEq, "Seattle"), device.SetDeleted{SetID: "s1"}), vending(), dev(seattle), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := device.Matches(c.set, c.tmpl, c.dev); got != c.want {
				t.Errorf("Matches = %v, want %v", got, c.want)
			}
		})
	}
}
