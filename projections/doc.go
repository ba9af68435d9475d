// Package projections turns events into the Redis read models and answers
// queries from them: pure apply functions per projector (ApplyDeviceEvent),
// one Writer that commits a batch of changes together with its checkpoint,
// one Runner that feeds it from a $all subscription, and the Queries the
// HTTP layer calls.
//
// # How events become keys
//
// The Runner subscribes to $all from the stored checkpoint with a
// server-side filter on the projectors' stream prefixes, decodes each event
// with the codec, and groups events into batches: a batch is written when it
// holds RunnerConfig.BatchSize events, when the subscription has nothing
// more to hand over, when a server checkpoint arrives or when it has been
// open RunnerConfig.MaxDelay. For each batch the Writer
//
//  1. WATCHes every projection's checkpoint key and checks it is where it
//     left it (another fleetjobs instance on the same Redis may have
//     committed first: then nothing is written and it reopens);
//  2. has each projector turn the batch into Ops (changes as data), reading
//     what it needs through the watched connection;
//  3. reduces the Ops to their net effect per key (a few variadic commands:
//     MSET, ZADD with many members...) and sends them, and each
//     projection's new checkpoint, in one MULTI/EXEC.
//
// While one batch commits, the next is already being applied (Writer.Submit):
// a projector's reads of keys the batch in flight writes wait for its
// commit, and the in-memory state it keeps is only trusted after a commit.
//
// So a crash, a lost connection or a second instance never applies an event
// twice or skips one. Server checkpoints with no matching events move the
// checkpoints too. Redis does not roll a MULTI/EXEC back when one of its
// commands fails (a wrong-type key: a projector bug); the Writer then
// reports the error and reloads from what Redis holds.
//
// # Key layout
//
// Every key lives under a root ("fj" by default) and one prefix per
// projection version:
//
//	{root}:{projection}:active             the version queries read, e.g. "1"
//	{root}:{projection}:{version}:checkpoint  position in $all applied so far
//	{root}:{projection}:{version}:...      the projection's keys (below)
//
// A rebuild (fleetjobs rebuild, Rebuild) writes a new version beside the
// live one from the start of the log, catches up, then sets the active key,
// which switches every reader at once; Queries cache the active version for
// a second, so old versions are deleted some time after the switch
// (RebuildConfig.Grace), never at once. A Writer sets the active key only
// when there is none. The version being rebuilt is named by
// {root}:{projection}:rebuild until the switch, so an interrupted rebuild
// is resumed from its checkpoint. The live Runner follows the active
// version (Targets without a Version): its commits WATCH the active key,
// and after a switch it reopens on the new version from that version's
// checkpoint, which the switch guarantees is at or past its own. Verify
// compares the live version with a scratch one built to the same position.
//
// The devices projection ("devices"), relative to its version prefix; every
// sorted set has score 0 for all members, so it is ordered by ID and pages
// by ZRANGE BYLEX:
//
//	templates                 sorted set of template IDs
//	template:{id}             JSON Template
//	template:{id}:devices     sorted set of the IDs of the devices using it
//	devices                   sorted set of device IDs (deleted ones removed)
//	device:{id}               JSON Device
//	sets                      sorted set of device set IDs
//	set:{id}                  JSON DeviceSet, with broken and brokenReason
//	set:{id}:members          sorted set of the IDs of its member devices
//
// With Redis Cluster every key one batch writes must hash to one slot: give
// such a deployment a root with a hash tag, e.g. "{fj}".
//
// # State a projector keeps
//
// The devices projector keeps templates and set definitions (few) in
// memory, loaded from Redis when the Writer opens; devices are read from
// Redis per batch (the devices the batch touches, and every device of a
// template whose sets the batch recomputes), and ApplyDeviceEvent applies
// the batch's events in order to that state, so later events see earlier
// ones before anything is written.
//
// # Rendered pages
//
// Given the Runner's applied position (WithApplied), Queries keep the job
// list and job-device pages they rendered (JobsJSON, JobDevicesJSON: the
// API's JSON, sent as it is) and answer from memory while that position
// has not moved since the page was read, for a second at most, and until
// one of its finished jobs would leave the 30-day window. A request with a
// consistency token waits for the Runner first, so it never gets a page
// older than its write.
//
// It may import domain/... and eventstore; nothing else of the project
// (not http, commands, dispatch or cmd; not eventstore/server).
package projections
