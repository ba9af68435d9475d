// Command fleetjobs is the fleetjobs service and its tools, in one binary:
//
//	fleetjobs serve        the service (HTTP, projections, commands; embedded event store and Redis unless configured)
//	fleetjobs eventstore   only the embedded KurrentDB-compatible event store
//	fleetjobs export       the log as NDJSON, or a job's per-device results as CSV
//	fleetjobs replay       a job's history, or its state at a moment
//	fleetjobs rebuild      the Redis read models rebuilt from the log without downtime, or verified (--verify)
//	fleetjobs device       a small MQTT device agent, to try the transport by hand
//	fleetjobs bench        the load driver: imports devices and runs a job on a running serve, over its API
//	fleetjobs version      the version
//
// serve wires, in order: the event store (embedded or FLEETJOBS_EVENTSTORE_URL),
// the official client with the catalog codec, Redis (embedded miniredis or
// FLEETJOBS_REDIS_URL), the projections Writer and Runner (a goroutine whose
// health /readyz and /metrics report), the command handler (which gives new
// devices their keys), the device transport and the dispatcher
// (FLEETJOBS_DEVICES=mqtt, the default: the embedded MQTT broker unless
// FLEETJOBS_MQTT_URL names one, checking device keys through the command
// handler, and the MQTT transport, mqtt.go; sim: the simulated fleet; none:
// no dispatcher, the API beside an instance that dispatches) with a
// dispatch.Manager in a goroutine beside the runner, its checkpoint in one
// Redis key, its state in /readyz and /metrics, the demo fleet (--demo, seeded through the command path),
// the HTTP server, and then the dispatcher's run, under the dispatch lease
// (lease.go: one instance of several dispatches; its ID names the address
// HTTP listens on); adapters.go and jobs.go fit the commands and projections
// packages to the small interfaces package http declares, and dispatcher.go
// fits the command handler and the read models to those of package
// dispatch. Close undoes it in reverse: the dispatcher stops before the
// transport it sends through, the broker before the command handler it
// checks keys with.
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
