package main_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// MustProblem checks that a is a problem+json answer with status and, when
// field is not empty, a field error naming field; it returns the problem.
func MustProblem(tb testing.TB, a Answer, status int, field string) fjhttp.Problem {
	tb.Helper()
	if a.Status != status {
		tb.Fatalf("status %d, want %d; body: %s", a.Status, status, a.Body)
	}
	if ct := a.Header.Get("Content-Type"); !strings.HasPrefix(ct, fjhttp.MIMEProblem) {
		tb.Errorf("content type %q, want %s", ct, fjhttp.MIMEProblem)
	}
	p := MustDecode[fjhttp.Problem](tb, a)
	if p.Status != status {
		tb.Errorf("problem status %d, want %d", p.Status, status)
	}
	if field == "" {
		return p
	}
	for _, f := range p.Errors {
		if f.Field == field {
			return p
		}
	}
	tb.Errorf("problem names no field %q: %s", field, a.Body)
	return p
}

// TestBadInputRecordsNothing sends every bad input of issue 3 (unknown
// template, property of the wrong schema, unknown op, malformed JSON,
// oversized body, unknown fields; and their import forms) and checks each
// answer names the field and that nothing reached the log.
func TestBadInputRecordsNothing(t *testing.T) {
	url, root := MustRedisURL(t)
	m := MustServe(t, ServeConfig(t, url, root), nil)
	api := m.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)
	es := MustEventStore(t, m)

	ndjson := map[string]string{"Content-Type": fjhttp.MIMENDJSON}
	csv := map[string]string{"Content-Type": fjhttp.MIMECSV}
	huge := `{"name":"` + strings.Repeat("x", fjhttp.DefaultMaxBodyBytes) + `","templateId":"vending-v2"}`
	cases := []struct {
		name, method, path string
		body               any
		headers            map[string]string
		status             int
		field              string
		stream             string // a stream that must not exist afterwards
	}{
		{"unknown template", http.MethodPut, "/devices/d-1", deviceBody("D 1", "no-such-template", "Oslo", 1), nil, http.StatusBadRequest, "templateId", eventstore.DeviceStream("d-1")},
		{"property of the wrong schema", http.MethodPut, "/devices/d-1", map[string]any{"name": "D 1", "templateId": "vending-v2", "properties": map[string]any{"temp": "warm"}}, nil, http.StatusBadRequest, "properties.temp", eventstore.DeviceStream("d-1")},
		{"property the template lacks", http.MethodPut, "/devices/d-1", map[string]any{"name": "D 1", "templateId": "vending-v2", "properties": map[string]any{"colour": "red"}}, nil, http.StatusBadRequest, "properties.colour", eventstore.DeviceStream("d-1")},
		{"unknown op", http.MethodPut, "/device-sets/s-1", map[string]any{"name": "S", "templateId": "vending-v2", "conditions": []map[string]any{{"property": "city", "op": "near", "value": "Oslo"}}}, nil, http.StatusBadRequest, "conditions[0].op", eventstore.DeviceSetStream("s-1")},
		{"set on an unknown template", http.MethodPut, "/device-sets/s-1", map[string]any{"name": "S", "templateId": "nope", "conditions": []map[string]any{}}, nil, http.StatusBadRequest, "templateId", eventstore.DeviceSetStream("s-1")},
		{"condition on a property the template lacks", http.MethodPut, "/device-sets/s-1", map[string]any{"name": "S", "templateId": "vending-v2", "conditions": []map[string]any{{"property": "colour", "op": "eq", "value": "red"}}}, nil, http.StatusBadRequest, "conditions[0].property", eventstore.DeviceSetStream("s-1")},
		{"unknown schema", http.MethodPut, "/device-templates/t-1", map[string]any{"name": "T", "properties": []map[string]string{{"name": "x", "schema": "date"}}}, nil, http.StatusBadRequest, "properties[0].schema", eventstore.TemplateStream("t-1")},
		{"malformed JSON", http.MethodPut, "/devices/d-1", `{"name": "D 1",`, nil, http.StatusBadRequest, "body", eventstore.DeviceStream("d-1")},
		{"wrong JSON type", http.MethodPut, "/devices/d-1", `{"name": 12, "templateId": "vending-v2"}`, nil, http.StatusBadRequest, "name", eventstore.DeviceStream("d-1")},
		{"unknown field", http.MethodPut, "/devices/d-1", `{"name": "D 1", "templateId": "vending-v2", "colour": "red"}`, nil, http.StatusBadRequest, "colour", eventstore.DeviceStream("d-1")},
		{"unknown field in a condition", http.MethodPut, "/device-sets/s-1", `{"name": "S", "templateId": "vending-v2", "conditions": [{"property": "city", "op": "eq", "value": "Oslo", "weight": 2}]}`, nil, http.StatusBadRequest, "conditions[0].weight", eventstore.DeviceSetStream("s-1")},
		{"property nested too deep", http.MethodPut, "/devices/d-1", `{"name":"D 1","templateId":"vending-v2","properties":{"extras":` + strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40) + `}}`, nil, http.StatusBadRequest, "properties.extras", eventstore.DeviceStream("d-1")},
		{"property beyond 2^53", http.MethodPut, "/devices/d-1", `{"name":"D 1","templateId":"vending-v2","properties":{"temp":123456789012345678901234567890}}`, nil, http.StatusBadRequest, "properties.temp", eventstore.DeviceStream("d-1")},
		{"name with a lone surrogate", http.MethodPut, "/devices/d-1", `{"name":"D \udfff","templateId":"vending-v2"}`, nil, http.StatusBadRequest, "name", eventstore.DeviceStream("d-1")},
		{"import: name not UTF-8", http.MethodPost, "/devices:import", "deviceId,name,templateId\ni-1,I \xff,vending-v2\n", csv, http.StatusUnprocessableEntity, "rows[0].name", eventstore.DeviceStream("i-1")},
		{"a body on a DELETE", http.MethodDelete, "/device-templates/vending-v2", `{"force":true}`, nil, http.StatusBadRequest, "body", ""},
		{"a body on issueKey", http.MethodPost, "/devices/d-1:issueKey", "garbage", map[string]string{"Content-Type": "text/plain"}, http.StatusBadRequest, "body", eventstore.DeviceStream("d-1")},
		{"oversized body", http.MethodPut, "/devices/d-1", huge, nil, http.StatusRequestEntityTooLarge, "body", eventstore.DeviceStream("d-1")},
		{"bad id in the path", http.MethodPut, "/devices/d%201", deviceBody("D 1", "vending-v2", "Oslo", 1), nil, http.StatusBadRequest, "deviceId", ""},
		{"import: unknown template", http.MethodPost, "/devices:import",
			`{"deviceId":"i-1","name":"I 1","templateId":"vending-v2"}` + "\n" + `{"deviceId":"i-2","name":"I 2","templateId":"nope"}`, ndjson,
			http.StatusUnprocessableEntity, "rows[1].templateId", eventstore.DeviceStream("i-1")},
		{"import: property of the wrong schema", http.MethodPost, "/devices:import",
			"deviceId,name,templateId,prop.temp\ni-1,I 1,vending-v2,12\ni-2,I 2,vending-v2,warm\n", csv,
			http.StatusUnprocessableEntity, "rows[1].properties.temp", eventstore.DeviceStream("i-1")},
		{"import: malformed JSON row", http.MethodPost, "/devices:import",
			`{"deviceId":"i-1","name":"I 1","templateId":"vending-v2"}` + "\n" + `{"deviceId":"i-2",`, ndjson,
			http.StatusUnprocessableEntity, "rows[1]", eventstore.DeviceStream("i-1")},
		{"import: unknown field", http.MethodPost, "/devices:import",
			`{"deviceId":"i-1","name":"I 1","templateId":"vending-v2","colour":"red"}`, ndjson,
			http.StatusUnprocessableEntity, "rows[0].colour", eventstore.DeviceStream("i-1")},
		{"import: a device twice", http.MethodPost, "/devices:import",
			"deviceId,name,templateId\ni-1,I 1,vending-v2\ni-1,I 1 again,vending-v2\n", csv,
			http.StatusUnprocessableEntity, "rows[1].deviceId", eventstore.DeviceStream("i-1")},
		{"import: bad CSV header", http.MethodPost, "/devices:import",
			"id,name,templateId\ni-1,I 1,vending-v2\n", csv,
			http.StatusUnprocessableEntity, "header[0]", eventstore.DeviceStream("i-1")},
		{"import: unsupported media type", http.MethodPost, "/devices:import",
			`{"deviceId":"i-1","name":"I 1","templateId":"vending-v2"}`, nil,
			http.StatusUnsupportedMediaType, "", eventstore.DeviceStream("i-1")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := MustHead(t, es)
			MustProblem(t, Do(t, tc.method, api+tc.path, tc.body, tc.headers), tc.status, tc.field)
			if after := MustHead(t, es); after != before {
				t.Errorf("the log moved from %s to %s: something was recorded", before, after)
			}
			if tc.stream != "" {
				MustNoStream(t, es, tc.stream)
			}
		})
	}
}

