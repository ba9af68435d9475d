// Package eventstore is the application's typed view of the event log: a
// small layer over the official KurrentDB client (esdb.Client), which is the
// only way fleetjobs reads or writes events, whether the log is the embedded
// server of package eventstore/server or a KurrentDB cluster.
//
// It owns:
//   - the event codec (Codec) and the event catalog (catalog.go): the stored
//     event type names, held as string constants there and registered
//     explicitly (Register, NewCatalogCodec), mapped to the Go types of
//     domain/... and JSON;
//   - the metadata every event carries (Metadata: commandId, correlationId,
//     causationId, actor, occurredAt);
//   - appends with an expected revision (Append, Revision, ConflictError),
//     stream reads (ReadStream), $all subscriptions with server-side filters
//     and checkpoints (SubscribeAll), and the head position and readiness
//     probe (Head, Ping);
//   - positions in $all (Position), the consistency token that commands hand
//     back to HTTP callers.
//
// It may import domain/... (for the event types its catalog registers) and
// nothing else of the project: in particular not eventstore/server (the application
// talks to whatever server is behind the URL), http or cmd. Tests and the
// eventstoretest helpers start the embedded server to exercise it for real.
package eventstore
