package http_test

import (
	"bytes"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	fjhttp "github.com/fleetjobs/fleetjobs/http"
)

// webDir is the web page's source folder, which the binary embeds.
const webDir = "web"

// webFile is one file of the page as the repository holds it.
type webFile struct {
	name string // below web/
	body []byte
}

// mustWebFiles reads every file of the page from the repository (the
// tests run in the package's folder).
func mustWebFiles(tb testing.TB) []webFile {
	tb.Helper()
	var files []webFile
	err := fs.WalkDir(os.DirFS(webDir), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path.Join(webDir, name))
		files = append(files, webFile{name: name, body: b})
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("no file under web/: the walk is broken")
	}
	return files
}

// wantContentType is the content type each kind of file must be served
// with.
var wantContentType = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// keyedServer is a server with every dependency and API keys configured.
func keyedServer(tb testing.TB) *fjhttp.Server {
	tb.Helper()
	s, _, _ := MustOpenAPI(tb, fjhttp.Config{APIKeys: []fjhttp.APIKey{{Key: "op-key", Role: fjhttp.RoleOperator}}})
	return s
}

func checkPageHeaders(t *testing.T, what string, a Answer, contentType string) {
	t.Helper()
	for h, want := range map[string]string{
		"Content-Type":            contentType,
		"Content-Security-Policy": fjhttp.WebContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Cache-Control":           "no-cache",
	} {
		if got := a.Header.Get(h); got != want {
			t.Errorf("%s: %s %q, want %q", what, h, got, want)
		}
	}
	if a.Header.Get("ETag") == "" {
		t.Errorf("%s: no ETag", what)
	}
}

func TestWebPageIsServedWithoutAKey(t *testing.T) {
	if !strings.HasPrefix(fjhttp.WebContentSecurityPolicy, "default-src 'self';") {
		t.Errorf("Content-Security-Policy %q does not start with default-src 'self'", fjhttp.WebContentSecurityPolicy)
	}
	s := keyedServer(t)
	if a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/api/v1/jobs"}); a.Code != 401 {
		t.Fatalf("GET /api/v1/jobs without a key: status %d, want 401: keys are not configured", a.Code)
	}

	a := MustDo(t, s.URL(), Request{Method: "GET", Path: "/"})
	if a.Code != 200 {
		t.Fatalf("GET /: status %d: %s", a.Code, a.Body)
	}
	checkPageHeaders(t, "GET /", a, "text/html; charset=utf-8")
	head := MustDo(t, s.URL(), Request{Method: "HEAD", Path: "/"})
	if head.Code != 200 || len(head.Body) != 0 {
		t.Errorf("HEAD /: status %d, %d bytes; want 200, none", head.Code, len(head.Body))
	}
	checkPageHeaders(t, "HEAD /", head, "text/html; charset=utf-8")
	index, err := os.ReadFile(path.Join(webDir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Body, index) {
		t.Error("GET / is not web/index.html")
	}

	for _, f := range mustWebFiles(t) {
		want, ok := wantContentType[path.Ext(f.name)]
		if !ok {
			t.Errorf("web/%s: no content type is expected for its extension", f.name)
			continue
		}
		p := fjhttp.WebAssetPrefix + f.name
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: p})
		if a.Code != 200 {
			t.Errorf("GET %s: status %d", p, a.Code)
			continue
		}
		checkPageHeaders(t, "GET "+p, a, want)
		if !bytes.Equal(a.Body, f.body) {
			t.Errorf("GET %s is not web/%s", p, f.name)
		}
		// A browser revalidating what it keeps gets a 304, without the body.
		again := MustDo(t, s.URL(), Request{Method: "GET", Path: p, Header: map[string]string{"If-None-Match": a.Header.Get("ETag")}})
		if again.Code != 304 || len(again.Body) != 0 {
			t.Errorf("GET %s with its ETag: status %d, %d bytes; want 304, none", p, again.Code, len(again.Body))
		}
	}
}

func TestWebUnknownAssetIsNotFound(t *testing.T) {
	s := keyedServer(t)
	for _, p := range []string{"/ui/nope.js", "/ui/", "/ui/app.js.bak", "/ui/web/app.js", "/ui/%2e%2e/web.go", "/index.html"} {
		a := MustDo(t, s.URL(), Request{Method: "GET", Path: p})
		if a.Code != 404 {
			t.Errorf("GET %s: status %d, want 404", p, a.Code)
			continue
		}
		a.Problem(t)
	}
}

// apiCall is how the page's JavaScript calls the API (web/api.js): get(`/api/v1/...`)
// or post(`/api/v1/...`, ...), the path written out, ${...} standing for a segment.
var apiCall = regexp.MustCompile("\\b(get|post)\\(\\s*[`'\"](/api/v1[^`'\"?]*)[`'\"]")

var (
	jsParam    = regexp.MustCompile(`\$\{[^}]*\}`)
	routeParam = regexp.MustCompile(`\{[^}]*\}`)
)

func TestWebPageCallsOnlyRoutedAPIPaths(t *testing.T) {
	s, _, _ := MustOpenAPI(t, fjhttp.Config{})
	routed := make(map[string]bool)
	for _, r := range s.Routes() {
		routed[r.Method+" "+routeParam.ReplaceAllString(r.Path, "{}")] = true
	}
	calls := 0
	for _, f := range mustWebFiles(t) {
		if path.Ext(f.name) != ".js" {
			continue
		}
		src := string(f.body)
		found := apiCall.FindAllStringSubmatch(src, -1)
		// Every mention of the API's base must be a call the pattern
		// reads: a path built some other way would escape this check.
		if n := strings.Count(src, "/api/v1"); n != len(found) {
			t.Errorf("web/%s mentions /api/v1 %d times but %d of them are calls this test reads: write each as get(`/api/v1/...`) or post(`/api/v1/...`, ...)", f.name, n, len(found))
		}
		for _, m := range found {
			calls++
			key := strings.ToUpper(m[1]) + " " + jsParam.ReplaceAllString(m[2], "{}")
			if !routed[key] {
				t.Errorf("web/%s calls %s %s, which is no route of the server", f.name, strings.ToUpper(m[1]), m[2])
			}
		}
	}
	if calls < 10 {
		t.Errorf("found %d API calls in the page's JavaScript: the pattern is broken", calls)
	}
}