// TestImportListsEveryProblem: an import refused for rows the HTTP layer
// refuses (a name missing) and rows the domain refuses (a property of the
// wrong schema, an unknown template, a deleted device) lists all of them in
// one answer, in row order, and records nothing.
func TestImportListsEveryProblem(t *testing.T) {
	url, root := MustRedisURL(t)
	m := MustServe(t, ServeConfig(t, url, root), nil)
	api := m.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodPut, api+"/devices/gone", deviceBody("Gone", "vending-v2", "Oslo", 1), nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodDelete, api+"/devices/gone", nil, nil), http.StatusOK)
	es := MustEventStore(t, m)
	ndjson := map[string]string{"Content-Type": fjhttp.MIMENDJSON}
	for _, c := range []struct {
		name, body string
		want       []string
	}{
		{"a type error, then a name missing",
			`{"deviceId":"i-1","name":"I 1","templateId":"vending-v2","properties":{"city":5}}` + "\n" + `{"deviceId":"i-2","name":"","templateId":"vending-v2"}`,
			[]string{"rows[0].properties.city", "rows[1].name"}},
		{"a name missing, an unknown template, a deleted device, a malformed row",
			`{"deviceId":"i-1","name":"","templateId":"vending-v2"}` + "\n" + `{"deviceId":"i-2","name":"I 2","templateId":"nope"}` + "\n" +
				`{"deviceId":"gone","name":"Back","templateId":"vending-v2"}` + "\n" + `{"deviceId":"i-4",`,
			[]string{"rows[0].name", "rows[1].templateId", "rows[2]", "rows[3]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := MustHead(t, es)
			p := MustProblem(t, Do(t, http.MethodPost, api+"/devices:import", c.body, ndjson), http.StatusUnprocessableEntity, "")
			var got []string
			for _, f := range p.Errors {
				got = append(got, f.Field)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s\n%s", diff, p.Errors)
			}
			if after := MustHead(t, es); after != before {
				t.Errorf("the log moved from %s to %s: something was recorded", before, after)
			}
		})
	}
}

