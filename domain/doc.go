// Package domain is the root of fleetjobs' pure domain: one subpackage per
// aggregate (job, device), each a Decider — Decide(state, command) -> events
// or an error, Evolve(state, event) -> state. Domain packages do no I/O, read
// no clock, make no random IDs and do not log: IDs and times arrive on the
// commands.
//
// Domain packages import nothing of the project (standard library only).
package domain
