package http_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func TestAccessMatrix(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{APIKeys: []fjhttp.APIKey{
		{Key: "aud-key", Role: fjhttp.RoleAuditor},
		{Key: "op-key", Role: fjhttp.RoleOperator},
		{Key: "admin-key-that-is-longer", Role: fjhttp.RoleAdmin},
	}})
	read := Request{Method: "GET", Path: "/api/v1/devices"}
	command := Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(),
		Body: `{"name":"one","templateId":"t1"}`}
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	xkey := func(k string) map[string]string { return map[string]string{"X-API-Key": k} }

	cases := []struct {
		name   string
		req    Request
		header map[string]string
		want   int
	}{
		{"no key may not read", read, nil, 401},
		{"no key may not command", command, nil, 401},
		{"a bad key may not read", read, bearer("nope"), 401},
		{"a prefix of a key is a bad key", read, bearer("op-ke"), 401},
		{"another scheme is no key", read, map[string]string{"Authorization": "Basic b3Ata2V5"}, 401},
		{"auditor reads", read, bearer("aud-key"), 200},
		{"auditor reads with X-API-Key", read, xkey("aud-key"), 200},
		{"auditor may not command", command, bearer("aud-key"), 403},
		{"operator reads", read, bearer("op-key"), 200},
		{"operator commands", command, bearer("op-key"), 200},
		{"operator commands with X-API-Key", command, xkey("op-key"), 200},
		{"admin reads", read, bearer("admin-key-that-is-longer"), 200},
		{"admin commands", command, bearer("admin-key-that-is-longer"), 200},
		{"bearer scheme is case-insensitive", read, map[string]string{"Authorization": "bearer op-key"}, 200},
		{"health is open", Request{Method: "GET", Path: "/healthz"}, nil, 200},
		{"readiness is open", Request{Method: "GET", Path: "/readyz"}, nil, 200},
		{"metrics are open", Request{Method: "GET", Path: "/metrics"}, nil, 200},
		{"the OpenAPI document is open", Request{Method: "GET", Path: "/api/v1/openapi.json"}, nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			req.Header = With(req.Header)
			for k, v := range tc.header {
				req.Header[k] = v
			}
			a := MustDo(t, s.URL(), req)
			if a.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", a.Code, a.Body, tc.want)
			}
			switch tc.want {
			case 401:
				p := a.Problem(t)
				if p.Type != fjhttp.ProblemTypeBase+"unauthenticated" {
					t.Errorf("problem %+v", p)
				}
				if !strings.Contains(p.Detail, `"Authorization: Bearer KEY"`) || !strings.Contains(p.Detail, `"X-API-Key: KEY"`) {
					t.Errorf("401 detail %q: want it to say how to send a key", p.Detail)
				}
				if a.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			case 403:
				if p := a.Problem(t); p.Type != fjhttp.ProblemTypeBase+"forbidden" || !strings.Contains(p.Detail, "auditor") {
					t.Errorf("problem %+v", p)
				}
			}
		})
	}
	// Only the operator's and the admin's commands got through.
	if n := len(rec.Commands()); n != 3 {
		t.Errorf("%d commands recorded, want 3", n)
	}
}

func TestActorNamesTheRoleNotTheKey(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{APIKeys: []fjhttp.APIKey{{Key: "op-secret", Role: fjhttp.RoleOperator}}})
	a := MustDo(t, s.URL(), Request{Method: "DELETE", Path: "/api/v1/devices/d1", Header: map[string]string{"X-API-Key": "op-secret"}})
	if a.Code != 200 {
		t.Fatalf("status %d: %s", a.Code, a.Body)
	}
	cmd := rec.Commands()[0].(fjhttp.DeleteDevice)
	if !strings.HasPrefix(cmd.Meta.Actor, "apikey:operator:") || strings.Contains(cmd.Meta.Actor, "op-secret") {
		t.Errorf("actor %q: want apikey:operator:<digest prefix>, never the key", cmd.Meta.Actor)
	}
}

func TestWithoutKeysEverythingIsAllowedOnLoopback(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	a := MustDo(t, s.URL(), Request{Method: "DELETE", Path: "/api/v1/devices/d1"})
	if a.Code != 200 {
		t.Fatalf("status %d: %s", a.Code, a.Body)
	}
	if got := rec.Commands()[0].(fjhttp.DeleteDevice).Meta.Actor; got != "local" {
		t.Errorf("actor %q, want local", got)
	}
}

func TestOpenRefusesToListenBeyondLoopbackWithoutKeys(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", "[::]:0", ":0"} {
		s := fjhttp.NewServer(fjhttp.Config{Addr: addr})
		err := s.Open()
		if !errors.Is(err, fjhttp.ErrExposed) {
			if err == nil {
				_ = s.Shutdown(t.Context())
			}
			t.Errorf("Open on %s: %v, want ErrExposed", addr, err)
			continue
		}
		if !strings.Contains(err.Error(), "FLEETJOBS_API_KEYS") || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("error %q does not say how to fix it", err)
		}
	}
}

func TestCheckListenAddr(t *testing.T) {
	cases := []struct {
		addr     string
		haveKeys bool
		exposed  bool
	}{
		{"127.0.0.1:8080", false, false},
		{"127.8.9.10:8080", false, false},
		{"[::1]:8080", false, false},
		{"localhost:8080", false, false},
		{"0.0.0.0:8080", false, true},
		{"[::]:8080", false, true},
		{":8080", false, true},
		{"192.168.1.5:8080", false, true},
		{"example.com:8080", false, true},
		{"0.0.0.0:8080", true, false},
		{":8080", true, false},
	}
	for _, tc := range cases {
		err := fjhttp.CheckListenAddr(tc.addr, tc.haveKeys)
		if got := errors.Is(err, fjhttp.ErrExposed); got != tc.exposed {
			t.Errorf("CheckListenAddr(%q, keys %v) = %v, want exposed %v", tc.addr, tc.haveKeys, err, tc.exposed)
		}
	}
}

func TestParseAPIKeys(t *testing.T) {
	got, err := fjhttp.ParseAPIKeys(" k1:operator, k:2:admin ,k3:auditor")
	if err != nil {
		t.Fatal(err)
	}
	want := []fjhttp.APIKey{{Key: "k1", Role: "operator"}, {Key: "k:2", Role: "admin"}, {Key: "k3", Role: "auditor"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if keys, err := fjhttp.ParseAPIKeys("  "); err != nil || keys != nil {
		t.Errorf("blank: %v, %v; want no keys", keys, err)
	}
	for _, bad := range []string{"k1", ":operator", "k1:root", "s3cret:operator,s3cret:admin", "k1:operator,"} {
		_, err := fjhttp.ParseAPIKeys(bad)
		if err == nil {
			t.Errorf("ParseAPIKeys(%q) accepted", bad)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q shows the key", err)
		}
	}
}
