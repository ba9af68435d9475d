// Package projections turns events into the Redis read models: pure apply
// functions per projector and one runner that subscribes to $all from its
// checkpoint and writes each batch of changes together with its checkpoint
// in one MULTI/EXEC.
//
// It may import domain/... and eventstore; nothing else of the project.
package projections
