package main_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

// exported is one line of `fleetjobs export`.
type exported struct {
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

// storedEvent is what the round trip compares: everything of an event but
// its position and recorded time, which a new store assigns.
type storedEvent struct {
	Stream      string
	Revision    uint64
	ID          string
	Type        string
	ContentType string
	Data        string
	Metadata    string
}

// at is a fixed moment of the test histories.
func at(min int) time.Time { return time.Date(2026, 11, 2, 10, min, 0, 0, time.UTC) }

// MustAppendJob appends job events to job-{id} with the given actor and
// occurredAt, one append per call.
func MustAppendJob(tb testing.TB, es *eventstore.Client, id, actor string, when time.Time, evs ...job.Event) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	batch := make([]eventstore.Event, len(evs))
	for i, ev := range evs {
		batch[i] = eventstore.Event{ID: uuid.New(), Data: ev, Metadata: eventstore.Metadata{
			CommandID: uuid.NewString(), CorrelationID: id, Actor: actor, OccurredAt: when,
		}}
	}
	if _, err := es.Append(ctx, eventstore.JobStream(id), eventstore.Any(), batch); err != nil {
		tb.Fatalf("append job %s: %v", id, err)
	}
}

// MustStoppedJobWithLateResults writes a job on three devices that is
// started, dispatched, gets one success, is stopped, and then gets a late
// failure: minutes 0, 1, 2, 3, 4.
func MustStoppedJobWithLateResults(tb testing.TB, es *eventstore.Client, id string) {
	tb.Helper()
	devs := []job.TargetedDevice{{DeviceID: "d1", Name: "one"}, {DeviceID: "d2", Name: "two"}, {DeviceID: "d3", Name: "three"}}
	MustAppendJob(tb, es, id, "alice", at(0),
		job.Created{JobID: id, Name: "reboot", DeviceSetID: "fridges", Type: job.TypeCommand,
			Operations: []job.Operation{{Name: "reboot", Value: true}}, DeviceCount: 3, TimeoutSeconds: 30, BatchSize: 100},
		job.DevicesTargeted{JobID: id, Devices: devs})
	MustAppendJob(tb, es, id, "dispatcher", at(1), job.Started{JobID: id}, job.DevicesDispatched{JobID: id, DeviceIDs: []string{"d1", "d2", "d3"}})
	MustAppendJob(tb, es, id, "d1", at(2), job.OperationSucceeded{JobID: id, DeviceID: "d1"})
	MustAppendJob(tb, es, id, "bob", at(3), job.Stopped{JobID: id, Reason: "wrong firmware"})
	MustAppendJob(tb, es, id, "d2", at(4), job.OperationFailed{JobID: id, DeviceID: "d2", Error: "disk full"})
}

// MustReadLog reads every non-system event of a store, in log order.
func MustReadLog(tb testing.TB, c *esdb.Client) []storedEvent {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rs, err := c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Forwards, From: esdb.Start{}}, 1_000_000)
	if err != nil {
		tb.Fatalf("read $all: %v", err)
	}
	defer rs.Close()
	var out []storedEvent
	for {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("read $all: %v", err)
		}
		e := ev.OriginalEvent()
		if strings.HasPrefix(e.StreamID, "$") {
			continue
		}
		out = append(out, storedEvent{e.StreamID, e.EventNumber, e.EventID.String(), e.EventType, e.ContentType, string(e.Data), string(e.UserMetadata)})
	}
}

// parseExport parses export's NDJSON output.
func parseExport(tb testing.TB, out string) []exported {
	tb.Helper()
	var evs []exported
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var e exported
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			tb.Fatalf("export line %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// MustImport appends exported events to a store with the official client,
// stream by stream at their revisions.
func MustImport(tb testing.TB, c *esdb.Client, evs []exported) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, e := range evs {
		data, meta := []byte(e.Data), []byte(e.Metadata)
		ct := esdb.ContentTypeJson
		if e.ContentType != "application/json" {
			ct = esdb.ContentTypeBinary
			if err := json.Unmarshal(e.Data, &data); err != nil {
				tb.Fatalf("data of %s/%d: %v", e.Stream, e.Revision, err)
			}
		}
		if len(meta) > 0 && meta[0] == '"' {
			if err := json.Unmarshal(e.Metadata, &meta); err != nil {
				tb.Fatalf("metadata of %s/%d: %v", e.Stream, e.Revision, err)
			}
		}
		var expected esdb.ExpectedRevision = esdb.NoStream{}
		if e.Revision > 0 {
			expected = esdb.Revision(e.Revision - 1)
		}
		_, err := c.AppendToStream(ctx, e.Stream, esdb.AppendToStreamOptions{ExpectedRevision: expected}, esdb.EventData{
			EventID: uuid.MustParse(e.ID), EventType: e.Type, ContentType: ct, Data: data, Metadata: meta,
		})
		if err != nil {
			tb.Fatalf("import %s/%d: %v", e.Stream, e.Revision, err)
		}
	}
}

func streamsAndTypes(evs []exported) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Stream + ":" + e.Type
	}
	return out
}

func TestExportAndReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)
	srv := eventstoretest.MustStartServer(t)
	es := eventstoretest.MustDial(t, srv.URL(), eventstore.WithCodec(eventstore.NewCatalogCodec()))
	raw := MustESDB(t, srv.Addr())
	url := "--eventstore-url=" + srv.URL()

	MustStoppedJobWithLateResults(t, es, "j1")
	MustAppendOne(t, raw, "thing-1", uuid.New(), `{"n": 1,
 "indented": true}`)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := raw.AppendToStream(ctx, "blob-1", esdb.AppendToStreamOptions{}, esdb.EventData{
		EventID: uuid.New(), EventType: "Blob", ContentType: esdb.ContentTypeBinary, Data: []byte{0, 1, 2, 0xff}, Metadata: []byte("not json"),
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("export round trip", func(t *testing.T) {
		r := MustRun(t, bin, nil, "export", url)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if r.stderr != "" {
			t.Errorf("stderr is not a terminal, yet export wrote to it: %q", r.stderr)
		}
		evs := parseExport(t, r.stdout)
		if len(evs) != 9 {
			t.Fatalf("exported %d events, want 9:\n%s", len(evs), r.stdout)
		}
		empty := eventstoretest.MustStartServer(t)
		dst := MustESDB(t, empty.Addr())
		MustImport(t, dst, evs)
		want := MustReadLog(t, raw)
		// The indented JSON comes back compact: the same JSON value.
		for i := range want {
			if want[i].Stream == "thing-1" {
				want[i].Data = `{"n":1,"indented":true}`
			}
		}
		if diff := cmp.Diff(want, MustReadLog(t, dst)); diff != "" {
			t.Errorf("imported log differs (-want +got):\n%s", diff)
		}
	})

	t.Run("filters", func(t *testing.T) {
		r := MustRun(t, bin, nil, "export", url, "--stream", "job-*", "--type", "JobStopped,DeviceOperationFailed")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		want := []string{"job-j1:JobStopped", "job-j1:DeviceOperationFailed"}
		if diff := cmp.Diff(want, streamsAndTypes(parseExport(t, r.stdout))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		r = MustRun(t, bin, nil, "export", url, "--stream", "blob-1")
		got := parseExport(t, r.stdout)
		if len(got) != 1 || string(got[0].Data) != `"AAEC/w=="` || got[0].ContentType != "application/octet-stream" {
			t.Errorf("blob export = %+v, want base64 data", got)
		}
		r = MustRun(t, bin, nil, "export", url, "--until", "2000-01-01T00:00:00Z")
		if r.code != 0 || r.stdout != "" {
			t.Errorf("--until before everything: exit %d, output %q", r.code, r.stdout)
		}
	})

	t.Run("an unknown --type exits 2", func(t *testing.T) {
		for _, tc := range []struct{ typ, bad, hint string }{
			{"jobstopped", "jobstopped", "did you mean JobStopped?"},
			{"NoSuchType", "NoSuchType", ""},
			{"", "", ""},
			{"JobStopped,", "", ""},
		} {
			r := MustRun(t, bin, nil, "export", url, "--type", tc.typ)
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "unknown --type "+strconv.Quote(tc.bad)) ||
				!strings.Contains(r.stderr, "JobCreated, JobDevicesDispatched") || !strings.Contains(r.stderr, tc.hint) ||
				(tc.hint == "" && strings.Contains(r.stderr, "did you mean")) {
				t.Errorf("--type %q: exit %d, stdout %q, stderr %q; want 2 naming it, listing the catalog, hint %q", tc.typ, r.code, r.stdout, r.stderr, tc.hint)
			}
		}
	})

	t.Run("resume from --since", func(t *testing.T) {
		all := parseExport(t, MustRun(t, bin, nil, "export", url).stdout)
		r := MustRun(t, bin, nil, "export", url, "--since", all[3].Position)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if diff := cmp.Diff(streamsAndTypes(all[4:]), streamsAndTypes(parseExport(t, r.stdout))); diff != "" {
			t.Errorf("resumed export (-want +got):\n%s", diff)
		}
	})

	t.Run("--since beyond the head exits 2", func(t *testing.T) {
		head := MustHead(t, es)
		r := MustRun(t, bin, nil, "export", url, "--since", head.String())
		if r.code != 0 || r.stdout != "" {
			t.Errorf("--since the head: exit %d, stdout %q, stderr %q; want 0, nothing", r.code, r.stdout, r.stderr)
		}
		beyond := eventstore.Position{Commit: head.Commit + 1, Prepare: head.Prepare + 1}.String()
		r = MustRun(t, bin, nil, "export", url, "--since", beyond)
		if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, beyond) || !strings.Contains(r.stderr, "beyond the last event of this log, at "+head.String()) {
			t.Errorf("--since %s: exit %d, stdout %q, stderr %q; want 2 naming the head %s", beyond, r.code, r.stdout, r.stderr, head)
		}
		empty := eventstoretest.MustStartServer(t)
		r = MustRun(t, bin, nil, "export", "--eventstore-url="+empty.URL(), "--since", "C:1/P:1")
		if r.code != 2 || !strings.Contains(r.stderr, "at C:0/P:0") {
			t.Errorf("an empty log: exit %d, stderr %q; want 2 naming the head C:0/P:0", r.code, r.stderr)
		}
	})

	t.Run("replay history", func(t *testing.T) {
		r := MustRun(t, bin, nil, "replay", url, "--job", "j1")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		want := []string{
			`2026-11-02T10:00:00.000000000Z  alice         created "reboot": command job on device set fridges, 3 devices, operations reboot=true`,
			`2026-11-02T10:00:00.000000000Z  alice         targeted 3 devices: d1, d2, d3`,
			`2026-11-02T10:01:00.000000000Z  dispatcher    started`,
			`2026-11-02T10:01:00.000000000Z  dispatcher    dispatched to 3 devices: d1, d2, d3`,
			`2026-11-02T10:02:00.000000000Z  d1            device d1 succeeded`,
			`2026-11-02T10:03:00.000000000Z  bob           stopped: "wrong firmware"`,
			`2026-11-02T10:04:00.000000000Z  d2            device d2 failed: "disk full" (late: the job was already stopped)`,
		}
		if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(r.stdout), "\n")); diff != "" {
			t.Errorf("replay (-want +got):\n%s", diff)
		}
	})

	t.Run("replay --as-of", func(t *testing.T) {
		type device struct {
			ID, Status, Error string
			Dispatched        bool
		}
		type state struct {
			Status  string
			Reason  string
			Counts  struct{ Total, Pending, Succeeded, Failed, Dispatched int }
			Devices []device
		}
		for _, tc := range []struct {
			name, asOf string
			want       state
		}{
			{"running, one result", "2026-11-02T10:02:30Z", state{Status: "running",
				Counts:  struct{ Total, Pending, Succeeded, Failed, Dispatched int }{3, 2, 1, 0, 3},
				Devices: []device{{"d1", "succeeded", "", true}, {"d2", "pending", "", true}, {"d3", "pending", "", true}}}},
			{"stopped, then a late failure", "2026-11-02T10:05:00Z", state{Status: "stopped", Reason: "wrong firmware",
				Counts:  struct{ Total, Pending, Succeeded, Failed, Dispatched int }{3, 1, 1, 1, 3},
				Devices: []device{{"d1", "succeeded", "", true}, {"d2", "failed", "disk full", true}, {"d3", "pending", "", true}}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := MustRun(t, bin, nil, "replay", url, "--job", "j1", "--as-of", tc.asOf, "--json")
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				var got state
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
					t.Fatalf("%v: %q", err, r.stdout)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("state (-want +got):\n%s", diff)
				}
			})
		}
		r := MustRun(t, bin, nil, "replay", url, "--job", "j1", "--as-of", "2026-11-02T10:03:30Z")
		if !strings.Contains(r.stdout, `job j1 "reboot" as of 2026-11-02T10:03:30.000000000Z: stopped ("wrong firmware")`) ||
			!strings.Contains(r.stdout, "devices: 3 total, 2 pending, 1 succeeded, 0 failed, 3 dispatched") {
			t.Errorf("text state:\n%s", r.stdout)
		}
	})

	t.Run("unknown job exits 1", func(t *testing.T) {
		r := MustRun(t, bin, nil, "replay", url, "--job", "nope")
		if r.code != 1 || !strings.Contains(r.stderr, `job "nope"`) {
			t.Errorf("exit %d, stderr %q; want 1 naming the job", r.code, r.stderr)
		}
		r = MustRun(t, bin, nil, "replay", url, "--job", "j1", "--as-of", "2000-01-01T00:00:00Z")
		if r.code != 1 || !strings.Contains(r.stderr, "did not exist yet") {
			t.Errorf("before creation: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("bad arguments exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"export", "--since", "yesterday"},
			{"export", "--until", "noon"},
			{"export", "--stream", ""},
			{"export", "--eventstore-url", "http://127.0.0.1:1"},
			{"export", "--data", t.TempDir(), url},
			{"export", "extra"},
			{"replay"},
			{"replay", "--job", "j1", "--as-of", "later"},
			{"replay", "--job", "j1", "--bogus"},
			{"replay", "--job", "bad id"},
			{"export", "--job", "bad/id"},
			{"export", "--job", strings.Repeat("j", 129), "--format", "csv"},
		} {
			r := MustRun(t, bin, nil, args...)
			if r.code != 2 || !strings.Contains(r.stderr, "--help") {
				t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, r.code, r.stderr)
			}
		}
	})

	t.Run("help exits 0", func(t *testing.T) {
		for _, cmd := range []string{"export", "replay"} {
			r := MustRun(t, bin, nil, cmd, "--help")
			if r.code != 0 || !strings.Contains(r.stdout, "Usage: fleetjobs "+cmd) {
				t.Errorf("%s --help: exit %d, output %q", cmd, r.code, r.stdout)
			}
		}
	})
}

