package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ReplayConfig is the configuration of `fleetjobs replay`.
type ReplayConfig struct {
	JobID string
	// AsOf, when not zero, asks for the job's state at that moment instead
	// of its history: the events that occurred until then, folded.
	AsOf time.Time
	JSON bool
}

// replayDeviceList bounds the device IDs a history line names; the rest
// are counted ("and 997 more").
const replayDeviceList = 5

func replayFlags(getenv func(string) string) (*flag.FlagSet, func() (ReplayConfig, logSource, error)) {
	fs := newFlagSet("replay")
	id := fs.String("job", "", "the job's ID (required)")
	asOf := fs.String("as-of", "", "show the job's state at this time (RFC 3339, e.g. 2026-11-02T10:00:00Z) instead of its history")
	asJSON := fs.Bool("json", false, "print JSON for machines: one object per event, or the state with --as-of")
	source := logSourceFlags(fs, getenv)
	return fs, func() (ReplayConfig, logSource, error) {
		c := ReplayConfig{JobID: *id, JSON: *asJSON}
		if c.JobID == "" {
			return c, logSource{}, usageErrorf("--job is required")
		}
		if err := checkIDFlag("job", c.JobID); err != nil {
			return c, logSource{}, err
		}
		if *asOf != "" {
			t, err := time.Parse(time.RFC3339Nano, *asOf)
			if err != nil {
				return c, logSource{}, usageErrorf("invalid --as-of %q: want an RFC 3339 time such as 2026-11-02T10:00:00Z", *asOf)
			}
			c.AsOf = t
		}
		src, err := source()
		return c, src, err
	}
}

// runReplay is `fleetjobs replay`.
func runReplay(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, load := replayFlags(getenv)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, src, err := load()
	if err != nil {
		return err
	}
	es, release, err := openLog(ctx, src)
	if err != nil {
		return err
	}
	defer release()
	client := eventstore.New(es, eventstore.WithCodec(eventstore.NewCatalogCodec()))
	w := bufio.NewWriter(stdout)
	err = Replay(ctx, client, cfg, w)
	if ferr := w.Flush(); ferr != nil && err == nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	return err
}

// ReplayedEvent is one event of a job's history as `replay --json` prints
// it.
type ReplayedEvent struct {
	Revision   uint64          `json:"revision"`
	Position   string          `json:"position"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurredAt"`
	RecordedAt time.Time       `json:"recordedAt"`
	Actor      string          `json:"actor"`
	CommandID  string          `json:"commandId,omitempty"`
	Summary    string          `json:"summary"`
	Data       json.RawMessage `json:"data"`
}

// ReplayedState is a job's state at a moment, as `replay --as-of --json`
// prints it.
type ReplayedState struct {
	JobID       string           `json:"jobId"`
	Name        string           `json:"name"`
	DeviceSetID string           `json:"deviceSetId"`
	AsOf        time.Time        `json:"asOf"`
	Status      job.Status       `json:"status"`
	Reason      string           `json:"reason,omitempty"`
	Counts      ReplayedCounts   `json:"counts"`
	Devices     []ReplayedDevice `json:"devices"`
}

