// Package job is the Job aggregate (stream job-{id}) as a Decider: creating
// a job on a device set, starting it, recording dispatches and device
// results, completing, failing and stopping it, with the product's job rules
// of ARCHITECTURE.md written in Decide and pinned by given/when/then tests.
//
// Decide(state, command) -> events | *domain.Error only reads the state;
// Evolve(state, event) -> state never fails and, unlike the device
// package's, mutates the *State it is given (see State): at a million
// devices a job's state is a compact table (an int32 index per device, one
// status byte, counts kept as results arrive), and recording a result must
// cost O(1), not a copy of the table. Fold folds a stream.
//
// The status machine: Pending -> Running -> Completed | Failed | Stopped,
// and Pending -> Stopped. Decisions taken here, which the HTTP API
// documents:
//
//   - Completion is decided in the same decision as the last device result:
//     the result event is followed by Completed (all succeeded) or Failed
//     (some failed). The cancellation threshold is a percentage of the
//     job's devices: once that many have failed the job fails at once
//     (0, the default, never: the job then fails at the end).
//   - A finished job (completed, failed or stopped) is never started or
//     stopped again: a CodeConflict whose message says, as the API does,
//     that a stopped job cannot be restarted and a new job must be created
//     (POST /api/v1/jobs/{id}/copy). Stopping twice is that conflict too,
//     as the API answers 409 to a stop on a finished job.
//   - Only a failure has an error message: a success with one is
//     CodeInvalid (DeviceResult.Check), not recorded with its message lost.
//     A failure's message is cut to MaxErrorLen bytes: a device answering
//     over MQTT cannot be refused (the HTTP edge refuses a longer one).
//   - A device's first result stands: a repeated or contradicting result
//     decides zero events. A result for a device the job does not target is
//     CodeNotFound, naming it. Results after a stop (or an early failure)
//     are recorded, since the device did act, without changing the status;
//     the dispatcher's timeouts are not (the device did not act: it stays
//     pending, and its answer, should it come, is the late result).
//     Results on a job that never started are refused (a CodeConflict),
//     whether it is still pending or was stopped while pending: devices
//     are sent a job only after JobStarted and JobDevicesDispatched.
//   - Create carries what the handler resolved (the device set, its
//     template, the set's current members), so deciding stays pure; the
//     devices are split into JobDevicesTargeted events of at most 1,000.
//     Timeouts default to 30 s (1 s .. 1 day), batches to 100 devices
//     (1 .. 10,000).
//
// Event types carry JSON tags: they are the stored contract of the event
// catalog (camelCase), not an API shape. Times are not in the events: they
// are the events' metadata (occurredAt).
//
// It is pure: the standard library and packages domain and domain/device
// only; no I/O, no clock, no random IDs, no logging.
package job
