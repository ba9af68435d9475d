package servertest

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// DirState describes every file and directory under dir: path, mode, size,
// modification time and, for files, a hash of the content. Equal states
// mean nothing under dir was created, removed or changed. Tests compare
// them rather than rely on permission bits, which do not stop root.
func DirState(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	state := map[string]string{}
	walkInfo(tb, dir, func(path string, info fs.FileInfo) error {
		desc := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		state[path] = desc
		return nil
	})
	return state
}

// WriteProtect removes the write permission of dir and of everything under
// it (chmod -R a-w) until the test ends.
func WriteProtect(tb testing.TB, dir string) {
	tb.Helper()
	chmod := func(mode func(fs.FileMode) fs.FileMode) {
		walkInfo(tb, dir, func(path string, info fs.FileInfo) error {
			return os.Chmod(path, mode(info.Mode().Perm()))
		})
	}
	chmod(func(m fs.FileMode) fs.FileMode { return m &^ 0o222 })
	tb.Cleanup(func() { chmod(func(m fs.FileMode) fs.FileMode { return m | 0o200 }) })
}

// walkInfo calls fn for dir and everything under it, failing the test on
// an error.
func walkInfo(tb testing.TB, dir string, fn func(path string, info fs.FileInfo) error) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return fn(path, info)
	})
	if err != nil {
		tb.Fatal(err)
	}
}
