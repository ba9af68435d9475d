package main

import (
	"context"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// OpenLogData opens a data directory as export, replay and rebuild's
// --data do, for the tests in package main_test.
func OpenLogData(ctx context.Context, dir string) (*esdb.Client, func(), error) {
	return openLog(ctx, logSource{DataDir: dir})
}
