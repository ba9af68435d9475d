package http_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// document is the part of an OpenAPI document the route check reads.
type document struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]json.RawMessage `json:"schemas"`
	} `json:"components"`
}

func TestOpenAPIDocumentMatchesTheRoutes(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{})
	a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/openapi.json"})
	if a.Code != 200 {
		t.Fatalf("status %d", a.Code)
	}
	doc := MustDecode[document](t, a)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var routed []string
	for _, r := range s.Routes() {
		// The web page's routes serve HTML, CSS and JavaScript to
		// browsers: they are not part of the JSON API that the document
		// describes. Every other route must be documented.
		if r.Page {
			continue
		}
		routed = append(routed, r.Method+" "+r.Path)
	}
	slices.Sort(documented)
	slices.Sort(routed)
	if diff := cmp.Diff(documented, routed); diff != "" {
		t.Errorf("documented (-) vs routed (+):\n%s", diff)
	}
}

func TestOpenAPIReferencesResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(fjhttp.OpenAPIDocument(), &doc); err != nil {
		t.Fatal(err)
	}
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs = append(refs, x.(string))
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if len(refs) == 0 {
		t.Fatal("no $ref found: the walk is broken")
	}
	for _, ref := range refs {
		node := any(doc)
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := node.(map[string]any)
			if !ok {
				node = nil
				break
			}
			node = m[part]
		}
		if node == nil {
			t.Errorf("%s does not resolve", ref)
		}
	}
}

func TestWithoutDependenciesOnlyTheOperationalRoutes(t *testing.T) {
	s := MustOpen(t, fjhttp.Config{})
	var got []string
	for _, r := range s.Routes() {
		got = append(got, r.Method+" "+r.Path)
	}
	want := []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /api/v1/openapi.json", "GET /", "HEAD /", "GET /ui/*", "HEAD /ui/*"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/devices"}); a.Code != 404 {
		t.Errorf("GET /api/v1/devices without queries: status %d, want 404", a.Code)
	}
}
