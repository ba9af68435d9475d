package http_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

func csvHeader() map[string]string {
	return map[string]string{"Content-Type": "text/csv; charset=utf-8"}
}
func ndjsonHeader() map[string]string {
	return map[string]string{"Content-Type": "application/x-ndjson"}
}

func TestImportParsesNDJSONAndCSVAlike(t *testing.T) {
	want := []fjhttp.ImportRow{
		{DeviceID: "vm-1", Name: "Vending 1", TemplateID: "vending", Properties: map[string]any{"city": "Seattle", "fanSpeed": 1200.0, "cold": true}},
		{DeviceID: "vm-2", Name: "Vending, two", TemplateID: "vending", Properties: map[string]any{"city": "1200", "cfg": map[string]any{"a": 1.0}}},
		{DeviceID: "vm-3", Name: "Vending 3", TemplateID: "vending", Properties: map[string]any{}},
	}
	bodies := map[string]Request{
		"ndjson": {Header: ndjsonHeader(), Body: `{"deviceId":"vm-1","name":"Vending 1","templateId":"vending","properties":{"city":"Seattle","fanSpeed":1200,"cold":true}}

{"deviceId":"vm-2","name":"Vending, two","templateId":"vending","properties":{"city":"1200","cfg":{"a":1}}}
{"deviceId":"vm-3","name":"Vending 3","templateId":"vending"}
`},
		"csv": {Header: csvHeader(), Body: "\ufeffdeviceId,name,templateId,prop.city,prop.fanSpeed,prop.cold,prop.cfg\n" +
			"vm-1,Vending 1,vending,Seattle,1200,true,\n" +
			`vm-2,"Vending, two",vending,"""1200""",,,"{""a"":1}"` + "\n" +
			"vm-3,Vending 3,vending,,,,\n"},
	}
	for name, req := range bodies {
		t.Run(name, func(t *testing.T) {
			s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
			req.Method, req.Path = "POST", "/api/v1/devices:import"
			a := MustDo(t, s.URL(), req)
			if a.Code != 200 {
				t.Fatalf("status %d: %s", a.Code, a.Body)
			}
			if got := a.Header.Get(fjhttp.ConsistencyTokenHeader); got != "C:10/P:10" {
				t.Errorf("token %q", got)
			}
			type counts struct{ Total, Registered, Updated, Unchanged int }
			if diff := cmp.Diff(counts{Total: 3, Registered: 3}, MustDecode[counts](t, a)); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			cmds := rec.Commands()
			if len(cmds) != 1 {
				t.Fatalf("%d commands, want 1", len(cmds))
			}
			if diff := cmp.Diff(want, cmds[0].(fjhttp.ImportDevices).Rows); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestImportRefusesEveryBadRowAndRecordsNothing(t *testing.T) {
	cases := []struct {
		name string
		req  Request
		want []fjhttp.FieldError
	}{
		{"ndjson", Request{Header: ndjsonHeader(), Body: strings.Join([]string{
			`{"deviceId":"ok-1","name":"fine","templateId":"t"}`,
			`{"deviceId":"bad id","name":"","templateId":"t"}`,
			`{"deviceId":"ok-2","name":"x","templateId":"t","colour":"red"}`,
			`{"deviceId":"ok-3","name":"x",`,
			`{"deviceId":"ok-1","name":"again","templateId":"t","properties":{"fanSpeed":"fast"}}`,
		}, "\n")}, []fjhttp.FieldError{
			{Field: "rows[1].deviceId", Message: "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"},
			{Field: "rows[1].name", Message: "is required"},
			{Field: "rows[2].colour", Message: "unknown field"},
			{Field: "rows[3]", Message: "malformed JSON: unexpected end at byte 30"},
			{Field: "rows[4].deviceId", Message: "duplicates rows[0].deviceId"},
		}},
		{"csv", Request{Header: csvHeader(), Body: "deviceId,name,templateId,prop.a\n" +
			"d1,one,t,1\n" +
			"d2,,t,2\n" +
			"d3,three,t\n" +
			"d 4,four,,4\n"}, []fjhttp.FieldError{
			{Field: "rows[1].name", Message: "is required"},
			{Field: "rows[2]", Message: "line 4: wrong number of fields"},
			{Field: "rows[3].deviceId", Message: "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"},
			{Field: "rows[3].templateId", Message: "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"},
		}},
		{"csv header", Request{Header: csvHeader(), Body: "id,name,templateId,fanSpeed,prop.a,prop.a\nd1,one,t,1,2,3\n"}, []fjhttp.FieldError{
			{Field: "header[0]", Message: `is "id", want "deviceId"`},
			{Field: "header[3]", Message: `is "fanSpeed", want prop.NAME`},
			{Field: "header[5]", Message: `column "prop.a" appears twice`},
		}},
		{"csv without rows", Request{Header: csvHeader(), Body: "deviceId,name,templateId\n"}, []fjhttp.FieldError{
			{Field: "body", Message: "no rows after the header"},
		}},
		{"empty ndjson", Request{Header: ndjsonHeader(), Body: "\n\n"}, []fjhttp.FieldError{
			{Field: "body", Message: "no rows: want one JSON object per line"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Method, tc.req.Path = "POST", "/api/v1/devices:import"
			mustImportRefused(t, tc.req, tc.want)
		})
	}
}

// mustImportRefused sends an import that must be refused with 422 and the
// problems want, recording nothing.
func mustImportRefused(t *testing.T, req Request, want []fjhttp.FieldError) {
	t.Helper()
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	a := MustDo(t, s.URL(), req)
	if a.Code != 422 {
		t.Fatalf("status %d (%s), want 422", a.Code, a.Body)
	}
	p := a.Problem(t)
	if p.Type != fjhttp.ProblemTypeBase+"import-refused" {
		t.Errorf("type %q", p.Type)
	}
	if diff := cmp.Diff(want, p.Errors); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if n := len(rec.Commands()); n != 0 {
		t.Errorf("%d commands recorded, want none", n)
	}
}

func TestImportRowsTheDomainRefuses(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	rec.err = fmt.Errorf("import: %w", &fjhttp.ImportError{Fields: []fjhttp.FieldError{{Field: "rows[0].templateId", Message: "no template t"}}})
	a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: csvHeader(), Body: "deviceId,name,templateId\nd1,one,t\n"})
	if a.Code != 422 {
		t.Fatalf("status %d (%s), want 422", a.Code, a.Body)
	}
	if p := a.Problem(t); len(p.Errors) != 1 || p.Errors[0].Field != "rows[0].templateId" {
		t.Errorf("errors %+v", p.Errors)
	}
	var ie *fjhttp.ImportError
	if !errors.As(rec.err, &ie) {
		t.Fatal("the double's error is not an ImportError")
	}
}

func TestImportRowsTheDomainRefusesWithItsOwnError(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	rec.err = fmt.Errorf("import: %w", domain.InvalidFields([]domain.FieldError{
		{Field: "rows[0].templateId", Message: "no template t"},
		{Field: "rows[1].properties.fanSpeed", Message: "must be a number"},
	}))
	a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: csvHeader(), Body: "deviceId,name,templateId\nd1,one,t\nd2,two,t\n"})
	if a.Code != 422 {
		t.Fatalf("status %d (%s), want 422", a.Code, a.Body)
	}
	want := []fjhttp.FieldError{{Field: "rows[0].templateId", Message: "no template t"}, {Field: "rows[1].properties.fanSpeed", Message: "must be a number"}}
	if diff := cmp.Diff(want, a.Problem(t).Errors); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestLargeImportWithinTheDefaultLimit(t *testing.T) {
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	var b strings.Builder
	b.WriteString("deviceId,name,templateId,prop.fanSpeed,prop.city\n")
	const n = 20000
	for i := range n {
		fmt.Fprintf(&b, "dev-%d,Device %d,vending,%d,Seattle\n", i, i, 1000+i)
	}
	a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: csvHeader(), Body: b.String()})
	if a.Code != 200 {
		t.Fatalf("status %d: %.300s", a.Code, a.Body)
	}
	if rows := rec.Commands()[0].(fjhttp.ImportDevices).Rows; len(rows) != n {
		t.Errorf("%d rows, want %d", len(rows), n)
	}
}

