package http_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func TestStrictBindingNamesTheField(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	cases := []struct {
		name string
		path string
		body string
		want []fjhttp.FieldError
	}{
		{"malformed JSON", "/api/v1/devices/d1", `{"name": "x",`,
			[]fjhttp.FieldError{{Field: "body", Message: "malformed JSON: unexpected end at byte 13"}}},
		{"not JSON at all", "/api/v1/devices/d1", `name=x`,
			[]fjhttp.FieldError{{Field: "body", Message: "malformed JSON at byte 2: invalid character 'a' in literal null (expecting 'u')"}}},
		{"empty body", "/api/v1/devices/d1", ` `,
			[]fjhttp.FieldError{{Field: "body", Message: "empty body: want a JSON value"}}},
		{"trailing data", "/api/v1/devices/d1", `{"name":"x","templateId":"t"} {"name":"y"}`,
			[]fjhttp.FieldError{{Field: "body", Message: "unexpected data after the JSON value, at byte 31"}}},
		{"not an object", "/api/v1/devices/d1", `["x"]`,
			[]fjhttp.FieldError{{Field: "body", Message: "must be an object"}}},
		{"a key twice", "/api/v1/devices/d1", `{"name":"a","templateId":"t","name":"b"}`,
			[]fjhttp.FieldError{{Field: "name", Message: "is given twice in one object"}}},
		{"a key twice, nested", "/api/v1/device-sets/s1", `{"name":"n","templateId":"t","conditions":[{"property":"p","op":"eq","value":{"a":1,"":2,"b":[{"":1}]}},{"property":"p","op":"eq","op":"ne","value":1}]}`,
			[]fjhttp.FieldError{{Field: "conditions[1].op", Message: "is given twice in one object"}}},
		{"unknown field", "/api/v1/devices/d1", `{"name":"x","templateId":"t","colour":"red"}`,
			[]fjhttp.FieldError{{Field: "colour", Message: "unknown field"}}},
		{"field names match exactly", "/api/v1/devices/d1", `{"Name":"x","templateId":"t"}`,
			[]fjhttp.FieldError{{Field: "Name", Message: "unknown field"}}},
		{"wrong type", "/api/v1/devices/d1", `{"name":42,"templateId":"t"}`,
			[]fjhttp.FieldError{{Field: "name", Message: "must be a string"}}},
		{"null where a string is required", "/api/v1/devices/d1", `{"name":null,"templateId":"t"}`,
			[]fjhttp.FieldError{{Field: "name", Message: "must be a string, not null"}}},
		{"properties must be an object", "/api/v1/devices/d1", `{"name":"x","templateId":"t","properties":[1]}`,
			[]fjhttp.FieldError{{Field: "properties", Message: "must be an object"}}},
		{"nested paths in arrays", "/api/v1/device-sets/s1",
			`{"name":"cold","templateId":"t","conditions":[{"property":"temp","op":"lt","value":5},{"property":"city","op":7,"value":"x","extra":1}]}`,
			[]fjhttp.FieldError{{Field: "conditions[1].extra", Message: "unknown field"}, {Field: "conditions[1].op", Message: "must be a string"}}},
		{"every problem at once", "/api/v1/device-templates/t1",
			`{"name":"","settings":[{"name":"fanSpeed","schema":"int"}],"properties":[{"name":"a","schema":"number"},{"name":"a","schema":"string"}]}`,
			[]fjhttp.FieldError{
				{Field: "name", Message: "is required"},
				{Field: "settings[0].schema", Message: "must be one of number, string, boolean, object"},
				{Field: "properties[1].name", Message: "duplicates properties[0].name"},
			}},
		{"shape: required fields and ids", "/api/v1/devices/d1", `{"name":"  ","templateId":"no spaces"}`,
			[]fjhttp.FieldError{{Field: "name", Message: "is required"}, {Field: "templateId", Message: "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"}}},
		{"shape: unknown op", "/api/v1/device-sets/s1", `{"name":"n","templateId":"t","conditions":[{"property":"p","op":"like","value":1}]}`,
			[]fjhttp.FieldError{{Field: "conditions[0].op", Message: "must be one of eq, ne, lt, le, gt, ge, contains"}}},
		{"path id", "/api/v1/devices/" + strings.Repeat("x", 129), `{"name":"x","templateId":"t"}`,
			[]fjhttp.FieldError{{Field: "deviceId", Message: "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"}}},
		{"path id alphabet", "/api/v1/device-sets/a%20b", `{"name":"x","templateId":"t"}`,
			[]fjhttp.FieldError{{Field: "setId", Message: "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := MustDo(t, s.URL(), Request{Method: "PUT", Path: tc.path, Header: JSONHeader(), Body: tc.body})
			if a.Code != 400 {
				t.Fatalf("status %d (%s), want 400", a.Code, a.Body)
			}
			p := a.Problem(t)
			if diff := cmp.Diff(tc.want, p.Errors); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(rec.Commands()); n != 0 {
		t.Errorf("%d commands recorded for bad requests, want 0", n)
	}
}

func TestPropertyValuesPassUntouched(t *testing.T) {
	// Property values are any JSON value: the strict binder must not
	// judge them (the domain checks them against the template's schemas).
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	a := MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(),
		Body: `{"name":"x","templateId":"t","properties":{"fanSpeed":1200,"cfg":{"a":[1,"b",null]},"on":true}}`})
	if a.Code != 200 {
		t.Fatalf("status %d: %s", a.Code, a.Body)
	}
	got := rec.Commands()[0].(fjhttp.RegisterDevice).Properties
	want := map[string]any{"fanSpeed": 1200.0, "cfg": map[string]any{"a": []any{1.0, "b", nil}}, "on": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
}

func TestBodyLimitsAndMediaTypes(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{MaxBodyBytes: 64, MaxImportBytes: 128})
	big := `{"name":"` + strings.Repeat("x", 100) + `","templateId":"t"}`
	cases := []struct {
		name string
		req  Request
		want int
		slug string
	}{
		{"JSON over the limit", Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(), Body: big}, 413, "too-large"},
		{"JSON over the limit, chunked (no Content-Length)", Request{Method: "PUT", Path: "/api/v1/devices/d1",
			Header: With(JSONHeader(), "Transfer-Encoding", "chunked"), Body: big}, 413, "too-large"},
		{"import over its own limit", Request{Method: "POST", Path: "/api/v1/devices:import", Header: map[string]string{"Content-Type": "text/csv"},
			Body: "deviceId,name,templateId\n" + strings.Repeat("d1,n,t\n", 30)}, 413, "too-large"},
		{"no content type", Request{Method: "PUT", Path: "/api/v1/devices/d1", Body: `{"name":"x","templateId":"t"}`}, 415, "unsupported-media-type"},
		{"form content type", Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"},
			Body: `name=x`}, 415, "unsupported-media-type"},
		{"JSON to the import", Request{Method: "POST", Path: "/api/v1/devices:import", Header: JSONHeader(), Body: `[]`}, 415, "unsupported-media-type"},
		{"charset parameter is fine", Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: map[string]string{"Content-Type": "application/json; charset=utf-8"},
			Body: `{"name":"x","templateId":"t"}`}, 200, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := MustDo(t, s.URL(), tc.req)
			if a.Code != tc.want {
				t.Fatalf("status %d (%s), want %d", a.Code, a.Body, tc.want)
			}
			if tc.slug != "" {
				if p := a.Problem(t); p.Type != fjhttp.ProblemTypeBase+tc.slug || p.Detail == "" || len(p.Errors) != 1 ||
					p.Errors[0].Field != map[int]string{413: "body", 415: "Content-Type"}[tc.want] {
					t.Errorf("problem %+v", p)
				}
			}
		})
	}
}

