package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ExportConfig is the configuration of `fleetjobs export`.
type ExportConfig struct {
	// Streams keeps events of these streams; a name ending in '*' is a
	// prefix ("job-*"). Empty keeps every stream.
	Streams []string
	// Types keeps events of these types. Empty keeps every type.
	Types []string
	// Since resumes after this position (exclusive): the last position an
	// interrupted export printed. The zero Position starts at the beginning.
	Since eventstore.Position
	// Until, when not zero, ends the export before the first event recorded
	// after it.
	Until time.Time
	// JobID keeps the events of that job's stream (NDJSON), or names the
	// job whose per-device results Format "csv" writes.
	JobID string
	// Format is "ndjson" (the default: events) or "csv" (a job's results).
	Format string
}

// exportFlags builds the flag set of `fleetjobs export`.
func exportFlags(getenv func(string) string) (*flag.FlagSet, func() (ExportConfig, logSource, error)) {
	fs := newFlagSet("export")
	var streams, types listFlag
	fs.Var(&streams, "stream", "keep only this stream (repeatable or comma-separated; a trailing * makes a prefix: job-*)")
	fs.Var(&types, "type", "keep only this event type of the catalog (repeatable or comma-separated), e.g. JobStopped; another type exits 2, listing them")
	since := fs.String("since", "", "resume after this position (exclusive), as printed in the output: C:<commit>/P:<prepare>; one beyond the log's last event exits 2")
	until := fs.String("until", "", "stop before the first event recorded after this time (RFC 3339, e.g. 2026-11-02T10:00:00Z)")
	jobID := fs.String("job", "", "only this job's events; with --format csv, the job whose per-device results to write")
	format := fs.String("format", "ndjson", "ndjson: events, one JSON object a line; csv: the per-device results of --job (device, name, status, error, time)")
	source := logSourceFlags(fs, getenv)
	return fs, func() (ExportConfig, logSource, error) {
		c := ExportConfig{Streams: streams, Types: types, JobID: *jobID, Format: *format}
		if flagSet(fs, "job") {
			if err := checkIDFlag("job", c.JobID); err != nil {
				return c, logSource{}, err
			}
		}
		switch c.Format {
		case "ndjson":
			if c.JobID != "" {
				if len(c.Streams) > 0 {
					return c, logSource{}, usageErrorf("--job and --stream are exclusive: --job ID is --stream %s", eventstore.JobStream(c.JobID))
				}
				c.Streams = []string{eventstore.JobStream(c.JobID)}
			}
		case "csv":
			if c.JobID == "" {
				return c, logSource{}, usageErrorf("--format csv needs --job: it writes one job's per-device results")
			}
			for _, f := range []string{"stream", "type", "since", "until"} {
				if flagSet(fs, f) {
					return c, logSource{}, usageErrorf("--%s does not apply to --format csv (a job's results as they are now)", f)
				}
			}
		default:
			return c, logSource{}, usageErrorf("invalid --format %q: want ndjson or csv", c.Format)
		}
		known := eventstore.NewCatalogCodec().Types()
		for _, t := range c.Types {
			if err := checkEventType(t, known); err != nil {
				return c, logSource{}, err
			}
		}
		for _, s := range c.Streams {
			if s == "" || s == "*" {
				return c, logSource{}, usageErrorf("invalid --stream %q: want a stream name or a prefix ending in *", s)
			}
		}
		if *since != "" {
			p, err := eventstore.ParsePosition(*since)
			if err != nil {
				return c, logSource{}, usageErrorf("invalid --since %q: want a position as printed by export (C:<commit>/P:<prepare>): %v", *since, err)
			}
			c.Since = p
		}
		if *until != "" {
			t, err := time.Parse(time.RFC3339Nano, *until)
			if err != nil {
				return c, logSource{}, usageErrorf("invalid --until %q: want an RFC 3339 time such as 2026-11-02T10:00:00Z", *until)
			}
			c.Until = t
		}
		src, err := source()
		return c, src, err
	}
}

// checkEventType refuses, as a usage error, a --type that is not one of
// the catalog's event types (known): it would silently export nothing. A
// type that differs from one only by case is named as the likely one.
func checkEventType(t string, known []string) error {
	if slices.Contains(known, t) {
		return nil
	}
	hint := ""
	for _, k := range known {
		if strings.EqualFold(k, t) {
			hint = " (did you mean " + k + "?)"
		}
	}
	return usageErrorf("unknown --type %q%s: want one of the event types of the catalog: %s", t, hint, strings.Join(known, ", "))
}

// listFlag is a repeatable, comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		*l = append(*l, strings.TrimSpace(s))
	}
	return nil
}

