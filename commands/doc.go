// Package commands is fleetjobs' one command-handling path. For every
// aggregate it loads the state (a bounded in-memory cache of snapshots keyed
// by stream and revision, else a read of the stream through package
// eventstore), decides with the domain's Decider, and appends with the
// expected revision (Exact(rev), or NoStream() for a new stream). On a
// concurrency conflict it catches up with the stream and decides again, a
// few times, then gives up with a CodeConflict domain error. A decision
// taken on a cached state that no append guards (zero events, a refusal) is
// checked against the stream first, so another instance's writes are never
// ignored.
//
// Every event carries metadata (commandId, correlationId, causationId,
// actor, occurredAt from the injected clock), and its ID is derived from the
// command ID, the stream and the event's index (EventID): a retried append
// is recognised by the store. A command whose ID is among the stream's
// latest commands is not decided again: it answers with the position of
// its events, whatever happened since (idempotency keys).
//
// Each command answer carries a Position, the consistency token: where its
// last event landed in $all, or the stream's last event when nothing was
// recorded.
//
// Handler has one method per device command (the HTTP layer calls them) and
// ImportDevices, the all-or-nothing import: every row is validated (on its
// own, against its template and against the device's current state) before
// anything is appended; then each device is appended to its own stream by a
// bounded pool of workers. KurrentDB has no transaction across streams, so
// a crash or lost connection half-way leaves some devices recorded: retrying
// the same import with the same command ID completes it idempotently.
//
// Errors come back wrapped with context; refusals wrap a *domain.Error (an
// import's invalid rows an *ImportError, which unwraps to one). Only the
// edge translates them. Nothing here logs above debug.
//
// It may import domain/... and eventstore; nothing else of the project.
package commands
