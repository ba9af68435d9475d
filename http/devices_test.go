package http_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func TestCommandRoutesBuildTheirCommands(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{NewID: func() string { return "cmd-1" }})
	meta := fjhttp.CommandMeta{CommandID: "cmd-1", CorrelationID: "cmd-1", Actor: "local"}
	cases := []struct {
		name string
		req  Request
		want any
	}{
		{"publish template", Request{Method: "PUT", Path: "/api/v1/device-templates/vending", Header: JSONHeader(),
			Body: `{"name":"Vending","settings":[{"name":"fanSpeed","schema":"number"}],"properties":[{"name":"city","schema":"string"}]}`},
			fjhttp.PublishTemplate{Meta: meta, TemplateID: "vending", Name: "Vending",
				Settings: []fjhttp.SchemaItem{{Name: "fanSpeed", Schema: "number"}}, Properties: []fjhttp.SchemaItem{{Name: "city", Schema: "string"}}, Commands: []fjhttp.SchemaItem{}}},
		{"delete template", Request{Method: "DELETE", Path: "/api/v1/device-templates/vending"},
			fjhttp.DeleteTemplate{Meta: meta, TemplateID: "vending"}},
		{"register device, with an idempotency key and a correlation id", Request{Method: "PUT", Path: "/api/v1/devices/vm:1",
			Header: With(JSONHeader(), "Idempotency-Key", "retry-7", "X-Correlation-Id", "batch-3"),
			Body:   `{"name":"VM 1","templateId":"vending","properties":{"city":"Seattle"}}`},
			fjhttp.RegisterDevice{Meta: fjhttp.CommandMeta{CommandID: "retry-7", CorrelationID: "batch-3", Actor: "local"},
				DeviceID: "vm:1", Name: "VM 1", TemplateID: "vending", Properties: map[string]any{"city": "Seattle"}}},
		{"delete device", Request{Method: "DELETE", Path: "/api/v1/devices/vm:1"},
			fjhttp.DeleteDevice{Meta: meta, DeviceID: "vm:1"}},
		{"define set", Request{Method: "PUT", Path: "/api/v1/device-sets/seattle", Header: JSONHeader(),
			Body: `{"name":"Seattle","templateId":"vending","conditions":[{"property":"city","op":"eq","value":"Seattle"}]}`},
			fjhttp.DefineDeviceSet{Meta: meta, SetID: "seattle", Name: "Seattle", TemplateID: "vending",
				Conditions: []fjhttp.Condition{{Property: "city", Op: "eq", Value: "Seattle"}}}},
		{"delete set", Request{Method: "DELETE", Path: "/api/v1/device-sets/seattle"},
			fjhttp.DeleteDeviceSet{Meta: meta, SetID: "seattle"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := MustDo(t, s.URL(), tc.req)
			if a.Code != 200 {
				t.Fatalf("status %d: %s", a.Code, a.Body)
			}
			// A keyed command's ID is the key and a digest of the request
			// (TestIdempotencyKeyNamesOneRequest): compare the key.
			keyOnly := cmp.Transformer("key", func(m fjhttp.CommandMeta) fjhttp.CommandMeta {
				if k, _, ok := strings.Cut(m.CommandID, "."); ok && k == "retry-7" {
					m.CommandID = k
				}
				return m
			})
			if diff := cmp.Diff(tc.want, rec.Commands()[i], keyOnly); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCommandAnswers(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	rec.created = true
	rec.notes = []string{"2 devices use this template: they become unusable"}
	a := MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(), Body: `{"name":"one","templateId":"t"}`})
	if a.Code != 201 {
		t.Fatalf("status %d, want 201 for a new device", a.Code)
	}
	want := fjhttp.Device{ID: "d1", Name: "one", TemplateID: "t", Properties: map[string]any{}, Notes: rec.notes}
	if diff := cmp.Diff(want, MustDecode[fjhttp.Device](t, a)); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	a = MustDo(t, s.URL(), Request{Method: "DELETE", Path: "/api/v1/device-templates/t"})
	wantDel := fjhttp.Deleted{ID: "t", Deleted: true, Notes: rec.notes}
	if diff := cmp.Diff(wantDel, MustDecode[fjhttp.Deleted](t, a)); diff != "" || a.Header.Get(fjhttp.ConsistencyTokenHeader) == "" {
		t.Errorf("delete answer (-want +got):\n%s (token %q)", diff, a.Header.Get(fjhttp.ConsistencyTokenHeader))
	}
}

func TestCommandErrorsAreTranslated(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	cases := []struct {
		err  error
		want int
	}{
		{fmt.Errorf("device d1: %w", fjhttp.ErrNotFound), 404},
		{fmt.Errorf("template t: %w: published with another body", fjhttp.ErrConflict), 409},
		{&fjhttp.ValidationError{Fields: []fjhttp.FieldError{{Field: "properties.fanSpeed", Message: "must be a number (the template says so)"}}}, 400},
		{fmt.Errorf("register d1: %w", domain.Invalid("properties.fanSpeed", "must be a number")), 400},
		{fmt.Errorf("delete d1: %w", domain.NotFound("no device d1")), 404},
		{fmt.Errorf("register d1: %w", domain.Conflict("device d1 was deleted")), 409},
		{fmt.Errorf("append: connection reset"), 500},
	}
	for _, tc := range cases {
		rec.err = tc.err
		a := MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(), Body: `{"name":"one","templateId":"t"}`})
		if a.Code != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, a.Code, tc.want)
		}
		p := a.Problem(t)
		if tc.want == 500 && p.Detail != "" {
			t.Errorf("a 500 shows its detail %q", p.Detail)
		}
		if tc.want == 400 && (len(p.Errors) != 1 || p.Errors[0].Field != "properties.fanSpeed") {
			t.Errorf("%v: errors %+v, want properties.fanSpeed named", tc.err, p.Errors)
		}
	}
}

