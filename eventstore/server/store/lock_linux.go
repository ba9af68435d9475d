package store

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// sharedLock takes a shared (read) lock on f, open for reading, without
// waiting. It is an open file description lock: unlike the process-wide
// record lock Pebble's exclusive lock is, it conflicts with that lock even
// within one process, and closing another descriptor does not release it.
func sharedLock(f *os.File) error {
	spec := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &spec)
}