func TestPaging(t *testing.T) {
	s, _, v := MustOpenAPI(t, fjhttp.Config{})
	for _, q := range []string{"", "?limit=1000&cursor=abc", "?limit=1"} {
		if a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-templates" + q}); a.Code != 200 {
			t.Errorf("%s: status %d (%s)", q, a.Code, a.Body)
		}
	}
	want := []fjhttp.Page{{Limit: 50}, {Limit: 1000, Cursor: "abc"}, {Limit: 1}}
	if diff := cmp.Diff(want, v.Pages()); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	for q, field := range map[string]string{"?limit=0": "limit", "?limit=1001": "limit", "?limit=ten": "limit", "?cursor=%00": "cursor",
		// A query that does not parse: Echo would drop the parameter.
		"?limit=%zz": "limit", "?limit=5;cursor=x": "limit", "?%zz=1": "query"} {
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/device-sets" + q})
		if a.Code != 400 {
			t.Errorf("%s: status %d, want 400", q, a.Code)
			continue
		}
		if p := a.Problem(t); len(p.Errors) != 1 || p.Errors[0].Field != field {
			t.Errorf("%s: errors %+v, want one naming %s", q, p.Errors, field)
		}
	}
}

// smallAppendsHandler is a real command handler, over an embedded event
// store, whose appends carry at most 4,096 bytes (instead of about 1 MiB,
// to keep the tests small), with template t1 (a string property city).
func smallAppendsHandler(t *testing.T) *commands.Handler {
	t.Helper()
	codec := eventstore.NewCatalogCodec()
	h := commands.New(eventstoretest.MustStart(t, eventstore.WithCodec(codec)), codec, time.Now, uuid.NewString, nil, commands.WithMaxAppendBytes(4096))
	tmpl := device.PublishTemplate{TemplateID: "t1", Name: "T", Properties: []device.Capability{{Name: "city", Schema: device.SchemaString}}}
	if _, err := h.PublishTemplate(context.Background(), commands.Meta{}, tmpl); err != nil {
		t.Fatal(err)
	}
	return h
}

