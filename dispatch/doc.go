// Package dispatch is the process manager that turns job events into device
// deliveries, handles timeouts and reports device answers back as commands,
// never appending on its own behalf (STYLE.md habit 12).
//
// A Manager follows the job streams ("job-" in $all) and folds every job it
// sees with job.Evolve. Once a job's targeting is complete it asks for
// JobStarted; then, in batches (the job's batchSize), it records
// JobDevicesDispatched through the command path BEFORE handing the batches
// to the Transport (write-ahead: at-least-once delivery, each Delivery
// carrying the job ID as its operation ID so a device drops a duplicate).
// Several batches are recorded in one append (RecordDispatches), each its own
// event. Answers come back on a channel, settle their devices at once, and
// are recorded per job with RecordResults, two calls in flight per job so
// that the command path decides a round while the previous one is appended;
// a device that does not answer within the job's timeoutSeconds, counted
// from the recorded dispatch time, fails with an error saying it timed out.
// A device without an answer is sent the job again after ResendAfter, then
// after twice as long each time, until its deadline (a device that was
// offline, or whose broker lost its session, still gets it).
//
// Jobs take turns (round-robin), and each has a window of devices in flight
// (sent or being recorded, without a recorded result) that starts at a few
// batches and widens with every answer up to Window: a million-device job
// neither starves another nor floods a transport, and a fleet that does not
// answer is not sent much. A job that is no longer running (stopped, or
// failed by its cancellation threshold, which the domain decides) gets
// nothing more sent once the Manager has seen it, resends included; answers
// in flight are still recorded, but its timeouts are not (the domain
// records no timeout on a finished job: a device that did not answer stays
// pending, and its answer, should it come, is recorded as a late result).
//
// Where its checkpoint lives: not in the event log (it never appends on its
// own behalf). The job streams themselves say what was started, dispatched
// (with when, in occurredAt) and answered, so at start the Manager rebuilds
// its state by folding the job events from a low-water mark: the position
// before the JobCreated of the oldest job it still tracks. A Checkpoints
// store (Redis, via a tiny interface) keeps that mark so a restart does not
// fold all history; without one the Manager folds the job streams from the
// start of $all. After the catch-up it resends the dispatched devices that have
// no result and whose deadline has not passed, with their recorded deadline,
// and lets the others time out.
//
// One Manager per event log runs (Run) at a time: two would both dispatch
// (harmless for devices, which drop duplicates, and for the results, which
// are idempotent, but wasteful). cmd/fleetjobs elects it with a lease in
// Redis; the Managers of the other instances stand by in Relay, recording
// the answers that reach their instance (a shared MQTT subscription hands
// each answer to any one of them), which the running Manager then reads in
// the log: a device recorded there that it still waited for is settled
// and widens its job's window as an answer does.
//
// Transports live in subpackages (sim; mqtt). They import this package for
// Delivery and Answer, and never the domain. This package may import
// domain/... and eventstore; outcomes leave through Outcomes, which package
// commands satisfies through a thin adapter in cmd/fleetjobs.
package dispatch