// mustCLILog skips a short test, else builds the binary and starts an empty
// store: it returns the binary, a client of the store, and the
// --eventstore-url argument that points the binary at it.
func mustCLILog(t *testing.T) (bin string, es *eventstore.Client, url string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin = MustBuild(t)
	srv := eventstoretest.MustStartServer(t)
	es = eventstoretest.MustDial(t, srv.URL(), eventstore.WithCodec(eventstore.NewCatalogCodec()))
	return bin, es, "--eventstore-url=" + srv.URL()
}

// TestReplayCannotBeForged replays a job whose device errors, stop reason,
// operation name and actor hold carriage returns, line feeds, ANSI escapes
// and text that looks like replay's own: each event stays one line, free
// text is quoted, nothing reaches the terminal raw.
func TestReplayCannotBeForged(t *testing.T) {
	bin, es, url := mustCLILog(t)
	devs := []job.TargetedDevice{{DeviceID: "q-1"}, {DeviceID: "q-2"}, {DeviceID: "q-3"}}
	MustAppendJob(t, es, "j4", "alice", at(0),
		job.Created{JobID: "j4", Name: "reboot", DeviceSetID: "fridges", Type: job.TypeCommand,
			Operations: []job.Operation{{Name: "re\nboot", Value: true}}, DeviceCount: 3, TimeoutSeconds: 30, BatchSize: 100},
		job.DevicesTargeted{JobID: "j4", Devices: devs})
	MustAppendJob(t, es, "j4", "dispatcher", at(1), job.Started{JobID: "j4"}, job.DevicesDispatched{JobID: "j4", DeviceIDs: []string{"q-1", "q-2", "q-3"}})
	MustAppendJob(t, es, "j4", "q-1", at(2), job.OperationFailed{JobID: "j4", DeviceID: "q-1",
		Error: "fault\r2026-11-26T13:20:00Z  dispatcher  device q-4 succeeded"})
	MustAppendJob(t, es, "j4", "q-2\x1b[2J", at(3), job.OperationFailed{JobID: "j4", DeviceID: "q-2",
		Error: "\x1b[2K\x1b[1Aerased\nnext line \u2028"})
	MustAppendJob(t, es, "j4", "bob", at(4), job.Stopped{JobID: "j4", Reason: "wrong\nfirmware"})
	MustAppendJob(t, es, "j4", "q-3", at(5), job.OperationFailed{JobID: "j4", DeviceID: "q-3",
		Error: "disk full (late: the job was already stopped)"})

	r := MustRun(t, bin, nil, "replay", url, "--job", "j4")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := []string{
		`2026-11-02T10:00:00.000000000Z  alice         created "reboot": command job on device set fridges, 3 devices, operations re\nboot=true`,
		`2026-11-02T10:00:00.000000000Z  alice         targeted 3 devices: q-1, q-2, q-3`,
		`2026-11-02T10:01:00.000000000Z  dispatcher    started`,
		`2026-11-02T10:01:00.000000000Z  dispatcher    dispatched to 3 devices: q-1, q-2, q-3`,
		`2026-11-02T10:02:00.000000000Z  q-1           device q-1 failed: "fault\r2026-11-26T13:20:00Z  dispatcher  device q-4 succeeded"`,
		`2026-11-02T10:03:00.000000000Z  q-2\x1b[2J    device q-2 failed: "\x1b[2K\x1b[1Aerased\nnext line \u2028"`,
		`2026-11-02T10:04:00.000000000Z  bob           stopped: "wrong\nfirmware"`,
		`2026-11-02T10:05:00.000000000Z  q-3           device q-3 failed: "disk full (late: the job was already stopped)" (late: the job was already stopped)`,
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}

	r = MustRun(t, bin, nil, "replay", url, "--job", "j4", "--as-of", "2026-11-02T10:06:00Z")
	if r.code != 0 {
		t.Fatalf("--as-of: exit %d: %s", r.code, r.stderr)
	}
	want = []string{
		`job j4 "reboot" as of 2026-11-02T10:06:00.000000000Z: stopped ("wrong\nfirmware")`,
		`devices: 3 total, 0 pending, 0 succeeded, 3 failed, 3 dispatched`,
		`  q-1                      failed     dispatched  "fault\r2026-11-26T13:20:00Z  dispatcher  device q-4 succeeded"`,
		`  q-2                      failed     dispatched  "\x1b[2K\x1b[1Aerased\nnext line \u2028"`,
		`  q-3                      failed     dispatched  "disk full (late: the job was already stopped)"`,
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")); diff != "" {
		t.Errorf("replay --as-of (-want +got):\n%s", diff)
	}
}

