package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, stop, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// run executes one command line and returns the exit status. stopSignals is
// called once a shutdown has begun, so that a second SIGINT kills at once.
func run(ctx context.Context, stopSignals func(), args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage())
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && !isHelp(rest[0]) {
			return run(ctx, stopSignals, []string{rest[0], "--help"}, getenv, stdout, stderr)
		}
		fmt.Fprint(stdout, topUsage())
		return exitOK
	case "serve":
		err = runServe(ctx, stopSignals, rest, getenv, stderr)
	case "eventstore":
		err = runEventStore(ctx, stopSignals, rest, getenv, stderr)
	case "export":
		err = runExport(ctx, rest, getenv, stdout, stderr)
	case "replay":
		err = runReplay(ctx, rest, getenv, stdout)
	case "rebuild":
		err = runRebuild(ctx, rest, getenv, stdout, stderr)
	case "device":
		err = runDevice(ctx, rest, getenv, stdout, stderr)
	case "bench":
		err = runBench(ctx, rest, getenv, stdout, stderr)
	case "version":
		err = runVersion(rest, stdout)
	default:
		fmt.Fprintf(stderr, "fleetjobs: unknown command %q\nRun 'fleetjobs --help' for usage.\n", cmd)
		return exitUsage
	}

	var uerr *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, commandUsage(cmd))
		return exitOK
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "fleetjobs %s: %v\nRun 'fleetjobs %s --help' for usage.\n", cmd, err, cmd)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "fleetjobs %s: %v\n", cmd, err)
		return exitFail
	}
}

// isHelp reports whether arg asks for help rather than names a command:
// `fleetjobs help --help` and `fleetjobs --help help` show the top usage.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// topUsage is the text of `fleetjobs --help`.
func topUsage() string {
	return `fleetjobs runs bulk jobs on fleets of IoT devices.

Usage:
  fleetjobs <command> [flags]

Commands:
  serve        run the service: HTTP API and read models, with the embedded
               event store unless FLEETJOBS_EVENTSTORE_URL points at a KurrentDB,
               and the embedded Redis unless FLEETJOBS_REDIS_URL is set
  eventstore   run only the embedded KurrentDB-compatible event store
  export       print every event of the log (or some) as NDJSON, or a job's
               per-device results as CSV (--job ID --format csv)
  replay       print a job's history, or its state at a moment (--as-of)
  rebuild      rebuild the read models in Redis from the log without downtime,
               or check them against a rebuild (--verify)
  device       act as a device over MQTT: print the jobs it receives, answer them
  bench        load a running serve over its API: import devices, run a job on
               them, report devices/s
  version      print the version

Run 'fleetjobs <command> --help' for a command's flags.

Environment (each variable also has a flag on 'serve'):
` + envUsage() + `
Exit status: 0 success, 1 failure, 2 bad usage.
`
}

func envUsage() string {
	var b strings.Builder
	for _, s := range settings() {
		if s.def == "" {
			fmt.Fprintf(&b, "  %-26s %s\n", s.env, s.usage)
			continue
		}
		fmt.Fprintf(&b, "  %-26s %s (default %s)\n", s.env, s.usage, s.def)
	}
	fmt.Fprintf(&b, "  %-26s %s\n", demoEnv, "1: seed a demo fleet at start (serve --demo)")
	return b.String()
}

