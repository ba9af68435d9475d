package http_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func TestIssueKeyRouteTakesTheLastVerb(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{NewID: func() string { return "cmd-1" }})
	rec.key = "secret-key"
	meta := fjhttp.CommandMeta{CommandID: "cmd-1", CorrelationID: "cmd-1", Actor: "local"}
	for _, tc := range []struct{ path, id string }{
		{"/api/v1/devices/vm-1:issueKey", "vm-1"},
		{"/api/v1/devices/vm:1:issueKey", "vm:1"},
		{"/api/v1/devices/vm:issueKey:issueKey", "vm:issueKey"},
	} {
		a := MustDo(t, s.URL(), Request{Method: "POST", Path: tc.path})
		if a.Code != 200 {
			t.Fatalf("%s: status %d: %s", tc.path, a.Code, a.Body)
		}
		if diff := cmp.Diff(fjhttp.DeviceKey{DeviceID: tc.id, DeviceKey: "secret-key"}, MustDecode[fjhttp.DeviceKey](t, a)); diff != "" {
			t.Errorf("%s: answer (-want +got):\n%s", tc.path, diff)
		}
		cmds := rec.Commands()
		if diff := cmp.Diff(fjhttp.IssueDeviceKey{Meta: meta, DeviceID: tc.id}, cmds[len(cmds)-1]); diff != "" {
			t.Errorf("%s: command (-want +got):\n%s", tc.path, diff)
		}
	}
	n := len(rec.Commands())
	if a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices/vm-1"}); a.Code != 404 {
		t.Errorf("POST of a device without a verb: status %d, want 404", a.Code)
	}
	if a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices/:issueKey"}); a.Code != 400 || a.Problem(t).Errors[0].Field != "deviceId" {
		t.Errorf("POST :issueKey without an ID: status %d %s, want 400 naming deviceId", a.Code, a.Body)
	}
	if len(rec.Commands()) != n {
		t.Error("a refused request reached the commands")
	}
}

func TestDeviceKeyIsInTheCommandAnswerOnly(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	rec.created = true
	rec.key = "secret-key"
	a := MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(), Body: `{"name":"one","templateId":"t"}`})
	if a.Code != 201 {
		t.Fatalf("status %d: %s", a.Code, a.Body)
	}
	if got := MustDecode[map[string]any](t, a)["deviceKey"]; got != "secret-key" {
		t.Errorf("deviceKey %v in %s, want secret-key", got, a.Body)
	}
	rec.key, rec.created = "", false
	a = MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(), Body: `{"name":"one","templateId":"t"}`})
	if _, ok := MustDecode[map[string]any](t, a)["deviceKey"]; ok {
		t.Errorf("an answer without a key has a deviceKey field: %s", a.Body)
	}
}