// TestReplayTimes prints times of a second's fractions in one fixed-width
// column, each precise enough that --as-of it includes its event.
func TestReplayTimes(t *testing.T) {
	bin, es, url := mustCLILog(t)
	base := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	MustAppendJob(t, es, "j5", "alice", base.Add(500*time.Millisecond),
		job.Created{JobID: "j5", Name: "reboot", DeviceSetID: "fridges", Type: job.TypeCommand,
			Operations: []job.Operation{{Name: "reboot", Value: true}}, DeviceCount: 1, TimeoutSeconds: 30, BatchSize: 100},
		job.DevicesTargeted{JobID: "j5", Devices: []job.TargetedDevice{{DeviceID: "d1"}}})
	MustAppendJob(t, es, "j5", "dispatcher", base.Add(time.Second+123456789), job.Started{JobID: "j5"})
	MustAppendJob(t, es, "j5", "bob", base.Add(2*time.Second), job.Stopped{JobID: "j5", Reason: "enough"})

	r := MustRun(t, bin, nil, "replay", url, "--job", "j5")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	const width = len("2026-11-02T10:00:00.000000000Z")
	var times []string
	for line := range strings.Lines(r.stdout) {
		if len(line) < width+3 || line[width:width+2] != "  " || line[width+2] == ' ' {
			t.Fatalf("line %q: the actor column does not start at %d", line, width+2)
		}
		times = append(times, line[:width])
	}
	want := []string{"2026-11-02T10:00:00.500000000Z", "2026-11-02T10:00:00.500000000Z", "2026-11-02T10:00:01.123456789Z", "2026-11-02T10:00:02.000000000Z"}
	if diff := cmp.Diff(want, times); diff != "" {
		t.Fatalf("times (-want +got):\n%s\n%s", diff, r.stdout)
	}
	// The printed time of each event, given to --as-of, includes it.
	for i, status := range []string{"pending", "pending", "running", "stopped"} {
		r := MustRun(t, bin, nil, "replay", url, "--job", "j5", "--as-of", times[i], "--json")
		var got struct{ Status string }
		if err := json.Unmarshal([]byte(r.stdout), &got); r.code != 0 || err != nil || got.Status != status {
			t.Errorf("--as-of %s: exit %d, status %q (%v), want %s; stderr %s", times[i], r.code, got.Status, err, status, r.stderr)
		}
	}
	r = MustRun(t, bin, nil, "replay", url, "--job", "j5", "--as-of", times[2])
	if !strings.HasPrefix(r.stdout, `job j5 "reboot" as of 2026-11-02T10:00:01.123456789Z: running`) {
		t.Errorf("text state:\n%s", r.stdout)
	}
}

