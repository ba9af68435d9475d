package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"
)

// DefaultStateCacheSize is the number of stream states kept in memory when
// Options.StateCacheSize is 0. States beyond it are read back from Pebble.
const DefaultStateCacheSize = 1 << 16

// Pebble sizing: the memtable size, how many memtables may exist before
// writes stall (the one being written and those being flushed), and the
// block cache's room for blocks. Pebble counts every live memtable against
// the block cache, those being flushed and those that readers still hold
// once flushed included, so the cache is sized for memTableRoom memtables
// on top of blockCacheSize (see Open).
const (
	memTableSize       = 32 << 20
	memTableStopWrites = 2
	memTableRoom       = memTableStopWrites + 2
	blockCacheSize     = 64 << 20
)

// Options configure Open.
type Options struct {
	Dir      string           // data directory, created if missing (unless ReadOnly); ignored with InMemory
	InMemory bool             // keep everything in memory (benchmark baseline and fast tests, never production)
	Logger   *zap.Logger      // nil means zap.NewNop()
	Now      func() time.Time // nil means time.Now; stamps Record.Created and evaluates $maxAge
	// StateCacheSize bounds the number of stream states cached in memory;
	// 0 means DefaultStateCacheSize.
	StateCacheSize int
	// ReadOnly opens the existing store in Dir for reading only: nothing in
	// Dir is created or modified (a write-protected copy opens), read-only
	// openers of one directory coexist, an unflushed WAL is replayed in
	// memory, and every write fails with ErrReadOnly. A missing store is
	// an error naming Dir. Not with InMemory.
	ReadOnly bool
}

// Exists reports whether dir holds a store, without opening it or
// changing anything in dir: false for a missing or empty directory, or one
// holding something else.
func Exists(dir string) bool {
	desc, err := pebble.Peek(dir, vfs.Default)
	return err == nil && desc.Exists
}

// Store is the durable event log. It is safe for concurrent use; writes
// are validated one at a time and share WAL syncs (see writer).
type Store struct {
	db       *pebble.DB
	lock     *pebble.Lock // nil InMemory
	dir      string
	log      *zap.Logger
	now      func() time.Time
	states   *stateCache
	readOnly bool // Options.ReadOnly: submit refuses every write

	// mu guards closed; it orders reader registration before Close waits
	// for readers.
	mu      sync.RWMutex
	closed  bool
	closing atomic.Bool // read between records by long reads
	readers sync.WaitGroup
	w       *writer
	reqPool sync.Pool

	head atomic.Uint64 // position of the last acknowledged record

	changedMu sync.Mutex
	changed   chan struct{}
}

