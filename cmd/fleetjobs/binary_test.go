package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binary is the fleetjobs binary the tests run, built once per test
// process: a link takes seconds, tens of them on a loaded machine.
var binary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// mustSharedBinary builds the binary on first use and returns its path.
func mustSharedBinary(tb testing.TB) string {
	tb.Helper()
	binary.once.Do(func() {
		binary.dir, binary.err = os.MkdirTemp("", "fleetjobs-test-bin-")
		if binary.err != nil {
			return
		}
		binary.path = filepath.Join(binary.dir, "fleetjobs")
		if out, err := exec.Command("go", "build", "-o", binary.path, ".").CombinedOutput(); err != nil {
			binary.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if binary.err != nil {
		tb.Fatal(binary.err)
	}
	return binary.path
}

// TestMain removes the shared binary once every test ran.
func TestMain(m *testing.M) {
	code := m.Run()
	if binary.dir != "" {
		_ = os.RemoveAll(binary.dir)
	}
	os.Exit(code)
}
