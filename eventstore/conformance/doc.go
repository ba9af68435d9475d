// Package conformance is the event store's conformance suite: one set of
// behaviours, pinned through the OFFICIAL KurrentDB Go client
// (github.com/EventStore/EventStore-Client-Go/v4/esdb) only, that every
// server fleetjobs talks to must satisfy — our embedded server
// (eventstore/server) and a real KurrentDB alike.
//
// Run is the whole suite; callers hand it a function that connects a client
// to the server under test. The suite is written for a shared, non-empty
// server: every subtest uses stream names of its own (a UUID suffix) and
// asserts about $all only relative to positions it observed itself, never
// "the log holds exactly N events". Behaviours that only our server promises
// (the exact version it reports, features it leaves unimplemented, identical
// positions on idempotent retries) are asserted only when the matching Option
// is passed.
//
// conformance_test.go runs the suite against the embedded server and, when
// FLEETJOBS_TEST_KURRENTDB_URL is set, against a real KurrentDB;
// embedded_test.go holds the few checks that restart or reconfigure the
// embedded server (durability of positions, events above 4 MiB).
//
// The package owns the suite and its helpers. It must not import anything of
// the project (in particular not eventstore/server): it judges the server
// from the outside, as a client would. Only its own tests start servers.
package conformance
