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
// Handler has one method per device and job command (the HTTP layer and the
// dispatcher call them) and
// ImportDevices, the all-or-nothing import: every row is validated (on its
// own, against its template and against the device's current state) before
// anything is appended; then each device is appended to its own stream by a
// bounded pool of workers. KurrentDB has no transaction across streams, so
// a crash or lost connection half-way leaves some devices recorded: retrying
// the same import with the same command ID completes it idempotently.
//
// Jobs go through the same path, with two differences that their size
// imposes. A job's state is mutable (job.Evolve changes it in place, so a
// result costs O(1) at a million devices), so it never enters the shared
// cache: every command on a job runs on that job's worker, one goroutine
// started on demand and stopped when idle (or soon after the job
// finished), which owns the state at a revision of the stream and catches
// up with the stream on a conflict. And device results, which arrive by the
// hundred thousand, are queued for the worker, which decides all those
// queued with one RecordResults decision and appends them together, split
// so that no append exceeds the store's 1 MiB limit, answering each caller
// once its own events are durable (a refused result fails its own caller
// only). The worker decides the next round while the previous one is
// being appended (on the state that takes it as landed; if it does not
// land, that decision is dropped, the job read again and the results
// decided anew), but it never has two appends to the stream in flight. A job's creation, whose targeting of a million devices weighs some
// 50 MiB, goes in several appends too; a retried create finishes a
// targeting that was cut short, and the job stays Pending until it is
// complete. Close stops the workers.
//
// Errors come back wrapped with context; refusals wrap a *domain.Error (an
// import's invalid rows an *ImportError, which unwraps to one). Only the
// edge translates them. Nothing here logs above debug.
//
// It may import domain/... and eventstore; nothing else of the project.
package commands