// TestExportDataDir reads a data directory no serve holds, named as serve's
// data directory or as its eventstore subdirectory, and refuses one that
// holds no store without creating anything in it.
func TestExportDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)
	data := t.TempDir()
	dir := filepath.Join(data, "eventstore")
	srv := eventstoretest.MustStartServerIn(t, dir)
	es := eventstoretest.MustDial(t, srv.URL(), eventstore.WithCodec(eventstore.NewCatalogCodec()))
	MustStoppedJobWithLateResults(t, es, "j2")

	r := MustRun(t, bin, nil, "export", "--data", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "in use") {
		t.Errorf("while the store holds it: exit %d, stderr %q; want 1, in use", r.code, r.stderr)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, data} {
		r = MustRun(t, bin, nil, "export", "--data", d, "--type", "JobStopped")
		if r.code != 0 {
			t.Fatalf("--data %s: exit %d: %s", d, r.code, r.stderr)
		}
		if diff := cmp.Diff([]string{"job-j2:JobStopped"}, streamsAndTypes(parseExport(t, r.stdout))); diff != "" {
			t.Errorf("--data %s (-want +got):\n%s", d, diff)
		}
	}

	empty := t.TempDir()
	for _, d := range []string{empty, filepath.Join(empty, "missing")} {
		r = MustRun(t, bin, nil, "export", "--data", d)
		if r.code != 2 || !strings.Contains(r.stderr, "no event store") {
			t.Errorf("--data %s: exit %d, stderr %q; want 2, no event store", d, r.code, r.stderr)
		}
	}
	if left, err := os.ReadDir(empty); err != nil || len(left) != 0 {
		t.Errorf("the refused directory holds %v (%v); want nothing created", left, err)
	}
}

