package server

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// openStore opens the Log that Start serves.
func openStore(opts Options, logger *zap.Logger) (storeCloser, error) {
	st, err := store.Open(store.Options{Dir: opts.Dir, InMemory: opts.InMemory, ReadOnly: opts.ReadOnly, Logger: logger, Now: opts.Now})
	if err != nil {
		return nil, fmt.Errorf("open store in %q: %w", opts.Dir, err)
	}
	return st, nil
}

// Exists reports whether dir holds an event store's data, without opening
// it or changing anything in dir (Start with such a dir would create an
// empty store).
func Exists(dir string) bool { return store.Exists(dir) }
