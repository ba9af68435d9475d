// Package stress holds only tests: durability (kill -9 under concurrent
// appends), race and memory tests, and benchmarks of the embedded
// KurrentDB-compatible event store, all driven through the official Go client
// (esdb) over real gRPC on 127.0.0.1.
//
// It has no non-test code and nothing may import it. Its tests import
// eventstore/server (to start the embedded server, in-process or in a child
// process) and the official client; they must not import eventstore/server/store
// internals beyond its exported error values, so that they exercise exactly the
// surface a real application sees.
//
// Sizes: `go test ./eventstore/server/stress/` runs the default sizes (about a
// minute on 2 cores, including a 1,000,000-event memory test); `-short` shrinks
// everything; STRESS_LONG=1 runs many more crash rounds and bigger races.
package stress
