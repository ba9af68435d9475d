package main

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ReadModelProgress is readModelProgress, for tests.
type ReadModelProgress = readModelProgress

// NewDeviceProperties is the simulated fleet's read-model lookup, waiting
// at most wait for the read models, on a log whose head is head.
func NewDeviceProperties(rdb redis.UniversalClient, root string, applied ReadModelProgress, head eventstore.Position, wait time.Duration) sim.Properties {
	return &deviceProperties{rdb: rdb, root: root, applied: applied, wait: wait,
		head: func(context.Context) (eventstore.Position, error) { return head, nil }}
}

// DeviceNotFound is the error of a device the read models do not have.
const DeviceNotFound = deviceNotFound
