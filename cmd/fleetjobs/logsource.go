package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore/server"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// logSource says where the auditors' commands (export, replay) read the
// event log: a running store's address, or the embedded store's data
// directory opened in process when no serve holds it.
type logSource struct {
	URL     string // esdb:// connection string; used when DataDir is empty
	DataDir string // the embedded store's directory (--data)
}

// logSourceFlags adds --eventstore-url and --data to fs. The URL defaults to
// FLEETJOBS_EVENTSTORE_URL, else to the address where serve's embedded store
// listens (FLEETJOBS_EVENTSTORE_ADDR, 127.0.0.1:2113): while serve runs, it
// holds the data directory and is the way in.
func logSourceFlags(fs *flag.FlagSet, getenv func(string) string) func() (logSource, error) {
	addr := "127.0.0.1:2113"
	if v, ok := lookup(getenv, "FLEETJOBS_EVENTSTORE_ADDR"); ok {
		addr = v
	}
	def := "esdb://" + addr + "?tls=false"
	if v, ok := lookup(getenv, "FLEETJOBS_EVENTSTORE_URL"); ok {
		def = v
	}
	url := fs.String("eventstore-url", def, "the event log's KurrentDB connection string ($FLEETJOBS_EVENTSTORE_URL; default: the embedded store of a running serve, at $FLEETJOBS_EVENTSTORE_ADDR)")
	data := fs.String("data", "", "read serve's data directory (e.g. ./data, or its ./data/eventstore) directly and read-only (nothing in it changes), when no serve holds it")
	return func() (logSource, error) {
		src := logSource{URL: *url, DataDir: *data}
		if src.DataDir != "" {
			if flagSet(fs, "eventstore-url") {
				return src, usageErrorf("--data and --eventstore-url are exclusive: read either a data directory or a running store")
			}
			return src, nil
		}
		if !strings.HasPrefix(src.URL, "esdb://") && !strings.HasPrefix(src.URL, "esdb+discover://") {
			return src, usageErrorf("invalid --eventstore-url %q: want an esdb:// or esdb+discover:// connection string", redactURL(src.URL))
		}
		if _, err := esdb.ParseConnectionString(src.URL); err != nil {
			return src, usageErrorf("invalid --eventstore-url %q: %s", redactURL(src.URL), strings.ReplaceAll(err.Error(), src.URL, redactURL(src.URL)))
		}
		return src, nil
	}
}

// storeDir resolves --data DIR: serve's data directory
// ($FLEETJOBS_DATA_DIR), whose event log is in its eventstore
// subdirectory, or that subdirectory itself (what `fleetjobs eventstore
// --data` names). A directory that holds neither is a usage error: opening
// it would create an empty store there and read nothing from it.
func storeDir(dir string) (string, error) {
	if d, ok := findStore(dir); ok {
		return d, nil
	}
	return "", usageErrorf("invalid --data %q: no event store in it or in its eventstore subdirectory (want serve's data directory, as $FLEETJOBS_DATA_DIR)", dir)
}

// findStore returns the directory of the event store that dir names:
// its eventstore subdirectory (dir is serve's data directory), else dir
// itself; false when neither holds one.
func findStore(dir string) (string, bool) {
	for _, d := range []string{filepath.Join(dir, "eventstore"), dir} {
		if server.Exists(d) {
			return d, true
		}
	}
	return "", false
}

// newStoreDir resolves `fleetjobs eventstore --data DIR` as storeDir does
// (serve's data directory is read in its eventstore subdirectory, so that
// the store serves serve's log rather than a new empty one beside it),
// except that an empty or missing directory is where a new store is
// created: that is its first use. A directory that holds other files but
// no store is a usage error.
func newStoreDir(dir string) (string, error) {
	if d, ok := findStore(dir); ok {
		return d, nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0:
		return dir, nil
	case err != nil:
		return "", fmt.Errorf("read data directory %s: %w", dir, err)
	}
	return "", usageErrorf("invalid --data %q: it holds files but no event store, in it or in its eventstore subdirectory (want serve's data directory, a store's directory, or an empty or new one for a new store)", dir)
}

// openLog connects to the event log src names: it starts the embedded store
// read-only on a free loopback port for a data directory, and checks the
// store answers. The returned close releases both.
func openLog(ctx context.Context, src logSource) (*esdb.Client, func(), error) {
	url := src.URL
	var st *server.Embedded
	if src.DataDir != "" {
		dir, err := storeDir(src.DataDir)
		if err != nil {
			return nil, nil, err
		}
		// Read-only: the auditors' commands only read, so a write-protected
		// backup copy opens, nothing in it changes, and several of them can
		// read one stopped directory at once.
		st, err = server.Start(ctx, server.Options{
			Dir:           dir,
			ReadOnly:      true,
			Listen:        "127.0.0.1:0",
			MaxAppendSize: defaultMaxAppendSize,
			Logger:        zap.NewNop(),
		})
		if errors.Is(err, store.ErrLocked) {
			return nil, nil, fmt.Errorf("data directory %s is in use by a running fleetjobs serve or eventstore: read the log through it (--eventstore-url), or stop it: %w", dir, err)
		}
		if err != nil {
			return nil, nil, eventStoreStartError(dir, err)
		}
		url = st.URL()
	}
	closeStore := func() {
		if st != nil {
			_ = st.Close()
		}
	}
	conf, err := esdb.ParseConnectionString(url)
	if err != nil {
		closeStore()
		return nil, nil, fmt.Errorf("event store url: %w", err)
	}
	conf.Logger = esdb.NoopLogging()
	es, err := esdb.NewClient(conf)
	if err != nil {
		closeStore()
		return nil, nil, fmt.Errorf("connect to event store: %w", err)
	}
	release := func() {
		_ = es.Close()
		closeStore()
	}
	// Without a deadline the official client retries discovery for a long
	// while against a store that is down; say so quickly instead.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rs, err := es.ReadAll(pctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	if err == nil {
		_, err = rs.Recv()
		rs.Close()
		if errors.Is(err, io.EOF) {
			err = nil // an empty log
		}
	}
	if err != nil {
		release()
		if src.DataDir == "" {
			return nil, nil, fmt.Errorf("event store at %s does not answer (is fleetjobs serve running? or read its data directory with --data): %w", redactURL(url), err)
		}
		return nil, nil, fmt.Errorf("embedded event store: %w", err)
	}
	return es, release, nil
}
