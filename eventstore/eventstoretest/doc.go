// Package eventstoretest holds test helpers for code built on package
// eventstore: the JSON round-trip check every registered event type must
// pass, and a real embedded event store (package eventstore/server) started
// on a free loopback port with its data in t.TempDir(), plus a Client dialled
// to it.
//
// Only tests import it. It may import eventstore and eventstore/server, and
// nothing else of the project.
package eventstoretest