// Open opens (creating if needed) the store in opts.Dir, or an empty
// in-memory store with opts.InMemory. When another process (or another Store
// in this process) holds the directory, Open fails at once with an error
// wrapping ErrLocked: a read-write opener holds it alone; read-only openers
// (opts.ReadOnly) share it with each other, not with a read-write one.
func Open(opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	cacheSize := opts.StateCacheSize
	if cacheSize <= 0 {
		cacheSize = DefaultStateCacheSize
	}

	// Pebble reserves the memory of its memtables inside the block cache:
	// the cache is sized for them plus blockCacheSize of blocks, so that
	// memtables and cached blocks together stay within 192 MiB. (Sized at
	// blockCacheSize alone, two 32 MiB memtables left it no room: it kept no
	// block, and every lookup of a stream's state read the file system.)
	blockCache := pebble.NewCache(blockCacheSize + memTableRoom*memTableSize)
	defer blockCache.Unref() // pebble.Open takes its own reference
	popts := &pebble.Options{
		Cache:                       blockCache,
		Logger:                      pebbleLogger{log: log.Named("pebble")},
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTableStopWrites,
	}
	// Bloom filters: the state of a stream is a point lookup, and the state
	// of a stream written first (each device of an import) is nowhere. The
	// tables' key ranges span every name key (names sort between the log
	// and the stream indexes), so without filters that lookup reads an
	// index and a data block of every table of L0 to L5; with them it reads
	// their filters (Pebble's Get does not use L6 filters). Tables written
	// before without filters stay readable as they are.
	for i := range popts.Levels {
		popts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}

	dir := opts.Dir
	var lock *pebble.Lock
	switch {
	case opts.InMemory && opts.ReadOnly:
		return nil, fmt.Errorf("open store: an in-memory store cannot be read-only: %w", ErrInvalidArgument)
	case opts.InMemory:
		popts.FS = vfs.NewMem()
		dir = "mem"
	default:
		if dir == "" {
			return nil, fmt.Errorf("open store: empty data directory: %w", ErrInvalidArgument)
		}
		if opts.ReadOnly {
			if err := checkStoreExists(dir); err != nil {
				return nil, err
			}
			// Pebble in read-only mode writes nothing, but still takes its
			// exclusive lock, opening LOCK read-write; readOnlyFS locks
			// shared instead, and refuses any write.
			popts.ReadOnly = true
			popts.FS = readOnlyFS{vfs.Default}
		} else if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		// Take Pebble's directory lock ourselves, before Open reads anything,
		// so that a held lock is reported as ErrLocked at once.
		fsys := popts.FS
		if fsys == nil {
			fsys = vfs.Default
		}
		var err error
		lock, err = pebble.LockDirectory(dir, fsys)
		if err != nil {
			var pathErr *fs.PathError
			if errors.As(err, &pathErr) {
				// Could not create the LOCK file at all: not a lock conflict.
				return nil, fmt.Errorf("open store %s: %w", dir, err)
			}
			return nil, fmt.Errorf("open store %s: %w (%v)", dir, ErrLocked, err)
		}
		popts.Lock = lock
	}

	db, err := pebble.Open(dir, popts)
	if err != nil {
		if lock != nil {
			_ = lock.Close()
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		db:       db,
		readOnly: opts.ReadOnly,
		lock:     lock,
		dir:      dir,
		log:      log,
		now:      now,
		states:   newStateCache(cacheSize),
		changed:  make(chan struct{}),
	}
	s.reqPool.New = func() any { return &request{done: make(chan struct{}, 1)} }

	w, err := newWriter(s)
	if err != nil {
		_ = db.Close()
		if lock != nil {
			_ = lock.Close()
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s.head.Store(w.nextPos - 1)
	s.w = w
	log.Debug("event store opened", zap.String("dir", dir), zap.Bool("in_memory", opts.InMemory),
		zap.Bool("read_only", opts.ReadOnly),
		zap.Uint64("head", s.head.Load()))
	return s, nil
}

// Close refuses new writes (they fail with ErrClosed), finishes the ones
// already queued, waits for running reads to notice (they stop between
// records with ErrClosed) and closes Pebble. A read blocked inside its
// callback holds Close up: cancel long reads (subscriptions) first. Calling
// Close twice is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.closing.Store(true)
	s.mu.Unlock()

	s.w.close()
	s.readers.Wait()

	// Wake every waiter for good: they re-check and see ErrClosed.
	s.changedMu.Lock()
	close(s.changed)
	s.changedMu.Unlock()

	err := s.db.Close()
	if s.lock != nil {
		if lerr := s.lock.Close(); err == nil {
			err = lerr
		}
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	s.log.Debug("event store closed", zap.String("dir", s.dir))
	return nil
}

// Head returns the position of the last committed (acknowledged) record, 0
// when the store is empty.
func (s *Store) Head() uint64 { return s.head.Load() }

// Changed returns a channel that is closed at the next commit after the
// call (and when the store closes). Take it before reading, then wait on it:
// a commit between the read and the wait is never missed.
func (s *Store) Changed() <-chan struct{} {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	return s.changed
}

// notifyChanged wakes every Changed waiter and arms a new channel.
func (s *Store) notifyChanged() {
	s.changedMu.Lock()
	defer s.changedMu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}

// enterRead registers a read so that Close waits for it; false once closed.
func (s *Store) enterRead() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.readers.Add(1)
	return true
}

// Append appends events to stream atomically if exp holds. See api.go and
// the package documentation for the stream rules. Errors: ErrInvalidArgument
// (bad input, nothing written), *WrongExpectedVersionError,
// *StreamDeletedError, ErrClosed.
//
// Once the append has started Append waits for its outcome even if ctx
// ends: it may be committed regardless.
func (s *Store) Append(ctx context.Context, stream string, exp Expected, events []Proposed) (AppendResult, error) {
	if err := validateStream(stream, false); err != nil {
		return AppendResult{}, fmt.Errorf("append %q: %w", stream, err)
	}
	if err := validateExpected(exp); err != nil {
		return AppendResult{}, fmt.Errorf("append %q: %w", stream, err)
	}
	for i := range events {
		if err := validateEvent(&events[i]); err != nil {
			return AppendResult{}, fmt.Errorf("append %q: event %d: %w", stream, i, err)
		}
	}
	res, err := s.submit(ctx, opAppend, stream, exp, events)
	if err != nil {
		return AppendResult{}, fmt.Errorf("append %q: %w", stream, err)
	}
	return res, nil
}

// Delete soft-deletes stream: it appends to $$stream a "$metadata" event
// with the current metadata and "$tb" set to TombstoneRevision. Reads then
// fail with ErrStreamNotFound until the stream is appended to again.
// Metastreams cannot be deleted (ErrInvalidArgument).
func (s *Store) Delete(ctx context.Context, stream string, exp Expected) (DeleteResult, error) {
	if err := validateStream(stream, true); err != nil {
		return DeleteResult{}, fmt.Errorf("delete %q: %w", stream, err)
	}
	if err := validateExpected(exp); err != nil {
		return DeleteResult{}, fmt.Errorf("delete %q: %w", stream, err)
	}
	res, err := s.submit(ctx, opDelete, stream, exp, nil)
	if err != nil {
		return DeleteResult{}, fmt.Errorf("delete %q: %w", stream, err)
	}
	return DeleteResult{Position: res.Position}, nil
}

// Tombstone hard-deletes stream: it appends a "$streamDeleted" event at
// TombstoneRevision, after which every operation on the stream and its
// metastream fails with *StreamDeletedError. Metastreams cannot be
// tombstoned (ErrInvalidArgument).
func (s *Store) Tombstone(ctx context.Context, stream string, exp Expected) (DeleteResult, error) {
	if err := validateStream(stream, true); err != nil {
		return DeleteResult{}, fmt.Errorf("tombstone %q: %w", stream, err)
	}
	if err := validateExpected(exp); err != nil {
		return DeleteResult{}, fmt.Errorf("tombstone %q: %w", stream, err)
	}
	res, err := s.submit(ctx, opTombstone, stream, exp, nil)
	if err != nil {
		return DeleteResult{}, fmt.Errorf("tombstone %q: %w", stream, err)
	}
	return DeleteResult{Position: res.Position}, nil
}

// submit applies one request and waits for its durable outcome.
func (s *Store) submit(ctx context.Context, kind opKind, stream string, exp Expected, events []Proposed) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	if s.readOnly {
		return AppendResult{}, ErrReadOnly
	}
	r := s.reqPool.Get().(*request)
	r.kind, r.stream, r.exp, r.events = kind, stream, exp, events
	if kind == opAppend {
		s.w.prefetch(r)
	}
	s.w.do(r)
	res, err := r.res, r.err
	s.reqPool.Put(r.reset())
	return res, err
}

// metastreamOf returns X for "$$X".
func metastreamOf(stream string) (string, bool) {
	if len(stream) > 2 && stream[0] == '$' && stream[1] == '$' {
		return stream[2:], true
	}
	return "", false
}

// metastreamName returns "$$X" for X.
func metastreamName(stream string) string { return "$$" + stream }

func validateStream(stream string, forbidMeta bool) error {
	switch {
	case stream == "":
		return fmt.Errorf("empty stream name: %w", ErrInvalidArgument)
	case stream == "$all":
		return fmt.Errorf("$all is not a stream: %w", ErrInvalidArgument)
	case !utf8.ValidString(stream):
		return fmt.Errorf("stream name is not valid UTF-8: %w", ErrInvalidArgument)
	}
	if _, isMeta := metastreamOf(stream); isMeta && forbidMeta {
		return fmt.Errorf("a metastream cannot be deleted: %w", ErrInvalidArgument)
	}
	return nil
}

func validateExpected(exp Expected) error {
	if exp.Kind > ExpectRevision {
		return fmt.Errorf("unknown expected revision kind %d: %w", exp.Kind, ErrInvalidArgument)
	}
	return nil
}

func validateEvent(e *Proposed) error {
	if e.Type == "" {
		return fmt.Errorf("empty event type: %w", ErrInvalidArgument)
	}
	if e.ID == ([16]byte{}) {
		return fmt.Errorf("nil event id: %w", ErrInvalidArgument)
	}
	return nil
}

// pebbleLogger routes Pebble's messages to zap: informational ones at debug
// level so that the store stays quiet at info.
type pebbleLogger struct{ log *zap.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

// Fatalf is called by Pebble on unrecoverable corruption; Pebble expects it
// not to return.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, zap.Bool("fatal", true))
	panic("pebble: " + msg)
}
