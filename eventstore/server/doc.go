// Package server is an embedded, KurrentDB-compatible gRPC event store: it
// speaks the protocol of the official Go client
// (github.com/EventStore/EventStore-Client-Go/v4/esdb) unchanged and
// translates it to the Log interface, which *store.Store satisfies.
//
// It owns the wire protocol only: request validation, the append size limit,
// response encoding (UUID forms, "created" ticks, legacy fields), the error
// model (status codes plus KurrentDB's trailers), catch-up subscriptions with
// server-side filters and checkpoints, ServerFeatures and a single-node
// Gossip. Every stream-level rule (expected revisions, deletes, metadata,
// truncation) belongs to package store and is not repeated here.
//
// The package is domain-blind: of the project it imports only
// eventstore/server/store, and it must never import domain, commands,
// projections, dispatch, http or cmd.
//
// The protocol reference is EVENTSTORE-PROTOCOL.md in the design documents;
// comments in this package name its sections (§n).
package server