// ExportedEvent is one line of `fleetjobs export`: a stored event as it is
// in the log. Data and Metadata are the stored JSON when it is JSON, else
// a base64 string of the stored bytes (ContentType then says
// application/octet-stream).
type ExportedEvent struct {
	Stream      string          `json:"stream"`
	Revision    uint64          `json:"revision"`
	Position    string          `json:"position"`
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	ContentType string          `json:"contentType"`
	Data        json.RawMessage `json:"data"`
	Metadata    json.RawMessage `json:"metadata"`
	RecordedAt  time.Time       `json:"recordedAt"`
}

// exporter writes the events of one export.
type exporter struct {
	cfg   ExportConfig
	w     *bufio.Writer
	n     uint64
	last  eventstore.Position // of the last event written
	line  []byte
	types map[string]bool
	// created and createdText are the last recorded time written and its
	// text: the events of one append share it.
	created     time.Time
	createdText []byte
}

// appendRecorded appends t in RFC 3339 with nanoseconds, in UTC.
func (x *exporter) appendRecorded(b []byte, t time.Time) []byte {
	if x.createdText == nil || !t.Equal(x.created) {
		x.created = t
		x.createdText = t.UTC().AppendFormat(x.createdText[:0], time.RFC3339Nano)
	}
	return append(b, x.createdText...)
}

// keep reports whether ev passes the stream and type filters.
func (x *exporter) keep(stream, typ string) bool {
	// The store's own bookkeeping ($-streams: settings, statistics,
	// scavenges) is not fleetjobs history and cannot be appended back.
	if strings.HasPrefix(stream, "$") {
		return false
	}
	if len(x.types) > 0 && !x.types[typ] {
		return false
	}
	if len(x.cfg.Streams) == 0 {
		return true
	}
	for _, s := range x.cfg.Streams {
		if p, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(stream, p) {
				return true
			}
		} else if stream == s {
			return true
		}
	}
	return false
}

// result is what the exporter wrote so far.
func (x *exporter) result() ExportResult { return ExportResult{N: x.n, Last: x.last} }

// write appends one NDJSON line. It builds the line by hand: the data and
// metadata go out verbatim, without encoding/json re-validating them.
func (x *exporter) write(e *esdb.RecordedEvent) error {
	b := x.line[:0]
	b = append(b, `{"stream":`...)
	b = appendJSONString(b, e.StreamID)
	b = append(b, `,"revision":`...)
	b = strconv.AppendUint(b, e.EventNumber, 10)
	b = append(b, `,"position":"`...)
	b = appendPosition(b, e.Position.Commit, e.Position.Prepare)
	b = append(b, `","id":"`...)
	b = appendUUID(b, &e.EventID)
	b = append(b, `","type":`...)
	b = appendJSONString(b, e.EventType)
	if len(e.Data) > 0 && e.ContentType == "application/json" && validJSON(e.Data) {
		b = append(b, `,"contentType":"application/json","data":`...)
		b = appendCompact(b, e.Data)
	} else {
		b = append(b, `,"contentType":"application/octet-stream","data":"`...)
		b = base64.StdEncoding.AppendEncode(b, e.Data)
		b = append(b, '"')
	}
	b = append(b, `,"metadata":`...)
	if len(e.UserMetadata) > 0 && e.UserMetadata[0] != '"' && validJSON(e.UserMetadata) {
		b = appendCompact(b, e.UserMetadata)
	} else {
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, e.UserMetadata)
		b = append(b, '"')
	}
	b = append(b, `,"recordedAt":"`...)
	b = x.appendRecorded(b, e.CreatedDate)
	b = append(b, "\"}\n"...)
	x.line = b
	_, err := x.w.Write(b)
	return err
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	if plainJSONString(s) {
		return append(append(append(b, '"'), s...), '"')
	}
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// appendCompact appends valid JSON v on one line: NDJSON needs one event a
// line even when a writer stored indented JSON.
func appendCompact(b, v []byte) []byte {
	if bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return append(b, v...)
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, v); err != nil {
		return append(b, v...) // json.Valid said it is JSON: unreachable
	}
	return buf.Bytes()
}

