// Command fleetjobs is the fleetjobs service and its tools, in one binary:
//
//	fleetjobs serve        the service (HTTP, projections, commands; embedded event store and Redis unless configured)
//	fleetjobs eventstore   only the embedded KurrentDB-compatible event store
//	fleetjobs version      the version
//
// serve wires, in order: the event store (embedded or FLEETJOBS_EVENTSTORE_URL),
// the official client with the catalog codec, Redis (embedded miniredis or
// FLEETJOBS_REDIS_URL), the projections Writer and Runner (a goroutine whose
// health /readyz and /metrics report), the command handler, the dispatcher
// (FLEETJOBS_DEVICES=sim: a dispatch.Manager over the simulated fleet, in a
// goroutine beside the runner, its checkpoint in one Redis key, its state in
// /readyz and /metrics; with the default mqtt, not implemented yet, none runs
// and jobs stay pending), the demo fleet (--demo, seeded through the command
// path) and the HTTP server; adapters.go and jobs.go fit the commands and
// projections packages to the small interfaces package http declares, and
// dispatcher.go fits the command handler and the read models to those of
// package dispatch. Close undoes it in reverse: the dispatcher stops before
// the command handler it sends commands to.
//
// It owns all the wiring, in the shape of benbjohnson/wtf: Main (serve) and
// EventStoreMain (eventstore) build every component from their Config, start
// them with Run and stop them, in dependency order, with Close; main only
// parses the command line, waits for SIGINT/SIGTERM and maps errors to exit
// statuses (0 success, 1 failure, 2 bad usage). There is no package-level
// mutable state: configuration, logger and clock are fields of Main.
//
// It may import every package of the project; nothing imports it.
package main