// MustNoStream checks that stream has no events.
func MustNoStream(tb testing.TB, es *eventstore.Client, stream string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := 0
	err := es.ReadStream(ctx, stream, 0, func(eventstore.Recorded) error { n++; return nil })
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		tb.Errorf("stream %s: %d events, err %v; want no stream", stream, n, err)
	}
}

// TestAccessByRole pins that auditors read and may not command, operators
// may, and a request without a key is refused.
func TestAccessByRole(t *testing.T) {
	url, root := MustRedisURL(t)
	cfg := ServeConfig(t, url, root)
	cfg.APIKeys = []main.APIKey{{Key: "audit-key-0123456789", Role: fjhttp.RoleAuditor}, {Key: "op-key-0123456789", Role: fjhttp.RoleOperator}}
	m := MustServe(t, cfg, nil)
	api := m.HTTPURL() + fjhttp.APIBase
	auditor := map[string]string{"Authorization": "Bearer audit-key-0123456789"}
	operator := map[string]string{fjhttp.APIKeyHeader: "op-key-0123456789"}

	tok := MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, operator), http.StatusCreated).Token()
	h := WithToken(tok)
	h["Authorization"] = auditor["Authorization"]
	MustStatus(t, Do(t, http.MethodGet, api+"/device-templates/vending-v2", nil, h), http.StatusOK)
	MustStatus(t, Do(t, http.MethodGet, api+"/devices", nil, auditor), http.StatusOK)

	es := MustEventStore(t, m)
	before := MustHead(t, es)
	MustProblem(t, Do(t, http.MethodPut, api+"/devices/d-1", deviceBody("D 1", "vending-v2", "Oslo", 1), auditor), http.StatusForbidden, "")
	MustProblem(t, Do(t, http.MethodDelete, api+"/device-templates/vending-v2", nil, auditor), http.StatusForbidden, "")
	MustProblem(t, Do(t, http.MethodPost, api+"/devices:import", `{"deviceId":"d-1","name":"D","templateId":"vending-v2"}`, map[string]string{"Authorization": auditor["Authorization"], "Content-Type": fjhttp.MIMENDJSON}), http.StatusForbidden, "")
	MustProblem(t, Do(t, http.MethodGet, api+"/devices", nil, nil), http.StatusUnauthorized, "")
	MustProblem(t, Do(t, http.MethodGet, api+"/devices", nil, map[string]string{"Authorization": "Bearer wrong"}), http.StatusUnauthorized, "")
	if after := MustHead(t, es); after != before {
		t.Errorf("refused requests recorded events: log moved from %s to %s", before, after)
	}
	MustStatus(t, Do(t, http.MethodGet, m.HTTPURL()+"/readyz", nil, nil), http.StatusOK) // probes stay open
}