// tooLargeToRecordError is what the real command handler answers for a
// device whose event is over what one append to the event store may carry.
func tooLargeToRecordError(t *testing.T) error {
	t.Helper()
	_, err := smallAppendsHandler(t).RegisterDevice(context.Background(), commands.Meta{}, device.Register{DeviceID: "huge2", Name: "x", TemplateID: "t1",
		Properties: map[string]any{"city": strings.Repeat("a", 5000)}})
	if err == nil {
		t.Fatal("the command handler recorded an event over its append limit")
	}
	return err
}

// failingJobs answers every job creation with err.
type failingJobs struct {
	*jobStub
	err error
}

func (f failingJobs) CreateJob(context.Context, fjhttp.CreateJob) (fjhttp.JobResult, error) {
	return fjhttp.JobResult{}, f.err
}

// TestBodyTooLargeToRecord: a body under the HTTP limit whose event is over
// what one append to the event store may carry (a long property value, a
// long operation value) is the caller's input, not a server failure: 413
// naming the body, as for a body over the HTTP limit.
func TestBodyTooLargeToRecord(t *testing.T) {
	tooLarge := tooLargeToRecordError(t)
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	rec.err = tooLarge
	j := failingJobs{jobStub: newJobStub(0), err: fmt.Errorf("create job: %w", tooLarge)}
	cfg := fjhttp.Config{JobQueries: j, JobHistory: j, JobCommands: j}
	jobs := MustOpen(t, cfg)
	cases := []struct {
		name string
		base string
		req  Request
	}{
		{"device", s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/huge2", Header: JSONHeader(),
			Body: `{"name":"x","templateId":"t1","properties":{"city":"` + strings.Repeat("a", 5000) + `"}}`}},
		{"job", jobs.URL(), Request{Method: "PUT", Path: "/api/v1/jobs/j1", Header: JSONHeader(),
			Body: `{"name":"j","deviceSetId":"s1","jobType":"setting","operations":[{"name":"s","value":"` + strings.Repeat("a", 5000) + `"}]}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := MustDo(t, tc.base, tc.req)
			if a.Code != 413 {
				t.Fatalf("status %d (%s), want 413", a.Code, a.Body)
			}
			p := a.Problem(t)
			if p.Type != fjhttp.ProblemTypeBase+"too-large" || p.Detail == "" || len(p.Errors) != 1 || p.Errors[0].Field != "body" ||
				!strings.Contains(p.Errors[0].Message, "too large to record") {
				t.Errorf("problem %+v", p)
			}
		})
	}
}

// A number that is not a whole number where one is wanted is told so,
// naming the field, with the field's own range when the domain gives it,
// never Go's int64 range; a whole number written with a fraction or
// exponent is shown in digits. A number too large for any field (1e400),
// wherever it is, names its path instead of "body".
func TestNumbersAreToldInTheFieldsTerms(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{})
	const job = `{"name":"Fans up","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1200}]`
	outOfRange := func(n string) string {
		return "is out of range: a number must be less than 1.8e+308 in size, got " + n
	}
	cases := []struct {
		name, method, path, body string
		want                     fjhttp.FieldError
	}{
		{"a fraction", "POST", "/api/v1/jobs", job + `,"timeoutSeconds":1.5}`,
			fjhttp.FieldError{Field: "timeoutSeconds", Message: "must be a whole number from 1 to 86400, got 1.5"}},
		{"an exponent past the range", "POST", "/api/v1/jobs", job + `,"timeoutSeconds":1e10}`,
			fjhttp.FieldError{Field: "timeoutSeconds", Message: "must be a whole number from 1 to 86400, got 1e10"}},
		{"a whole number with an exponent", "POST", "/api/v1/jobs", job + `,"timeoutSeconds":1e3}`,
			fjhttp.FieldError{Field: "timeoutSeconds", Message: "must be a whole number from 1 to 86400, written without a fraction or exponent: 1000, not 1e3"}},
		{"past int64", "POST", "/api/v1/jobs", job + `,"timeoutSeconds":99999999999999999999}`,
			fjhttp.FieldError{Field: "timeoutSeconds", Message: "must be a whole number from 1 to 86400, got 99999999999999999999"}},
		{"a string", "POST", "/api/v1/jobs", job + `,"timeoutSeconds":"30"}`,
			fjhttp.FieldError{Field: "timeoutSeconds", Message: "must be a whole number from 1 to 86400"}},
		{"a long number is cut", "POST", "/api/v1/jobs", job + `,"timeoutSeconds":1.` + strings.Repeat("5", 100) + `}`,
			fjhttp.FieldError{Field: "timeoutSeconds", Message: "must be a whole number from 1 to 86400, got 1.5555555555555555555555..."}},
		{"batchSize", "PUT", "/api/v1/jobs/j1", job + `,"batchSize":2.5}`,
			fjhttp.FieldError{Field: "batchSize", Message: "must be a whole number from 1 to 10000, got 2.5"}},
		{"cancellationThreshold", "PUT", "/api/v1/jobs/j1", job + `,"cancellationThreshold":5e1}`,
			fjhttp.FieldError{Field: "cancellationThreshold", Message: "must be a whole number from 0 to 100, written without a fraction or exponent: 50, not 5e1"}},
		{"an operation's value", "POST", "/api/v1/jobs", `{"name":"Fans up","deviceSetId":"seattle","jobType":"setting","operations":[{"name":"fanSpeed","value":1e400}]}`,
			fjhttp.FieldError{Field: "operations[0].value", Message: outOfRange("1e400")}},
		{"a property, deep", "PUT", "/api/v1/devices/d1", `{"name":"x","templateId":"t","properties":{"cfg":{"a":[1,-1e400]}}}`,
			fjhttp.FieldError{Field: "properties.cfg.a[1]", Message: outOfRange("-1e400")}},
		{"a condition's value", "PUT", "/api/v1/device-sets/s1", `{"name":"n","templateId":"t","conditions":[{"property":"p","op":"lt","value":2e308}]}`,
			fjhttp.FieldError{Field: "conditions[0].value", Message: outOfRange("2e308")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := MustDo(t, s.URL(), Request{Method: tc.method, Path: tc.path, Header: JSONHeader(), Body: tc.body})
			if a.Code != 400 {
				t.Fatalf("status %d (%s), want 400", a.Code, a.Body)
			}
			if diff := cmp.Diff([]fjhttp.FieldError{tc.want}, a.Problem(t).Errors); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("an import row", func(t *testing.T) {
		a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: map[string]string{"Content-Type": fjhttp.MIMENDJSON},
			Body: `{"deviceId":"d1","name":"x","templateId":"t","properties":{"fanSpeed":1e400}}`})
		want := []fjhttp.FieldError{{Field: "rows[0].properties.fanSpeed", Message: outOfRange("1e400")}}
		if diff := cmp.Diff(want, a.Problem(t).Errors); a.Code != 422 || diff != "" {
			t.Errorf("status %d, errors (-want +got):\n%s", a.Code, diff)
		}
	})
	t.Run("limit", func(t *testing.T) {
		for q, msg := range map[string]string{
			"1.5":  "must be a whole number from 1 to 1000, got 1.5",
			"1e2":  "must be a whole number from 1 to 1000, written without a fraction or exponent: 100, not 1e2",
			"5000": "must be a whole number from 1 to 1000, got 5000",
		} {
			a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/jobs?limit=" + q})
			if diff := cmp.Diff([]fjhttp.FieldError{{Field: "limit", Message: msg}}, a.Problem(t).Errors); a.Code != 400 || diff != "" {
				t.Errorf("limit=%s: status %d, errors (-want +got):\n%s", q, a.Code, diff)
			}
		}
	})
}

// TestBinderRefusesWhatItWouldChange: a value encoding/json would record
// otherwise than sent (bytes that are not UTF-8 or a lone surrogate, both
// recorded as U+FFFD; an integer beyond 2^53, recorded as another number)
// or that nests too deep for the clients that read it back is refused,
// naming its path, on every route that binds JSON; nothing is recorded.
// Decimals with a fraction or exponent stay IEEE doubles.
func TestBinderRefusesWhatItWouldChange(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	exact := "must be between -9007199254740992 and 9007199254740992 to be kept exactly; send larger numbers as strings"
	text := `must be valid UTF-8 text: it holds bytes that are not UTF-8, or an escaped lone surrogate (\ud800 to \udfff not in a pair)`
	deep := fmt.Sprintf("is nested more than %d levels deep (objects and arrays); at most %d are allowed", fjhttp.MaxJSONDepth, fjhttp.MaxJSONDepth)
	cases := []struct {
		name, method, path, body string
		header                   map[string]string
		want                     []fjhttp.FieldError
	}{
		{"invalid UTF-8 in a name", "PUT", "/api/v1/devices/d1", "{\"name\":\"bad\xff\xfe\",\"templateId\":\"t\"}", nil,
			[]fjhttp.FieldError{{Field: "name", Message: text}}},
		{"a lone surrogate", "PUT", "/api/v1/devices/d1", `{"name":"x\ud800y","templateId":"t"}`, nil,
			[]fjhttp.FieldError{{Field: "name", Message: text}}},
		{"a low surrogate first", "PUT", "/api/v1/devices/d1", `{"name":"x\udc00\ud800","templateId":"t"}`, nil,
			[]fjhttp.FieldError{{Field: "name", Message: text}}},
		{"a lone surrogate deep in a property", "PUT", "/api/v1/devices/d1", `{"name":"x","templateId":"t","properties":{"cfg":{"l":["ok","\uD83D"]}}}`, nil,
			[]fjhttp.FieldError{{Field: "properties.cfg.l[1]", Message: text}}},
		{"a key that is not UTF-8", "PUT", "/api/v1/devices/d1", "{\"name\":\"x\",\"templateId\":\"t\",\"properties\":{\"c\xffity\":\"x\"}}", nil,
			[]fjhttp.FieldError{{Field: "properties", Message: "has a key that is not valid UTF-8 text"}}},
		{"an integer beyond 2^53", "PUT", "/api/v1/devices/d1", `{"name":"x","templateId":"t","properties":{"n":9007199254740993}}`, nil,
			[]fjhttp.FieldError{{Field: "properties.n", Message: exact + ", got 9007199254740993"}}},
		{"a 30-digit integer", "PUT", "/api/v1/device-sets/s1", `{"name":"x","templateId":"t","conditions":[{"property":"p","op":"eq","value":-123456789012345678901234567890}]}`, nil,
			[]fjhttp.FieldError{{Field: "conditions[0].value", Message: exact + ", got -12345678901234567890123..."}}},
		{"a value nested too deep", "PUT", "/api/v1/devices/d1", `{"name":"x","templateId":"t","properties":{"cfg":` + nest(fjhttp.MaxJSONDepth+1) + `}}`, nil,
			[]fjhttp.FieldError{{Field: "properties.cfg", Message: deep}}},
		{"a value nested 9,997 levels", "PUT", "/api/v1/device-sets/s1", `{"name":"x","templateId":"t","conditions":[{"property":"p","op":"eq","value":` + nest(9997) + `}]}`, nil,
			[]fjhttp.FieldError{{Field: "conditions[0].value", Message: deep}}},
		{"import: a lone surrogate", "POST", "/api/v1/devices:import", `{"deviceId":"d1","name":"ok","templateId":"t"}` + "\n" + `{"deviceId":"d2","name":"\ud800","templateId":"t"}`, ndjsonHeader(),
			[]fjhttp.FieldError{{Field: "rows[1].name", Message: text}}},
		{"import: an integer beyond 2^53", "POST", "/api/v1/devices:import", `{"deviceId":"d1","name":"ok","templateId":"t","properties":{"n":18446744073709551616}}`, ndjsonHeader(),
			[]fjhttp.FieldError{{Field: "rows[0].properties.n", Message: exact + ", got 18446744073709551616"}}},
		{"import: nested too deep", "POST", "/api/v1/devices:import", `{"deviceId":"d1","name":"ok","templateId":"t","properties":{"n":` + nest(40) + `}}`, ndjsonHeader(),
			[]fjhttp.FieldError{{Field: "rows[0].properties.n", Message: deep}}},
		{"csv import: not UTF-8", "POST", "/api/v1/devices:import", "deviceId,name,templateId,prop.city\nd1,ok,t,Oslo\nd2,b\xffd,t,Oslo\n", csvHeader(),
			[]fjhttp.FieldError{{Field: "rows[1].name", Message: text}}},
		{"csv import: a lone surrogate, an integer beyond 2^53, nested too deep", "POST", "/api/v1/devices:import",
			"deviceId,name,templateId,prop.a,prop.b,prop.c\nd1,ok,t,\"\"\"\\ud800\"\"\",9007199254740993,\"" + strings.ReplaceAll(nest(33), `"`, `""`) + "\"\n", csvHeader(),
			[]fjhttp.FieldError{{Field: "rows[0].properties.a", Message: text}, {Field: "rows[0].properties.b", Message: exact + ", got 9007199254740993"}, {Field: "rows[0].properties.c", Message: deep}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = JSONHeader()
			}
			a := MustDo(t, s.URL(), Request{Method: tc.method, Path: tc.path, Header: h, Body: tc.body})
			if a.Code != 400 && a.Code != 422 {
				t.Fatalf("status %d (%s), want 400 or 422", a.Code, a.Body)
			}
			if diff := cmp.Diff(tc.want, a.Problem(t).Errors); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(rec.Commands()); n != 0 {
		t.Errorf("%d commands recorded for bad requests, want 0", n)
	}

	// What is kept as sent passes: 2^53 itself, decimals and exponents
	// (IEEE doubles), surrogate pairs, a value exactly MaxJSONDepth deep.
	ok := `{"name":"x \ud83d\ude00 \u00e9","templateId":"t","properties":{"max":9007199254740992,"min":-9007199254740992,"d":12345678901234567890.5,"e":1e300,"deep":` + nest(fjhttp.MaxJSONDepth) + `}}`
	if a := MustDo(t, s.URL(), Request{Method: "PUT", Path: "/api/v1/devices/d1", Header: JSONHeader(), Body: ok}); a.Code != 200 {
		t.Fatalf("a body kept as sent: status %d: %s", a.Code, a.Body)
	}
}
