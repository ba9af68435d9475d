// Package commands is fleetjobs' one command-handling path: load an
// aggregate's state (cache keyed by stream revision, else read its stream),
// decide with the domain, append with the expected revision through package
// eventstore, retry on a concurrency conflict. Event IDs are derived from the
// command ID, so a retried request is recognised by the store.
//
// It may import domain/... and eventstore; nothing else of the project.
package commands