// TestExportJobCSV writes a job's per-device results as CSV: a success
// with a late second result ignored, a failure whose error holds a comma,
// quotes and a formula, a device deleted since it was targeted, and one
// still pending.
func TestExportJobCSV(t *testing.T) {
	bin, es, url := mustCLILog(t)
	devs := []job.TargetedDevice{{DeviceID: "d1", Name: "one"}, {DeviceID: "d2", Name: `two, "the second"`},
		{DeviceID: "d3", Name: "three"}, {DeviceID: "d4", Name: "=four"}}
	MustAppendJob(t, es, "j3", "alice", at(0),
		job.Created{JobID: "j3", Name: "reboot", DeviceSetID: "fridges", Type: job.TypeCommand,
			Operations: []job.Operation{{Name: "reboot", Value: true}}, DeviceCount: 4, TimeoutSeconds: 30, BatchSize: 100},
		job.DevicesTargeted{JobID: "j3", Devices: devs[:2]}, job.DevicesTargeted{JobID: "j3", Devices: devs[2:]})
	MustAppendJob(t, es, "j3", "dispatcher", at(1), job.Started{JobID: "j3"}, job.DevicesDispatched{JobID: "j3", DeviceIDs: []string{"d1", "d2", "d3", "d4"}})
	MustAppendJob(t, es, "j3", "d1", at(2), job.OperationSucceeded{JobID: "j3", DeviceID: "d1"})
	MustAppendJob(t, es, "j3", "d3", at(3), job.OperationSucceeded{JobID: "j3", DeviceID: "d3"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := es.Append(ctx, eventstore.DeviceStream("d3"), eventstore.Any(), []eventstore.Event{{ID: uuid.New(),
		Data: device.Deleted{DeviceID: "d3"}, Metadata: eventstore.Metadata{Actor: "bob", OccurredAt: at(4)}}}); err != nil {
		t.Fatal(err)
	}
	MustAppendJob(t, es, "j3", "bob", at(5), job.Stopped{JobID: "j3", Reason: "enough"})
	MustAppendJob(t, es, "j3", "d2", at(6), job.OperationFailed{JobID: "j3", DeviceID: "d2", Error: `valve "B" stuck, retry`})
	MustAppendJob(t, es, "j3", "d1", at(7), job.OperationFailed{JobID: "j3", DeviceID: "d1", Error: "too late"})

	r := MustRun(t, bin, nil, "export", url, "--job", "j3", "--format", "csv")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("not CSV: %v\n%s", err, r.stdout)
	}
	want := [][]string{
		{"device", "name", "status", "error", "time"},
		{"d1", "one", "Succeeded", "", "2026-11-02T10:02:00Z"},
		{"d2", `two, "the second"`, "Failed", `valve "B" stuck, retry`, "2026-11-02T10:06:00Z"},
		{"d3", "three", "Succeeded", "", "2026-11-02T10:03:00Z"},
		{"d4", "'=four", "Pending", "", ""},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("CSV (-want +got):\n%s\n%s", diff, r.stdout)
	}
	if !strings.Contains(r.stdout, `"two, ""the second"""`) {
		t.Errorf("the comma and quotes are not quoted as RFC 4180 says:\n%s", r.stdout)
	}

	t.Run("--job alone exports the job's events", func(t *testing.T) {
		r := MustRun(t, bin, nil, "export", url, "--job", "j3", "--type", "JobStopped")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if diff := cmp.Diff([]string{"job-j3:JobStopped"}, streamsAndTypes(parseExport(t, r.stdout))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("an unknown job exits 1", func(t *testing.T) {
		for _, format := range []string{"csv", "ndjson"} {
			r := MustRun(t, bin, nil, "export", url, "--job", "nope", "--format", format)
			if r.code != 1 || !strings.Contains(r.stderr, `job "nope": job not found`) || r.stdout != "" {
				t.Errorf("--format %s: exit %d, stdout %q, stderr %q; want 1 naming the job", format, r.code, r.stdout, r.stderr)
			}
		}
	})
	t.Run("bad arguments exit 2", func(t *testing.T) {
		for _, args := range [][]string{
			{"--format", "csv"},
			{"--format", "xml", "--job", "j3"},
			{"--format", "csv", "--job", "j3", "--since", "C:1/P:1"},
			{"--job", "j3", "--stream", "job-j1"},
		} {
			r := MustRun(t, bin, nil, append([]string{"export", url}, args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, "--help") {
				t.Errorf("%v: exit %d, stderr %q; want 2 with a message", args, r.code, r.stderr)
			}
		}
	})
}

// TestEventStorePasswordsStayHidden: the reading commands print a
// connection string they could not use without its password, whatever its
// form (README's production shape has esdb+discover://user:pass@...).
func TestEventStorePasswordsStayHidden(t *testing.T) {
	t.Parallel()
	bin := MustBuild(t)
	down := freeAddr(t) // nothing listens there
	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"export, store down", []string{"export", "--eventstore-url", "esdb://admin:s3cret@" + down + "?tls=false"}, 1},
		{"replay, cluster form, store down", []string{"replay", "--job", "j1", "--eventstore-url", "esdb+discover://admin:s3cret@" + down + "," + down + "?tls=false"}, 1},
		{"export, invalid", []string{"export", "--eventstore-url", "esdb://admin:s3cret@" + down + "?tls=maybe"}, 2},
		{"export, invalid escape", []string{"export", "--eventstore-url", "esdb://admin:s3cret%zz@" + down + "?tls=false"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := MustRun(t, bin, nil, c.args...)
			if r.code != c.code || strings.Contains(r.stderr, "s3cret") || !strings.Contains(r.stderr, "admin:xxxxx@") {
				t.Errorf("exit %d (want %d), stderr %q: want the URL shown with its password as xxxxx", r.code, c.code, r.stderr)
			}
		})
	}
}