// ReplayedCounts are a job's device counts.
type ReplayedCounts struct {
	Total      int `json:"total"`
	Pending    int `json:"pending"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	Dispatched int `json:"dispatched"`
}

// ReplayedDevice is one device's state in a job.
type ReplayedDevice struct {
	ID         string           `json:"id"`
	Status     job.DeviceStatus `json:"status"`
	Dispatched bool             `json:"dispatched"`
	Error      string           `json:"error,omitempty"`
}

// replayTime is how replay's human output prints times: UTC with all nine
// fractional digits, so that the column has a fixed width (RFC3339Nano
// drops trailing zeros) and a time copied to --as-of includes the event it
// was printed for (a truncated time would be before it).
const replayTime = "2006-01-02T15:04:05.000000000Z07:00"

// errJobNotFound is replay's and export's answer for a job the log does
// not have.
var errJobNotFound = errors.New("job not found")

// jobNotFound is the error for job id, which the log does not have.
func jobNotFound(id string) error {
	return fmt.Errorf("job %q: %w in the event log", id, errJobNotFound)
}

// Replay prints job cfg.JobID's history (or, with cfg.AsOf, its state at
// that moment) from the log to w. A job the log does not have is an error
// wrapping errJobNotFound.
func Replay(ctx context.Context, es *eventstore.Client, cfg ReplayConfig, w io.Writer) error {
	codec := eventstore.NewCatalogCodec()
	var state *job.State
	err := es.ReadStream(ctx, eventstore.JobStream(cfg.JobID), 0, func(r eventstore.Recorded) error {
		at := r.Metadata.OccurredAt
		if at.IsZero() {
			at = r.RecordedAt
		}
		if !cfg.AsOf.IsZero() && at.After(cfg.AsOf) {
			return errStopReading
		}
		v, err := r.Decode(codec)
		if err != nil {
			return fmt.Errorf("job %s revision %d: %w", cfg.JobID, r.Revision, err)
		}
		ev, ok := v.(job.Event)
		if !ok {
			return fmt.Errorf("job %s revision %d: %s is not a job event", cfg.JobID, r.Revision, r.Type)
		}
		finished := state != nil && state.Status.Finished()
		summary := describe(ev, finished, state)
		state = job.Evolve(state, ev)
		if !cfg.AsOf.IsZero() {
			return nil
		}
		if cfg.JSON {
			line, err := json.Marshal(ReplayedEvent{
				Revision: r.Revision, Position: r.Position.String(), Type: r.Type,
				OccurredAt: at.UTC(), RecordedAt: r.RecordedAt.UTC(), Actor: r.Metadata.Actor,
				CommandID: r.Metadata.CommandID, Summary: summary, Data: r.Data,
			})
			if err != nil {
				return fmt.Errorf("encode event: %w", err)
			}
			_, err = fmt.Fprintf(w, "%s\n", line)
			return err
		}
		// Escaped before padding, so that the column stays aligned.
		actor := escapeNonPrintable(r.Metadata.Actor)
		if actor == "" {
			actor = "-"
		}
		return writeLine(w, fmt.Sprintf("%s  %-12s  %s", at.UTC().Format(replayTime), actor, summary))
	})
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound):
		return jobNotFound(cfg.JobID)
	case err != nil && !errors.Is(err, errStopReading):
		return fmt.Errorf("replay job %s: %w", cfg.JobID, err)
	}
	if cfg.AsOf.IsZero() {
		return nil
	}
	if state == nil || !state.Exists() {
		return fmt.Errorf("job %q did not exist yet at %s", cfg.JobID, cfg.AsOf.UTC().Format(replayTime))
	}
	return printState(w, cfg, state)
}

// errStopReading ends a stream read at --as-of.
var errStopReading = errors.New("stop reading")

// printState prints a job's state at cfg.AsOf.
func printState(w io.Writer, cfg ReplayConfig, s *job.State) error {
	c := s.Counts()
	out := ReplayedState{
		JobID: s.JobID, Name: s.Name, DeviceSetID: s.DeviceSetID, AsOf: cfg.AsOf.UTC(),
		Status: s.Status, Reason: s.Reason,
		Counts:  ReplayedCounts{Total: c.Total, Pending: c.Pending, Succeeded: c.Succeeded, Failed: c.Failed, Dispatched: c.Dispatched},
		Devices: []ReplayedDevice{},
	}
	for id, d := range s.Devices() {
		out.Devices = append(out.Devices, ReplayedDevice{ID: id, Status: d.Status, Dispatched: d.Dispatched, Error: d.Error})
	}
	if cfg.JSON {
		b, err := json.Marshal(out)
		if err != nil {
			return fmt.Errorf("encode state: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	head := fmt.Sprintf("job %s %q as of %s: %s", out.JobID, out.Name, out.AsOf.Format(replayTime), out.Status)
	if out.Reason != "" {
		head += " (" + strconv.Quote(out.Reason) + ")"
	}
	lines := []string{head, fmt.Sprintf("devices: %d total, %d pending, %d succeeded, %d failed, %d dispatched",
		c.Total, c.Pending, c.Succeeded, c.Failed, c.Dispatched)}
	for _, d := range out.Devices {
		line := fmt.Sprintf("  %-24s %-9s", d.ID, d.Status)
		if d.Dispatched {
			line += "  dispatched"
		}
		if d.Error != "" {
			line += "  " + strconv.Quote(d.Error)
		}
		lines = append(lines, line)
	}
	for _, l := range lines {
		if err := writeLine(w, l); err != nil {
			return err
		}
	}
	return nil
}

// writeLine writes s and a newline, with every rune that is not printable
// (a line break, a carriage return, an ANSI escape, invalid UTF-8)
// escaped as Go would quote it: free text is quoted where it is printed,
// and this is the last line of defence, so that one event is always one
// line and nothing in the log can rewrite what the terminal shows.
func writeLine(w io.Writer, s string) error {
	_, err := io.WriteString(w, escapeNonPrintable(s)+"\n")
	return err
}

// escapeNonPrintable returns s with each non-printable rune (and each byte
// of invalid UTF-8) replaced by its Go escape, without quotes around.
func escapeNonPrintable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// describe says what ev recorded, in a line. Free text that devices and
// operators write (errors, reasons) is quoted, so that it cannot pass for
// our own words ("(late: ...)"). late is true when the job had
// already finished: results then are late (the device acted after a stop).
func describe(ev job.Event, late bool, before *job.State) string {
	lateNote := ""
	if late && before != nil {
		lateNote = fmt.Sprintf(" (late: the job was already %s)", before.Status)
	}
	switch e := ev.(type) {
	case job.Created:
		ops := make([]string, len(e.Operations))
		for i, o := range e.Operations {
			v, _ := json.Marshal(o.Value)
			ops[i] = o.Name + "=" + string(v)
		}
		return fmt.Sprintf("created %q: %s job on device set %s, %d devices, operations %s",
			e.Name, e.Type, e.DeviceSetID, e.DeviceCount, strings.Join(ops, ", "))
	case job.DevicesTargeted:
		ids := make([]string, len(e.Devices))
		for i, d := range e.Devices {
			ids[i] = d.DeviceID
		}
		return "targeted " + deviceList(ids)
	case job.Started:
		return "started"
	case job.DevicesDispatched:
		return "dispatched to " + deviceList(e.DeviceIDs) + lateNote
	case job.OperationSucceeded:
		return "device " + e.DeviceID + " succeeded" + lateNote
	case job.OperationFailed:
		return fmt.Sprintf("device %s failed: %s%s", e.DeviceID, strconv.Quote(e.Error), lateNote)
	case job.Completed:
		return fmt.Sprintf("completed: %d succeeded, %d failed", e.Succeeded, e.Failed)
	case job.Failed:
		return fmt.Sprintf("failed: %s (%d succeeded, %d failed)", strconv.Quote(e.Reason), e.Succeeded, e.Failed)
	case job.Stopped:
		return "stopped: " + strconv.Quote(e.Reason)
	}
	return fmt.Sprintf("%T", ev)
}

// deviceList names a few devices and counts the rest, so that a line about
// a thousand devices stays a line.
func deviceList(ids []string) string {
	noun := "devices"
	if len(ids) == 1 {
		noun = "device"
	}
	if len(ids) <= replayDeviceList {
		return fmt.Sprintf("%d %s: %s", len(ids), noun, strings.Join(ids, ", "))
	}
	return fmt.Sprintf("%d %s: %s and %d more", len(ids), noun, strings.Join(ids[:replayDeviceList], ", "), len(ids)-replayDeviceList)
}
