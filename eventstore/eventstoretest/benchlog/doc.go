// Package benchlog writes a large, production-like fleetjobs event log
// straight into an event store data directory (package
// eventstore/server/store, big appends from many goroutines, no gRPC), for
// the export and rebuild benchmarks: 5,000,000 events take well under a
// minute, and Cached keeps the result under os.TempDir() between runs.
//
// The log holds, in this order: templates and device sets; device
// registrations, then property changes of the same devices; then jobs of
// 2,000 to 150,000 devices, several at a time, each its JobCreated, its
// JobDevicesTargeted events (1,000 devices each), JobStarted, then rounds of
// one JobDevicesDispatched of 1,000 devices and their results appended
// together (mostly DeviceOperationSucceeded, some DeviceOperationFailed),
// and JobCompleted, JobFailed or, for every eighth job, JobStopped halfway.
//
// Only benchmarks import it.
package benchlog
