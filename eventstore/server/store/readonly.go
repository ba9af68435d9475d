package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// errWriteRefused is what readOnlyFS answers to any call that would create,
// change or remove a file. Pebble in read-only mode makes none; it is there
// so that a change would fail loudly rather than alter a backup copy.
var errWriteRefused = errors.New("store opened read-only: file system writes refused")

// readOnlyFS is the file system of a store opened with Options.ReadOnly:
// vfs.Default for reads, every write refused, and Lock a shared lock (see
// sharedLock) instead of Pebble's exclusive one, which opens the LOCK file
// read-write (creating it if missing).
type readOnlyFS struct{ vfs.FS }

func (readOnlyFS) Create(name string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, refuse("create", name)
}

func (readOnlyFS) Link(oldname, _ string) error { return refuse("link", oldname) }

func (readOnlyFS) OpenReadWrite(name string, _ vfs.DiskWriteCategory, _ ...vfs.OpenOption) (vfs.File, error) {
	return nil, refuse("open read-write", name)
}

func (readOnlyFS) Remove(name string) error { return refuse("remove", name) }

func (readOnlyFS) RemoveAll(name string) error { return refuse("remove", name) }

func (readOnlyFS) Rename(oldname, _ string) error { return refuse("rename", oldname) }

func (readOnlyFS) ReuseForWrite(oldname, _ string, _ vfs.DiskWriteCategory) (vfs.File, error) {
	return nil, refuse("reuse", oldname)
}

func (readOnlyFS) MkdirAll(dir string, _ os.FileMode) error { return refuse("mkdir", dir) }

// Lock takes a shared lock on the existing LOCK file without writing it:
// read-only openers coexist, and they and a read-write opener (serve,
// eventstore) exclude each other. A directory without a LOCK file (a copy
// made without it) is opened unlocked: creating one would change it.
func (readOnlyFS) Lock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	if err != nil {
		return nil, err
	}
	if err := sharedLock(f); err != nil {
		_ = f.Close()
		return nil, err // not a *fs.PathError: Open reports it as ErrLocked
	}
	return f, nil
}

func refuse(op, name string) error {
	return &fs.PathError{Op: op, Path: name, Err: errWriteRefused}
}

// checkStoreExists reports a read-only open of a directory that holds no
// store: read-only, Open cannot create one.
func checkStoreExists(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open store: no event store at %s (the directory does not exist)", dir)
		}
		return fmt.Errorf("open store %s: %w", dir, err)
	}
	if !Exists(dir) {
		return fmt.Errorf("open store: no event store at %s", dir)
	}
	return nil
}
