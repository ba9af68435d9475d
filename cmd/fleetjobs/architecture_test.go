package main_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const modulePath = "github.com/fleetjobs/fleetjobs"

// importRules is STYLE.md's import table: for each package (by its path in
// the module, longest prefix wins), the project packages its non-test files
// may import. Packages not listed here may import anything but http and cmd.
var importRules = []struct {
	pkg     string
	allowed []string
}{
	{"domain", nil}, // pure: standard library only (and other domain packages)
	{"eventstore/server", []string{"eventstore/server"}},
	{"eventstore/conformance", []string{"eventstore/server"}},
	{"eventstore/eventstoretest", []string{"eventstore", "domain"}}, // test helpers: may start an embedded server
	{"eventstore", []string{"domain"}},
	{"commands", []string{"domain", "eventstore"}},
	{"projections", []string{"domain", "eventstore"}},
	{"dispatch", []string{"domain", "eventstore"}},
	{"http", []string{"domain", "commands", "projections"}},
	{"cmd", []string{""}}, // wires everything
}

// TestImportsPointInward keeps the dependency arrows of ARCHITECTURE.md: the
// domain imports nothing of the project, the event store server is
// domain-blind, and nothing imports http or cmd.
func TestImportsPointInward(t *testing.T) {
	eachGoFile(t, func(root, path string) error {
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		isTest := strings.HasSuffix(path, "_test.go")
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			target, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(target, modulePath+"/") {
				continue
			}
			target = strings.TrimPrefix(target, modulePath+"/")
			if msg := importViolation(pkg, target, isTest); msg != "" {
				t.Errorf("%s imports %s: %s", filepath.ToSlash(mustRel(root, path)), target, msg)
			}
		}
		return nil
	})
}

// eachGoFile calls fn with the module's root and every Go file of the
// module, tests included, skipping hidden, testdata, data and bin
// directories; it fails the test on an error or when it finds no file.
func eachGoFile(t *testing.T, fn func(root, path string) error) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "data" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		found++
		return fn(root, path)
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no Go files found: the walk is broken")
	}
}

func importViolation(pkg, target string, isTest bool) string {
	if within(target, "cmd") && !within(pkg, "cmd") {
		return "nothing imports cmd"
	}
	if within(target, "http") && !within(pkg, "http") && !within(pkg, "cmd") {
		return "nothing imports http"
	}
	if within(pkg, "domain") && !within(target, "domain") {
		return "the domain imports nothing of the project"
	}
	if within(pkg, "eventstore/eventstoretest") && within(target, "eventstore/server") {
		return "" // the test helpers start the embedded server
	}
	if within(pkg, "eventstore/server") && !within(target, "eventstore/server") {
		return "the event store server is domain-blind"
	}
	if isTest {
		return "" // tests may start real servers of other packages
	}
	for _, r := range importRules {
		if !within(pkg, r.pkg) {
			continue
		}
		if within(target, r.pkg) {
			return ""
		}
		for _, a := range r.allowed {
			if a == "" || within(target, a) {
				return ""
			}
		}
		return "not allowed by STYLE.md's import table"
	}
	return ""
}

func within(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

func mustRel(root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return rel
}

// TestImportRulesRefuse pins that the rule table above does refuse what
// STYLE.md forbids, so TestImportsPointInward can fail.
func TestImportRulesRefuse(t *testing.T) {
	cases := []struct {
		pkg, target string
		isTest      bool
		refused     bool
	}{
		{"domain/job", "eventstore", false, true},
		{"domain/job", "domain/device", false, false},
		{"eventstore/server", "domain/job", false, true},
		{"eventstore/server", "eventstore/server/store", false, false},
		{"eventstore/server/store", "eventstore", true, true},
		{"eventstore", "domain/job", false, false},
		{"eventstore", "commands", false, true},
		{"commands", "eventstore", false, false},
		{"commands", "projections", false, true},
		{"projections", "http", false, true},
		{"dispatch", "commands", false, true},
		{"dispatch/mqtt", "eventstore", false, false},
		{"http", "commands", false, false},
		{"http", "eventstore/server", false, true},
		{"http", "cmd/fleetjobs", true, true},
		{"cmd/fleetjobs", "eventstore/server", false, false},
	}
	for _, c := range cases {
		got := importViolation(c.pkg, c.target, c.isTest) != ""
		if got != c.refused {
			t.Errorf("%s importing %s (test file: %v): refused = %v, want %v", c.pkg, c.target, c.isTest, got, c.refused)
		}
	}
}

// TestEveryPackageHasDocGo keeps the rule that each package says what it is
// in a doc.go, and only there: a newcomer opens doc.go to read a package's
// purpose, so a package comment elsewhere would be a second, competing one.
func TestEveryPackageHasDocGo(t *testing.T) {
	commented := map[string][]string{} // package dir -> files with a package comment
	hasGo := map[string]bool{}
	eachGoFile(t, func(root, path string) error {
		if strings.HasSuffix(path, "_test.go") {
			return nil
		}
		dir := filepath.ToSlash(mustRel(root, filepath.Dir(path)))
		hasGo[dir] = true
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		if f.Doc != nil {
			commented[dir] = append(commented[dir], filepath.Base(path))
		}
		return nil
	})
	for dir := range hasGo {
		files := commented[dir]
		if len(files) != 1 || files[0] != "doc.go" {
			t.Errorf("package %s: its package comment is in %v; want it in doc.go alone", dir, files)
		}
	}
}