// TestLargeNDJSONImportKeepsRowOrderAndFindsEveryBadRow: a body large
// enough to be parsed by several goroutines, with blank lines and CRLF line
// ends, keeps its rows in order (blank lines are not rows) and reports the
// bad rows of every share by their row numbers.
func TestLargeNDJSONImportKeepsRowOrderAndFindsEveryBadRow(t *testing.T) {
	const n = 5000
	body := func(bad map[int]string) string {
		var b strings.Builder
		for i := range n {
			if i%700 == 0 {
				b.WriteString("\r\n  \n") // blank lines are not rows
			}
			if line, ok := bad[i]; ok {
				b.WriteString(line + "\r\n")
				continue
			}
			fmt.Fprintf(&b, `{"deviceId":"dev-%d","name":"Device %d","templateId":"vending","properties":{"n":%d}}`+"\r\n", i, i, i)
		}
		return b.String()
	}

	t.Run("good", func(t *testing.T) {
		s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
		a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: ndjsonHeader(), Body: body(nil)})
		if a.Code != 200 {
			t.Fatalf("status %d: %.300s", a.Code, a.Body)
		}
		rows := rec.Commands()[0].(fjhttp.ImportDevices).Rows
		if len(rows) != n {
			t.Fatalf("%d rows, want %d", len(rows), n)
		}
		for i, r := range rows {
			want := fjhttp.ImportRow{DeviceID: fmt.Sprintf("dev-%d", i), Name: fmt.Sprintf("Device %d", i), TemplateID: "vending", Properties: map[string]any{"n": float64(i)}}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Fatalf("row %d (-want +got):\n%s", i, diff)
			}
		}
	})

	t.Run("bad", func(t *testing.T) {
		s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
		a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: ndjsonHeader(), Body: body(map[int]string{
			3:     `{"deviceId":"dev-3","name":"","templateId":"vending"}`,
			2600:  `{"deviceId":"dev-2600",`,
			n - 1: `{"deviceId":"dev-0","name":"again","templateId":"vending"}`,
		})})
		if a.Code != 422 {
			t.Fatalf("status %d (%.300s), want 422", a.Code, a.Body)
		}
		want := []fjhttp.FieldError{
			{Field: "rows[3].name", Message: "is required"},
			{Field: "rows[2600]", Message: "malformed JSON: unexpected end at byte 23"},
			{Field: fmt.Sprintf("rows[%d].deviceId", n-1), Message: "duplicates rows[0].deviceId"},
		}
		if diff := cmp.Diff(want, a.Problem(t).Errors); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
		if k := len(rec.Commands()); k != 0 {
			t.Errorf("%d commands recorded, want none", k)
		}
	})
}