// TestEmbeddedRedisRebuildsFromTheLog is the smoke test of the default:
// without FLEETJOBS_REDIS_URL serve runs the embedded Redis, which starts
// empty, so after a restart on the same data directory the read models are
// rebuilt from the log and answer as before.
func TestEmbeddedRedisRebuildsFromTheLog(t *testing.T) {
	cfg := ServeConfig(t, "", "")
	logger := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	first := main.NewMain(cfg, logger)
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	MustBeReady(t, first.HTTPURL())
	api := first.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodPut, api+"/devices/vm-1", deviceBody("VM 1", "vending-v2", "Seattle", 4), nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodPut, api+"/devices/vm-2", deviceBody("VM 2", "vending-v2", "Oslo", 4), nil), http.StatusCreated)
	MustStatus(t, Do(t, http.MethodDelete, api+"/devices/vm-2", nil, nil), http.StatusOK)
	tok := MustStatus(t, Do(t, http.MethodPut, api+"/device-sets/seattle", map[string]any{"name": "Seattle", "templateId": "vending-v2",
		"conditions": []map[string]any{{"property": "city", "op": "eq", "value": "Seattle"}}}, nil), http.StatusCreated).Token()

	paths := []string{"/device-templates", "/device-templates/vending-v2", "/devices", "/devices/vm-1", "/device-sets", "/device-sets/seattle", "/device-sets/seattle/devices"}
	answers := func(base, token string) map[string]string {
		t.Helper()
		out := make(map[string]string)
		for _, p := range paths {
			out[p] = string(MustStatus(t, Do(t, http.MethodGet, base+fjhttp.APIBase+p, nil, WithToken(token)), http.StatusOK).Body)
		}
		return out
	}
	before := answers(first.HTTPURL(), tok)
	if !strings.Contains(before["/device-sets/seattle/devices"], "vm-1") {
		t.Fatalf("members before the restart: %s", before["/device-sets/seattle/devices"])
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := MustServe(t, cfg, logger) // same data directory, a new (empty) embedded Redis
	// Ready means caught up: no token needed to see the rebuilt models.
	if diff := cmp.Diff(before, answers(second.HTTPURL(), "")); diff != "" {
		t.Errorf("answers after the restart (-before +after):\n%s", diff)
	}
}

// TestRealRedisKeepsReadModels pins the other shape: with FLEETJOBS_REDIS_URL
// the read models survive a restart, and the runner resumes from its
// checkpoint instead of applying the log again.
func TestRealRedisKeepsReadModels(t *testing.T) {
	url, root := MustRedisURL(t)
	cfg := ServeConfig(t, url, root)
	logger := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	first := main.NewMain(cfg, logger)
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	api := first.HTTPURL() + fjhttp.APIBase
	MustStatus(t, Do(t, http.MethodPut, api+"/device-templates/vending-v2", vendingBody, nil), http.StatusCreated)
	tok := MustStatus(t, Do(t, http.MethodPut, api+"/devices/vm-1", deviceBody("VM 1", "vending-v2", "Seattle", 4), nil), http.StatusCreated).Token()
	before := string(MustStatus(t, Do(t, http.MethodGet, api+"/devices/vm-1", nil, WithToken(tok)), http.StatusOK).Body)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	second := MustServe(t, cfg, logger)
	after := string(MustStatus(t, Do(t, http.MethodGet, second.HTTPURL()+fjhttp.APIBase+"/devices/vm-1", nil, nil), http.StatusOK).Body)
	if after != before {
		t.Errorf("device after the restart:\n%s\nbefore:\n%s", after, before)
	}
	metrics := string(MustStatus(t, Do(t, http.MethodGet, second.HTTPURL()+"/metrics", nil, nil), http.StatusOK).Body)
	if !strings.Contains(metrics, "\nfleetjobs_projection_events_applied_total 0\n") {
		t.Errorf("the restarted runner applied events again instead of resuming from its checkpoint:\n%s", grepLines(metrics, "fleetjobs_projection_"))
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