// runExport is `fleetjobs export`.
func runExport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, load := exportFlags(getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, src, err := load()
	if err != nil {
		return err
	}
	defer readerGC()()
	es, release, err := openLog(ctx, src)
	if err != nil {
		return err
	}
	defer release()
	w := bufio.NewWriterSize(stdout, 256<<10)
	client := eventstore.New(es, eventstore.WithCodec(eventstore.NewCatalogCodec()))
	if cfg.Format == "csv" {
		err := ExportJobCSV(ctx, client, cfg.JobID, w)
		if ferr := w.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("write output: %w", ferr)
		}
		return err
	}
	if cfg.JobID != "" {
		// Without this, a job the log does not have exports nothing and
		// exits 0, as if it had no events.
		if err := checkJobExists(ctx, client, cfg.JobID); err != nil {
			return err
		}
	}
	if err := checkSince(ctx, client, cfg.Since); err != nil {
		return err
	}
	res, err := Export(ctx, es, cfg, w, progressWriter(stderr))
	// Flush what was exported even after a failure or an interrupt: every
	// line written is whole, so the last position printed is where a rerun
	// with --since resumes.
	if ferr := w.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	switch {
	case err == nil:
		return nil
	case res.N == 0:
		return fmt.Errorf("after 0 events: %w", err)
	default:
		return fmt.Errorf("after %d events, the last at %s (resume with --since %s): %w", res.N, res.Last, res.Last, err)
	}
}

// readerGCPercent is the garbage collector's target during an export or a
// rebuild.
const readerGCPercent = 400

// readerGC sets the garbage collector's target to readerGCPercent for a
// command that reads the whole log (export, rebuild), unless the process's
// GOGC is set (the runtime reads the real environment, not the command's
// getenv), and returns what restores it. Such a command allocates a few
// hundred bytes per event (the client's messages, the embedded store's
// pages, decoded events) that die at once, while its live heap stays small:
// at the default GOGC=100 the collector runs every few MiB and costs about
// an eighth of an export's CPU (BenchmarkExport) and a fifth of a
// rebuild's (BenchmarkRebuildLog); at 400 it runs a quarter as often, for a
// heap a few tens of MiB larger. Higher targets measured no faster.
func readerGC() (restore func()) {
	if _, ok := os.LookupEnv("GOGC"); ok {
		return func() {}
	}
	old := debug.SetGCPercent(readerGCPercent)
	return func() { debug.SetGCPercent(old) }
}

// progressWriter returns stderr when it is a terminal, else nil: progress
// lines are for people watching, not for logs or pipes.
func progressWriter(stderr io.Writer) io.Writer {
	f, ok := stderr.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return nil
	}
	return stderr
}

// ExportResult is what an export wrote: N events, the last at Last.
type ExportResult struct {
	N    uint64
	Last eventstore.Position
}

// Export writes the events of the log es that cfg selects to w as NDJSON,
// in log order, and returns how many it wrote and the position of the
// last. It reports progress to progress (nil: none) about once a second,
// on one terminal line it redraws. w is written line by line; the caller
// flushes it.
func Export(ctx context.Context, es *esdb.Client, cfg ExportConfig, w *bufio.Writer, progress io.Writer) (ExportResult, error) {
	x := &exporter{cfg: cfg, w: w, line: make([]byte, 0, 4096)}
	if len(cfg.Types) > 0 {
		x.types = make(map[string]bool, len(cfg.Types))
		for _, t := range cfg.Types {
			x.types[t] = true
		}
	}
	var from esdb.AllPosition = esdb.Start{}
	if !cfg.Since.IsZero() {
		from = esdb.Position{Commit: cfg.Since.Commit, Prepare: cfg.Since.Prepare}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs, err := es.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Forwards, From: from}, math.MaxUint64)
	if err != nil {
		return ExportResult{}, fmt.Errorf("read $all: %w", err)
	}
	defer rs.Close()
	start := time.Now()
	lastReport := start
	var seen uint64
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return x.result(), fmt.Errorf("read $all: %w", context.Cause(ctx))
			}
			return x.result(), fmt.Errorf("read $all: %w", err)
		}
		e := ev.OriginalEvent()
		if e == nil {
			continue
		}
		p := eventstore.Position{Commit: e.Position.Commit, Prepare: e.Position.Prepare}
		if !cfg.Since.IsZero() && p.Compare(cfg.Since) <= 0 {
			continue // --since is exclusive: that event was printed already
		}
		if !cfg.Until.IsZero() && e.CreatedDate.After(cfg.Until) {
			break
		}
		seen++
		if x.keep(e.StreamID, e.EventType) {
			if err := x.write(e); err != nil {
				return x.result(), fmt.Errorf("write output: %w", err)
			}
			x.n++
			x.last = p
		}
		if progress != nil && seen%4096 == 0 {
			if now := time.Now(); now.Sub(lastReport) >= time.Second {
				lastReport = now
				rate := float64(seen) / now.Sub(start).Seconds()
				fmt.Fprintf(progress, "\r\033[Kexport: %d events read, %d written, %.0f events/s, at %s", seen, x.n, rate, p)
			}
		}
	}
	if progress != nil {
		fmt.Fprintf(progress, "\r\033[Kexport: %d events read, %d written in %s\n", seen, x.n, time.Since(start).Round(time.Millisecond))
	}
	return x.result(), nil
}