// TestCSVImportRefusesAQuotingError: a quote that is never closed, or one
// inside an unquoted field, leaves the CSV reader unable to find the rows
// after it. The import is refused naming the row the error is in (after any
// problems of the rows before it), not answered 200 with the rows before it
// recorded and the rest dropped.
func TestCSVImportRefusesAQuotingError(t *testing.T) {
	const head = "deviceId,name,templateId,prop.city\n"
	cases := []struct {
		name string
		body string
		want []fjhttp.FieldError
	}{
		{"unclosed quote", head + "csv1,C1,t1,Oslo\ncsv2,C2,t1,\"Bergen\ncsv3,C3,t1,Oslo\n", []fjhttp.FieldError{
			{Field: "rows[1]", Message: "line 3 (parse error on line 4, column 17): extraneous or missing \" in quoted-field"},
		}},
		{"bare quote", head + "csv1,C1,t1,Oslo\ncsv2,C2,t1,Os\"lo\ncsv3,C3,t1,Oslo\n", []fjhttp.FieldError{
			{Field: "rows[1]", Message: "line 3, column 14: bare \" in non-quoted-field"},
		}},
		{"in the first row", head + "csv1,C1,t1,\"Oslo\n", []fjhttp.FieldError{
			{Field: "rows[0]", Message: "line 2, column 18: extraneous or missing \" in quoted-field"},
		}},
		{"after a bad row", head + "csv1,,t1,Oslo\ncsv2,C2,t1,Os\"lo\n", []fjhttp.FieldError{
			{Field: "rows[0].name", Message: "is required"},
			{Field: "rows[1]", Message: "line 3, column 14: bare \" in non-quoted-field"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mustImportRefused(t, Request{Method: "POST", Path: "/api/v1/devices:import", Header: csvHeader(), Body: tc.body}, tc.want)
		})
	}
}

// TestImportRefusesARowTooLargeToRecord: an import with a row whose event
// is over what one append to the event store may carry is refused by the
// real command handler before it records any row (see the commands
// package's TestImportRefusesARowTooLargeToRecordBeforeRecordingAny), and
// answered like any bad row: 422 naming the row.
func TestImportRefusesARowTooLargeToRecord(t *testing.T) {
	_, err := smallAppendsHandler(t).ImportDevices(context.Background(), commands.Meta{}, []device.Register{
		{DeviceID: "good1", Name: "x", TemplateID: "t1"},
		{DeviceID: "huge3", Name: "x", TemplateID: "t1", Properties: map[string]any{"city": strings.Repeat("a", 5000)}},
	})
	s, rec, _ := MustOpenAPI(t, fjhttp.Config{})
	rec.err = err
	a := MustDo(t, s.URL(), Request{Method: "POST", Path: "/api/v1/devices:import", Header: ndjsonHeader(), Body: `{"deviceId":"good1","name":"x","templateId":"t1"}` + "\n" +
		`{"deviceId":"huge3","name":"x","templateId":"t1","properties":{"city":"` + strings.Repeat("a", 5000) + `"}}` + "\n"})
	if a.Code != 422 {
		t.Fatalf("status %d (%.300s), want 422", a.Code, a.Body)
	}
	p := a.Problem(t)
	if p.Type != fjhttp.ProblemTypeBase+"import-refused" || len(p.Errors) != 1 || p.Errors[0].Field != "rows[1]" ||
		!strings.Contains(p.Errors[0].Message, "too large to record") {
		t.Errorf("problem %+v, want rows[1] too large to record", p)
	}
}
