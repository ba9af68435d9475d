// Package store is the storage engine of the embedded KurrentDB-compatible
// event store: a durable, append-only event log with per-stream indexes on
// top of Pebble.
//
// It owns every stream-level rule of KurrentDB: expected revisions,
// idempotent retries, $$ metastreams and their truncation keys ($tb,
// $maxCount, $maxAge), soft delete and recreation, tombstones, the global
// $all order and its positions. It knows nothing of gRPC or protobuf: the
// server package translates wire messages to the types of api.go and back.
//
// Durability model: every append, delete and tombstone is acknowledged only
// once its Pebble batch is synced to the write-ahead log. Callers validate
// their requests one at a time, in arrival order, against the in-memory
// stream state, and hand their batches to Pebble in that order without
// waiting; Pebble syncs whatever has queued as soon as the previous sync
// ends, so concurrent callers share one fsync (group commit) while the next
// requests are validated. A batch is atomic, so a crash never leaves a
// partial append visible, and reads are bounded by what was acknowledged.
//
// On-disk layout (all integers big-endian so that keys sort numerically):
//
//	"c"                         -> next stream id (8 bytes)
//	"l" + position(8)           -> record (see codec.go, version byte first)
//	"n" + stream name           -> stream state (see codec.go)
//	"s" + stream id(8) + rev(8) -> position(8)
//
// This package must not import any other package of the project: it is the
// innermost layer of the event store server.
package store
