package main

import (
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/dispatch/sim"
)

// ReadModelProgress is readModelProgress, for tests.
type ReadModelProgress = readModelProgress

// NewDeviceProperties is the simulated fleet's read-model lookup, waiting
// at most wait for the read models.
func NewDeviceProperties(rdb redis.UniversalClient, root string, applied ReadModelProgress, wait time.Duration) sim.Properties {
	return &deviceProperties{rdb: rdb, root: root, applied: applied, wait: wait}
}

// DeviceNotFound is the error of a device the read models do not have.
const DeviceNotFound = deviceNotFound