// markupSinks parse a string as HTML: a server-provided string given to
// one could run script. The page builds elements and text nodes only.
var markupSinks = []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment", "DOMParser", "srcdoc"}

// scriptTag is a script element: its attributes and its content.
var scriptTag = regexp.MustCompile(`(?s)<script\b([^>]*)>(.*?)</script>`)

func TestWebPageInsertsNoMarkup(t *testing.T) {
	checked := 0
	for _, f := range mustWebFiles(t) {
		ext := path.Ext(f.name)
		if ext != ".js" && ext != ".html" {
			continue
		}
		checked++
		for _, sink := range markupSinks {
			if bytes.Contains(f.body, []byte(sink)) {
				t.Errorf("web/%s uses %s: build elements with createElement and textContent (dom.js's h)", f.name, sink)
			}
		}
		if ext != ".html" {
			continue
		}
		// The Content-Security-Policy refuses inline script and style:
		// the page must not need them.
		html := string(f.body)
		for _, tag := range scriptTag.FindAllStringSubmatch(html, -1) {
			if !strings.Contains(tag[1], " src=") || strings.TrimSpace(tag[2]) != "" {
				t.Errorf("web/%s has an inline script, which the Content-Security-Policy refuses: %q", f.name, tag[0])
			}
		}
		for _, re := range []*regexp.Regexp{regexp.MustCompile(`<style\b`), regexp.MustCompile(`\sstyle\s*=`), regexp.MustCompile(`\son[a-z]+\s*=`)} {
			if loc := re.FindStringIndex(html); loc != nil {
				t.Errorf("web/%s has inline style or script, which the Content-Security-Policy refuses: %q", f.name, html[loc[0]:loc[1]])
			}
		}
	}
	if checked < 2 {
		t.Fatalf("checked %d files: the walk is broken", checked)
	}
}

var (
	pageRef   = regexp.MustCompile(`(?:src|href)="(/ui/[^"]+)"`)
	moduleRef = regexp.MustCompile(`(?m)^\s*(?:import|export)\b[^'"]*\bfrom\s+'(\./[^']+)'`)
)

func TestWebPageReferencesExist(t *testing.T) {
	s := keyedServer(t)
	var refs []string
	for _, f := range mustWebFiles(t) {
		switch path.Ext(f.name) {
		case ".html":
			for _, m := range pageRef.FindAllStringSubmatch(string(f.body), -1) {
				refs = append(refs, m[1])
			}
		case ".js":
			for _, m := range moduleRef.FindAllStringSubmatch(string(f.body), -1) {
				refs = append(refs, fjhttp.WebAssetPrefix+path.Join(path.Dir(f.name), m[1]))
			}
		}
	}
	for _, want := range []string{"/ui/app.js", "/ui/app.css", "/ui/jobs.js"} {
		if !slices.Contains(refs, want) {
			t.Errorf("%s is not referenced: the patterns are broken (found %q)", want, refs)
		}
	}
	for _, ref := range refs {
		if a := MustDo(t, s.URL(), Request{Method: "GET", Path: ref}); a.Code != 200 {
			t.Errorf("GET %s (referenced by the page): status %d", ref, a.Code)
		}
	}
}

// callArgs is the text of the arguments of the call whose opening
// parenthesis is at src[open]: up to its matching parenthesis (the page's
// calls hold no unbalanced parenthesis in a string).
func callArgs(src string, open int) string {
	depth := 0
	for i := open; i < len(src); i++ {
		switch src[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return src[open+1 : i]
			}
		}
	}
	return src[open+1:]
}

// droppingGuard is a load that returns when one is in flight ("if
// (loading) return"): the filter or page chosen meanwhile is dropped
// while the controls show it.
var droppingGuard = regexp.MustCompile(`(?i)if\s*\(\s*\w*(loading|busy|inflight|pending)\w*\s*\)\s*return\b`)

// The page shows the answer to the latest request only: every read it
// sends can be aborted by a newer one of the same thing (its get passes a
// signal, from api.js's Latest), and no load drops a newer request because
// an older one is in flight.
func TestWebPageReadsAreSuperseded(t *testing.T) {
	reads := 0
	for _, f := range mustWebFiles(t) {
		if path.Ext(f.name) != ".js" {
			continue
		}
		src := string(f.body)
		for _, loc := range apiCall.FindAllStringSubmatchIndex(src, -1) {
			if src[loc[2]:loc[3]] != "get" {
				continue
			}
			reads++
			open := loc[3] // the "(" after get
			args := callArgs(src, open)
			if !regexp.MustCompile(`\{\s*signal\b`).MatchString(args) {
				t.Errorf("web/%s: get(%s) passes no signal: a slow answer to it could overwrite a newer one (start a Latest and pass {signal})",
					f.name, strings.Join(strings.Fields(args), " "))
			}
		}
		if loc := droppingGuard.FindStringIndex(src); loc != nil {
			t.Errorf("web/%s: %q drops the request made while a load is in flight: supersede the load instead (Latest)", f.name, src[loc[0]:loc[1]])
		}
	}
	if reads < 8 {
		t.Errorf("found %d reads in the page's JavaScript: the pattern is broken", reads)
	}
}
