package main_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// vendingBody is the template most tests use.
var vendingBody = map[string]any{
	"name":       "Vending machine v2",
	"settings":   []map[string]string{{"name": "fanSpeed", "schema": "number"}},
	"properties": []map[string]string{{"name": "city", "schema": "string"}, {"name": "temp", "schema": "number"}, {"name": "extras", "schema": "object"}},
	"commands":   []map[string]string{{"name": "reboot", "schema": "object"}},
}

func deviceBody(name, template, city string, temp float64) map[string]any {
	return map[string]any{"name": name, "templateId": template, "properties": map[string]any{"city": city, "temp": temp}}
}

func ids[T any](items []T, id func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

func deviceID(d fjhttp.Device) string { return d.ID }

// TestDeviceRoutes drives every template, device and device-set route of
// API.md through the real server (embedded event store, real Redis), each
// query sent with the consistency token of the command before it
// (read-your-writes).
func TestDeviceRoutes(t *testing.T) {
	url, root := MustRedisURL(t)
	m := MustServe(t, ServeConfig(t, url, root), nil)
	api := m.HTTPURL() + fjhttp.APIBase

	// Templates.
	put := MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)
	if put.Token() == "" {
		t.Fatal("PUT template: no consistency token")
	}
	if ct := put.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q", ct)
	}
	got := MustDecode[fjhttp.Template](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-templates/vending-v2", nil, WithToken(put.Token())), http.StatusOK))
	want := fjhttp.Template{ID: "vending-v2", Name: "Vending machine v2",
		Settings:   []fjhttp.SchemaItem{{Name: "fanSpeed", Schema: "number"}},
		Properties: []fjhttp.SchemaItem{{Name: "city", Schema: "string"}, {Name: "temp", Schema: "number"}, {Name: "extras", Schema: "object"}},
		Commands:   []fjhttp.SchemaItem{{Name: "reboot", Schema: "object"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET template (-want +got):\n%s", diff)
	}
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusOK) // the same body again
	tok := MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/kiosk", map[string]any{"name": "Kiosk", "properties": []map[string]string{{"name": "city", "schema": "string"}}}, nil), http.StatusCreated).Token()
	list := MustDecode[fjhttp.List[fjhttp.Template]](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-templates", nil, WithToken(tok)), http.StatusOK))
	if diff := cmp.Diff([]string{"kiosk", "vending-v2"}, ids(list.Items, func(t fjhttp.Template) string { return t.ID })); diff != "" {
		t.Errorf("GET /device-templates (-want +got):\n%s", diff)
	}

	// Devices, one with an '@' in its ID: the HTTP layer accepts exactly
	// the domain's alphabet.
	for _, d := range []struct {
		id, city string
		temp     float64
	}{{"vm-1", "Seattle", 4}, {"vm-2", "Portland", 5}, {"vm-3@pier-57", "Seattle", 10}} {
		a := MustStatus(t, Do(t, http.MethodPut, api+"/devices/"+d.id, deviceBody("Machine "+d.id, "vending-v2", d.city, d.temp), nil), http.StatusCreated)
		tok = a.Token()
	}
	kioskTok := MustStatus(t, Do(t, http.MethodPut, api+"/devices/kiosk-1", map[string]any{"name": "Kiosk 1", "templateId": "kiosk", "properties": map[string]any{"city": "Seattle"}}, nil), http.StatusCreated).Token()
	dev := MustDecode[fjhttp.Device](t, MustStatus(t, Do(t, http.MethodGet, api+"/devices/vm-3@pier-57", nil, WithToken(tok)), http.StatusOK))
	if diff := cmp.Diff(fjhttp.Device{ID: "vm-3@pier-57", Name: "Machine vm-3@pier-57", TemplateID: "vending-v2", Properties: map[string]any{"city": "Seattle", "temp": 10.0}}, dev); diff != "" {
		t.Errorf("GET device (-want +got):\n%s", diff)
	}
	devices := func(query, token string) fjhttp.List[fjhttp.Device] {
		t.Helper()
		return MustDecode[fjhttp.List[fjhttp.Device]](t, MustStatus(t, Do(t, http.MethodGet, api+"/devices"+query, nil, WithToken(token)), http.StatusOK))
	}
	if got := MustStatus(t, Do(t, http.MethodGet, api+"/devices/kiosk-1", nil, WithToken(kioskTok)), http.StatusOK).Token(); got != "" {
		t.Errorf("a query answered with a token %q", got) // only commands do
	}
	if diff := cmp.Diff([]string{"kiosk-1", "vm-1", "vm-2", "vm-3@pier-57"}, ids(devices("", "").Items, deviceID)); diff != "" {
		t.Errorf("GET /devices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"vm-1", "vm-2", "vm-3@pier-57"}, ids(devices("?templateId=vending-v2", "").Items, deviceID)); diff != "" {
		t.Errorf("GET /devices?templateId= (-want +got):\n%s", diff)
	}
	t.Run("paging", func(t *testing.T) {
		first := devices("?limit=3", "")
		if len(first.Items) != 3 || first.Next == "" {
			t.Fatalf("first page: %d items, next %q", len(first.Items), first.Next)
		}
		second := devices("?limit=3&cursor="+first.Next, "")
		if diff := cmp.Diff([]string{"vm-3@pier-57"}, ids(second.Items, deviceID)); diff != "" || second.Next != "" {
			t.Errorf("second page (-want +got):\n%s next %q", diff, second.Next)
		}
	})

	// Device sets and membership, following property changes.
	set := map[string]any{"name": "Seattle machines", "templateId": "vending-v2",
		"conditions": []map[string]any{{"property": "city", "op": "eq", "value": "Seattle"}}}
	tok = MustStatus(t, Do(t, http.MethodPut, api+"/device-sets/seattle", set, nil), http.StatusCreated).Token()
	members := func(token string) fjhttp.Members {
		t.Helper()
		return MustDecode[fjhttp.Members](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/seattle/devices", nil, WithToken(token)), http.StatusOK))
	}
	if diff := cmp.Diff([]string{"vm-1", "vm-3@pier-57"}, ids(members(tok).Items, deviceID)); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}
	gotSet := MustDecode[fjhttp.DeviceSet](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/seattle", nil, nil), http.StatusOK))
	if diff := cmp.Diff(fjhttp.DeviceSet{ID: "seattle", Name: "Seattle machines", TemplateID: "vending-v2",
		Conditions: []fjhttp.Condition{{Property: "city", Op: "eq", Value: "Seattle"}}}, gotSet); diff != "" {
		t.Errorf("GET set (-want +got):\n%s", diff)
	}
	tok = MustStatus(t, Do(t, http.MethodPut, api+"/devices/vm-2", deviceBody("Machine vm-2", "vending-v2", "Seattle", 5), nil), http.StatusOK).Token()
	if diff := cmp.Diff([]string{"vm-1", "vm-2", "vm-3@pier-57"}, ids(members(tok).Items, deviceID)); diff != "" {
		t.Errorf("members after vm-2 moved to Seattle (-want +got):\n%s", diff)
	}
	tok = MustStatus(t, Do(t, http.MethodPut, api+"/devices/vm-1", deviceBody("Machine vm-1", "vending-v2", "Boston", 4), nil), http.StatusOK).Token()
	if diff := cmp.Diff([]string{"vm-2", "vm-3@pier-57"}, ids(members(tok).Items, deviceID)); diff != "" {
		t.Errorf("members after vm-1 left Seattle (-want +got):\n%s", diff)
	}
	del := MustDecode[fjhttp.Deleted](t, MustStatus(t, Do(t, http.MethodDelete, api+"/devices/vm-3@pier-57", nil, nil), http.StatusOK))
	if !del.Deleted || del.ID != "vm-3@pier-57" {
		t.Errorf("DELETE device answered %+v", del)
	}
	tok = MustStatus(t, Do(t, http.MethodDelete, api+"/devices/vm-2", nil, nil), http.StatusOK).Token()
	if diff := cmp.Diff([]string{}, ids(members(tok).Items, deviceID)); diff != "" {
		t.Errorf("members after deletions (-want +got):\n%s", diff)
	}
	MustProblem(t, Do(t, http.MethodGet, api+"/devices/vm-2", nil, WithToken(tok)), http.StatusNotFound, "")
	MustProblem(t, Do(t, http.MethodPut, api+"/devices/vm-2", deviceBody("Again", "vending-v2", "Seattle", 1), nil), http.StatusConflict, "")
	tok = MustStatus(t, Do(t, http.MethodPut, api+"/devices/vm-4", deviceBody("Machine vm-4", "vending-v2", "Seattle", 7), nil), http.StatusCreated).Token()
	if diff := cmp.Diff([]string{"vm-4"}, ids(members(tok).Items, deviceID)); diff != "" {
		t.Errorf("members after vm-4 registered (-want +got):\n%s", diff)
	}

	// Another set, listed, then deleted.
	tok = MustStatus(t, Do(t, http.MethodPut, api+"/device-sets/warm", map[string]any{"name": "Warm", "templateId": "vending-v2",
		"conditions": []map[string]any{{"property": "temp", "op": "ge", "value": 6}}}, nil), http.StatusCreated).Token()
	sets := MustDecode[fjhttp.List[fjhttp.DeviceSet]](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets", nil, WithToken(tok)), http.StatusOK))
	if diff := cmp.Diff([]string{"seattle", "warm"}, ids(sets.Items, func(s fjhttp.DeviceSet) string { return s.ID })); diff != "" {
		t.Errorf("GET /device-sets (-want +got):\n%s", diff)
	}
	tok = MustStatus(t, Do(t, http.MethodDelete, api+"/device-sets/warm", nil, nil), http.StatusOK).Token()
	MustProblem(t, Do(t, http.MethodGet, api+"/device-sets/warm", nil, WithToken(tok)), http.StatusNotFound, "")
	MustProblem(t, Do(t, http.MethodGet, api+"/device-sets/warm/devices", nil, nil), http.StatusNotFound, "")

	// Deleting the template: allowed, says who it leaves unusable, and the
	// set becomes broken with a reason and no members.
	a := MustStatus(t, Do(t, http.MethodDelete, api+"/device-templates/vending-v2", nil, nil), http.StatusOK)
	del = MustDecode[fjhttp.Deleted](t, a)
	if len(del.Notes) != 1 || !strings.Contains(del.Notes[0], "2 devices") || !strings.Contains(del.Notes[0], "1 device set") {
		t.Errorf("DELETE template notes %q: want 2 devices (vm-1, vm-4) and 1 device set (seattle)", del.Notes)
	}
	tok = a.Token()
	broken := MustDecode[fjhttp.DeviceSet](t, MustStatus(t, Do(t, http.MethodGet, api+"/device-sets/seattle", nil, WithToken(tok)), http.StatusOK))
	if !broken.Broken || !strings.Contains(broken.BrokenReason, "vending-v2") {
		t.Errorf("set after template deletion: broken %v, reason %q", broken.Broken, broken.BrokenReason)
	}
	mem := members(tok)
	if len(mem.Items) != 0 || !mem.Broken || mem.BrokenReason == "" {
		t.Errorf("members of a broken set: %+v", mem)
	}
	unusable := MustDecode[fjhttp.Device](t, MustStatus(t, Do(t, http.MethodGet, api+"/devices/vm-4", nil, nil), http.StatusOK))
	if !unusable.Unusable || unusable.UnusableReason == "" {
		t.Errorf("device of a deleted template: %+v", unusable)
	}
	MustProblem(t, Do(t, http.MethodGet, api+"/device-templates/vending-v2", nil, nil), http.StatusNotFound, "")

	// Publishing it again repairs the set.
	tok = MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusOK).Token()
	if diff := cmp.Diff([]string{"vm-4"}, ids(members(tok).Items, deviceID)); diff != "" {
		t.Errorf("members after the template came back (-want +got):\n%s", diff)
	}

	t.Run("malformed consistency token", func(t *testing.T) {
		MustProblem(t, Do(t, http.MethodGet, api+"/devices", nil, WithToken("yesterday")), http.StatusBadRequest, fjhttp.ConsistencyTokenHeader)
	})
	t.Run("metrics show the projections", func(t *testing.T) {
		body := string(MustStatus(t, Do(t, http.MethodGet, m.HTTPURL()+"/metrics", nil, nil), http.StatusOK).Body)
		for _, want := range []string{"fleetjobs_projection_events_applied_total", "fleetjobs_projection_batches_total", "fleetjobs_projection_lag_bytes", "fleetjobs_projection_caught_up 1", "fleetjobs_projection_failing 0"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
	})
}

// TestImport imports NDJSON and CSV through POST /devices:import and reads
// the devices back with the answer's token.
func TestImport(t *testing.T) {
	url, root := MustRedisURL(t)
	m := MustServe(t, ServeConfig(t, url, root), nil)
	api := m.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)

	ndjson := `{"deviceId":"n-1","name":"N 1","templateId":"vending-v2","properties":{"city":"Seattle","temp":3}}
{"deviceId":"n-2","name":"N 2","templateId":"vending-v2","properties":{"city":"Oslo","extras":{"door":"left"}}}

{"deviceId":"n-3","name":"N 3","templateId":"vending-v2"}
`
	a := MustStatus(t, Do(t, http.MethodPost, api+"/devices:import", ndjson, map[string]string{"Content-Type": fjhttp.MIMENDJSON}), http.StatusOK)
	got := MustDecode[importAnswer](t, a)
	if diff := cmp.Diff(importAnswer{Total: 3, Registered: 3}, got.counts()); diff != "" {
		t.Errorf("NDJSON import answer (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"n-1", "n-2", "n-3"}, ids(got.DeviceKeys, func(k fjhttp.DeviceKey) string { return k.DeviceID })); diff != "" {
		t.Errorf("devices given a key (-want +got):\n%s", diff)
	}
	n2 := MustDecode[fjhttp.Device](t, MustStatus(t, Do(t, http.MethodGet, api+"/devices/n-2", nil, WithToken(a.Token())), http.StatusOK))
	if diff := cmp.Diff(fjhttp.Device{ID: "n-2", Name: "N 2", TemplateID: "vending-v2", Properties: map[string]any{"city": "Oslo", "extras": map[string]any{"door": "left"}}}, n2); diff != "" {
		t.Errorf("imported device (-want +got):\n%s", diff)
	}

	csv := "deviceId,name,templateId,prop.city,prop.temp\nc-1,C 1,vending-v2,Seattle,21.5\nc-2,\"C 2, the second\",vending-v2,Lima,\n"
	a = MustStatus(t, Do(t, http.MethodPost, api+"/devices:import", csv, map[string]string{"Content-Type": fjhttp.MIMECSV}), http.StatusOK)
	list := MustDecode[fjhttp.List[fjhttp.Device]](t, MustStatus(t, Do(t, http.MethodGet, api+"/devices?templateId=vending-v2", nil, WithToken(a.Token())), http.StatusOK))
	want := []fjhttp.Device{
		{ID: "c-1", Name: "C 1", TemplateID: "vending-v2", Properties: map[string]any{"city": "Seattle", "temp": 21.5}},
		{ID: "c-2", Name: "C 2, the second", TemplateID: "vending-v2", Properties: map[string]any{"city": "Lima"}},
		{ID: "n-1", Name: "N 1", TemplateID: "vending-v2", Properties: map[string]any{"city": "Seattle", "temp": 3.0}},
		{ID: "n-2", Name: "N 2", TemplateID: "vending-v2", Properties: map[string]any{"city": "Oslo", "extras": map[string]any{"door": "left"}}},
		{ID: "n-3", Name: "N 3", TemplateID: "vending-v2", Properties: map[string]any{}},
	}
	if diff := cmp.Diff(want, list.Items); diff != "" {
		t.Errorf("devices after both imports (-want +got):\n%s", diff)
	}

	// The same import again changes nothing.
	a = MustStatus(t, Do(t, http.MethodPost, api+"/devices:import", csv, map[string]string{"Content-Type": fjhttp.MIMECSV}), http.StatusOK)
	if diff := cmp.Diff(importAnswer{Total: 2, Unchanged: 2, DeviceKeys: []fjhttp.DeviceKey{}}, MustDecode[importAnswer](t, a)); diff != "" {
		t.Errorf("repeated import answer (-want +got):\n%s", diff)
	}
}

// importAnswer is the body of POST /devices:import.
type importAnswer struct {
	Total, Registered, Updated, Unchanged int
	DeviceKeys                            []fjhttp.DeviceKey
}

// counts is a without its keys.
func (a importAnswer) counts() importAnswer {
	a.DeviceKeys = nil
	return a
}