// commandUsage is the text of `fleetjobs <cmd> --help`.
func commandUsage(cmd string) string {
	var fs *flag.FlagSet
	var head string
	switch cmd {
	case "serve":
		head = "Usage: fleetjobs serve [flags]\n\nRuns the service. Every flag defaults to its FLEETJOBS_* variable, if set.\nSIGINT or SIGTERM shuts it down cleanly.\n\nFlags:\n"
		fs = newServeFlags(func(string) string { return "" }).fs
	case "eventstore":
		head = "Usage: fleetjobs eventstore [flags]\n\nRuns only the embedded KurrentDB-compatible event store, for other programs\nand tools to use (esdb://HOST:PORT?tls=false). SIGINT or SIGTERM shuts it\ndown cleanly.\n\n--data names the store's directory or serve's data directory (the store is\nthen its eventstore subdirectory); an empty or missing directory gets a new\nstore, one holding other files but no store exits 2.\n\nFlags:\n"
		fs, _ = eventStoreFlags(func(string) string { return "" })
	case "export":
		head = "Usage: fleetjobs export [flags]\n       fleetjobs export --job ID --format csv [flags]\n\nPrints the events of the log as NDJSON on stdout, in log order, one per line:\n{stream, revision, position, id, type, contentType, data, metadata, recordedAt}.\ndata and metadata are the stored JSON, or a base64 string when not JSON.\nAn interrupted export resumes with --since and the last position printed.\nProgress goes to stderr when it is a terminal. The store's own $-streams\nare left out.\n\nWith --job ID --format csv it writes instead that job's per-device results\nfor spreadsheets: a header, then one row per targeted device (deleted ones\nincluded): device,name,status,error,time (status Pending, Succeeded or\nFailed; time the RFC 3339 time of the result, empty while pending). Cells a\nspreadsheet would run as a formula get a leading '.\n\nAn unknown --job exits 1, in either format.\n\nReads a running store (--eventstore-url; serve's embedded store by default)\nor a data directory no serve holds (--data).\n\nFlags:\n"
		fs, _ = exportFlags(func(string) string { return "" })
	case "replay":
		head = "Usage: fleetjobs replay --job ID [--as-of TIME] [--json] [flags]\n\nPrints a job's whole history from the log, one line per event (time, actor,\nwhat happened, for which devices), or with --as-of its state at that moment\n(status, counts, each device's status), folded from the events that occurred\nuntil then. An unknown job exits 1.\n\nFlags:\n"
		fs, _ = replayFlags(func(string) string { return "" })
	case "device":
		head = "Usage: fleetjobs device --id ID --key KEY [--broker URL] [--fail MESSAGE] [--ignore]\n\nConnects to the MQTT broker as device ID with its key (shown when the device was\nregistered), prints each job it receives (one line, then its operations) and\nanswers it: succeeded, failed with --fail's message, or never with --ignore.\nA duplicate delivery of a job is not applied again. SIGINT disconnects and\nexits 0; a refused key exits 1, at the first connection or later, when the\nbroker disconnected the device and refuses its key at the reconnection (a new\nkey was issued with :issueKey, or the device was deleted).\n\nFlags:\n"
		fs, _ = deviceFlags(func(string) string { return "" })
	case "rebuild":
		head = `Usage: fleetjobs rebuild [--projection NAME] [--verify] [--create] [flags]

Rebuilds read models in Redis from the event log without downtime: writes a
new version of each projection beside the live one from the start of the
log, catches up with the head, switches the active version atomically (the
running serve instances follow it), then deletes the old version after
--grace. Progress goes to stderr: a bar on a terminal, a line every 5 s
otherwise, nothing with --quiet. Safe to interrupt (Ctrl-C, kill): the live
read models are untouched, and running it again resumes the interrupted
rebuild from its checkpoint. A projection with no active version under
--redis-key-root (nothing projected there: a mistyped root?) exits 2 unless
--create is given, which builds read models where none were ever projected,
e.g. before the first serve start.

With --verify it changes nothing: it builds a scratch copy up to the live
version's position, compares them key by key (type, content, expiry),
prints the drift (a hash's differing fields as "field": live → rebuilt,
other values cut around their first difference), deletes the copy, and
exits 1 on drift.

Needs the Redis serve uses (FLEETJOBS_REDIS_URL): with the embedded Redis
the read models are rebuilt at every start of serve. Reads the log like
export does (a running serve's store by default, --eventstore-url, --data).

Flags:
`
		fs, _ = rebuildFlags(func(string) string { return "" })
	case "bench":
		head = `Usage: fleetjobs bench [--url URL] [--devices N] [flags]

The load driver: against a running serve, over its HTTP API as an
integration would, it imports N devices of the template fleetjobs-bench
(NDJSON, --chunk devices a request), defines the set bench-RUN of them,
creates the job bench-RUN (fanSpeed 1200) on the set and waits until every
device has a result. It prints the import's devices/s (until the last
device is visible in the read models) and the job's (from its creation to
every result visible). Progress goes to stderr when it is a terminal.

The job runs on whatever devices serve dispatches to: the simulated fleet
with FLEETJOBS_DEVICES=sim (make run), else devices must be connected. Each
run adds its devices to the log: use a scratch deployment.

Flags:
`
		fs, _ = benchFlags(func(string) string { return "" })
	case "version":
		return "Usage: fleetjobs version\n\nPrints the version of fleetjobs and of the event store protocol it serves.\n"
	default:
		return topUsage()
	}
	var b strings.Builder
	b.WriteString(head)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}