// checkJobExists returns an error wrapping errJobNotFound when the log has
// no stream of job id.
func checkJobExists(ctx context.Context, es *eventstore.Client, id string) error {
	err := es.ReadStream(ctx, eventstore.JobStream(id), 0, func(eventstore.Recorded) error { return errStopReading })
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return jobNotFound(id)
	case err != nil && !errors.Is(err, errStopReading):
		return fmt.Errorf("export job %s: %w", id, err)
	}
	return nil
}

// checkSince refuses, as a usage error, a --since beyond the head of the
// log (the zero Position for an empty log): it would export nothing now,
// and a later run, once the log has grown past it, would silently skip the
// events in between. Such a position comes from another store.
func checkSince(ctx context.Context, es *eventstore.Client, since eventstore.Position) error {
	if since.IsZero() {
		return nil
	}
	head, err := es.Head(ctx)
	if err != nil {
		return fmt.Errorf("read the head of the log: %w", err)
	}
	if since.Compare(head) > 0 {
		return usageErrorf("invalid --since %s: the position is beyond the last event of this log, at %s (a position from another store?)", since, head)
	}
	return nil
}

// csvHeader is the first line of `export --format csv`.
var csvHeader = []string{"device", "name", "status", "error", "time"}

// ExportJobCSV writes job id's per-device results to w as CSV (RFC 4180,
// for spreadsheets): the header csvHeader, then one row per device the job
// targeted, in targeting order: its ID, its name when targeted (deleted
// devices keep theirs), its status (Pending, Succeeded or Failed), the
// failure's error and the RFC 3339 time of its result (empty while
// pending). It folds the job's stream with job.Evolve, so a result counts
// as the job's state says (the first one; later ones are ignored). A cell
// that a spreadsheet would take for a formula (starting with =, +, -, @,
// tab or carriage return: device errors are written by devices) gets a
// leading apostrophe. A job the log does not have is an error wrapping
// errJobNotFound.
func ExportJobCSV(ctx context.Context, es *eventstore.Client, id string, w io.Writer) error {
	codec := eventstore.NewCatalogCodec()
	var (
		state *job.State
		names = make(map[string]string)
		order []string
		times = make(map[string]time.Time)
	)
	err := es.ReadStream(ctx, eventstore.JobStream(id), 0, func(r eventstore.Recorded) error {
		v, err := r.Decode(codec)
		if err != nil {
			return fmt.Errorf("job %s revision %d: %w", id, r.Revision, err)
		}
		ev, ok := v.(job.Event)
		if !ok {
			return fmt.Errorf("job %s revision %d: %s is not a job event", id, r.Revision, r.Type)
		}
		var device string
		switch e := ev.(type) {
		case job.DevicesTargeted:
			for _, d := range e.Devices {
				if _, seen := names[d.DeviceID]; !seen {
					order = append(order, d.DeviceID)
				}
				names[d.DeviceID] = d.Name
			}
		case job.OperationSucceeded:
			device = e.DeviceID
		case job.OperationFailed:
			device = e.DeviceID
		case job.Created, job.Started, job.DevicesDispatched, job.Completed, job.Failed, job.Stopped:
			// No device's name nor its result: Evolve alone takes
			// them in.
		}
		before, _ := state.Device(device)
		state = job.Evolve(state, ev)
		if after, ok := state.Device(device); ok && device != "" && before.Status == job.DevicePending && after.Status != job.DevicePending {
			at := r.Metadata.OccurredAt
			if at.IsZero() {
				at = r.RecordedAt
			}
			times[device] = at
		}
		return nil
	})
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return jobNotFound(id)
	case err != nil:
		return fmt.Errorf("export job %s: %w", id, err)
	case !state.Exists():
		return jobNotFound(id)
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	for _, dev := range order {
		d, _ := state.Device(dev)
		row := []string{dev, names[dev], csvStatus(d.Status), d.Error, ""}
		if t, ok := times[dev]; ok {
			row[4] = t.UTC().Format(time.RFC3339Nano)
		}
		for i := range row {
			row[i] = csvCell(row[i])
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// csvStatus is a device status as the CSV shows it: Pending, Succeeded,
// Failed.
func csvStatus(s job.DeviceStatus) string {
	if s == "" {
		return ""
	}
	return strings.ToUpper(string(s[:1])) + string(s[1:])
}

// csvCell defuses a cell a spreadsheet would evaluate as a formula.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