func TestQueryRoutes(t *testing.T) {
	s, _, v := MustOpenAPI(t, fjhttp.Config{})
	v.templates["t"] = fjhttp.Template{ID: "t", Name: "Vending", Settings: []fjhttp.SchemaItem{}, Properties: []fjhttp.SchemaItem{}, Commands: []fjhttp.SchemaItem{}}
	v.devices["d1"] = fjhttp.Device{ID: "d1", Name: "one", TemplateID: "t", Properties: map[string]any{"city": "Seattle"}}
	v.sets["ok"] = fjhttp.DeviceSet{ID: "ok", Name: "fine", TemplateID: "t", Conditions: []fjhttp.Condition{}}
	v.sets["broken"] = fjhttp.DeviceSet{ID: "broken", Name: "b", TemplateID: "gone", Conditions: []fjhttp.Condition{},
		Broken: true, BrokenReason: "its template gone was deleted"}

	if got := MustDecode[fjhttp.Template](t, MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-templates/t"})); got.Name != "Vending" {
		t.Errorf("template %+v", got)
	}
	if got := MustDecode[fjhttp.Device](t, MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices/d1"})); got.Properties["city"] != "Seattle" {
		t.Errorf("device %+v", got)
	}
	if a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices/nope"}); a.Code != 404 || a.Problem(t).Type != fjhttp.ProblemTypeBase+"not-found" {
		t.Errorf("unknown device: %d %s", a.Code, a.Body)
	}
	list := MustDecode[fjhttp.List[fjhttp.Device]](t, MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices?templateId=t&limit=2"}))
	if diff := cmp.Diff(fjhttp.List[fjhttp.Device]{Items: []fjhttp.Device{}, Next: "c2"}, list); diff != "" {
		t.Errorf("device list (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]fjhttp.DeviceFilter{{TemplateID: "t"}}, v.filters); diff != "" {
		t.Errorf("filters (-want +got):\n%s", diff)
	}
	if a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices?templateId=a%20b"}); a.Code != 400 {
		t.Errorf("bad templateId filter: status %d", a.Code)
	}
	members := MustDecode[fjhttp.Members](t, MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-sets/broken/devices"}))
	if diff := cmp.Diff(fjhttp.Members{Items: []fjhttp.Device{}, Broken: true, BrokenReason: "its template gone was deleted"}, members); diff != "" {
		t.Errorf("members of a broken set (-want +got):\n%s", diff)
	}
	members = MustDecode[fjhttp.Members](t, MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-sets/ok/devices"}))
	if len(members.Items) != 1 || members.Broken {
		t.Errorf("members %+v", members)
	}
	if got := MustDecode[fjhttp.DeviceSet](t, MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-sets/broken"})); !got.Broken {
		t.Errorf("set %+v", got)
	}
	for _, p := range []string{"/api/v1/device-templates", "/api/v1/device-sets"} {
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: p})
		if string(a.Body) != `{"items":[],"next":""}`+"\n" {
			t.Errorf("%s: %s, want an empty page with items []", p, a.Body)
		}
	}
}

// An Idempotency-Key names one request: sent again with the key (even
// encoded otherwise), it is the same command; another request under the
// same key is another command, never taken for a retry of the first.
func TestIdempotencyKeyNamesOneRequest(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	send := func(method, path, key, body string) string {
		t.Helper()
		h := With(JSONHeader(), "Idempotency-Key", key)
		n := len(rec.Commands())
		a := MustDo(t, s.URL(), Request{Method: method, Path: path, Header: h, Body: body})
		if a.Code >= 300 || len(rec.Commands()) != n+1 {
			t.Fatalf("%s %s: %d %s", method, path, a.Code, a.Body)
		}
		switch c := rec.Commands()[n].(type) {
		case fjhttp.RegisterDevice:
			return c.Meta.CommandID
		case fjhttp.DeleteDevice:
			return c.Meta.CommandID
		default:
			t.Fatalf("%s %s: command %T", method, path, c)
			return ""
		}
	}
	first := send("PUT", "/api/v1/devices/d1", "k1", `{"name":"One","templateId":"t","properties":{"a":1,"b":"x"}}`)
	if !strings.HasPrefix(first, "k1.") {
		t.Errorf("command ID %q does not start with the key", first)
	}
	for _, retry := range []string{
		`{"name":"One","templateId":"t","properties":{"a":1,"b":"x"}}`,
		`{ "templateId": "t", "properties": {"b": "x", "a": 1.0}, "name": "One" }`,
	} {
		if got := send("PUT", "/api/v1/devices/d1", "k1", retry); got != first {
			t.Errorf("retry %s: command ID %q, want %q", retry, got, first)
		}
	}
	others := map[string]string{"first": first}
	for name, id := range map[string]string{
		"another name":   send("PUT", "/api/v1/devices/d1", "k1", `{"name":"Two","templateId":"t","properties":{"a":1,"b":"x"}}`),
		"another device": send("PUT", "/api/v1/devices/d2", "k1", `{"name":"One","templateId":"t","properties":{"a":1,"b":"x"}}`),
		"a delete":       send("DELETE", "/api/v1/devices/d1", "k1", ""),
		"another key":    send("PUT", "/api/v1/devices/d1", "k2", `{"name":"One","templateId":"t","properties":{"a":1,"b":"x"}}`),
	} {
		for was, other := range others {
			if id == other {
				t.Errorf("%s has the command ID of %s: %q", name, was, id)
			}
		}
		others[name] = id
	}
}
