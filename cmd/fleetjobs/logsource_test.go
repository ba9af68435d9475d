package main_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	main "github.com/fleetjobs/fleetjobs/cmd/fleetjobs"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
	"github.com/fleetjobs/fleetjobs/eventstore/server/servertest"
)

// TestReadingADataDirChangesNothing reads a write-protected copy of a
// stopped serve's data directory as an auditor does: two readers at once
// see every event and cannot write, export and replay read it, and no file
// under it is created, removed or changed (compared file by file: the tests
// may run as root, whom permission bits do not stop).
func TestReadingADataDirChangesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := MustBuild(t)
	data := t.TempDir()
	srv := eventstoretest.MustStartServerIn(t, filepath.Join(data, "eventstore"))
	es := eventstoretest.MustDial(t, srv.URL(), eventstore.WithCodec(eventstore.NewCatalogCodec()))
	MustStoppedJobWithLateResults(t, es, "j2")
	want := MustReadLog(t, MustESDB(t, srv.Addr()))
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	servertest.WriteProtect(t, data)
	before := servertest.DirState(t, data)

	ctx := context.Background()
	var clients []*esdb.Client
	for range 2 {
		c, release, err := main.OpenLogData(ctx, data)
		if err != nil {
			t.Fatalf("open --data %s while another reader has it open: %v", data, err)
		}
		defer release()
		clients = append(clients, c)
	}
	for i, c := range clients {
		if diff := cmp.Diff(want, MustReadLog(t, c)); diff != "" {
			t.Errorf("reader %d (-want +got):\n%s", i, diff)
		}
	}
	_, err := clients[0].AppendToStream(ctx, "job-j2", esdb.AppendToStreamOptions{},
		esdb.EventData{EventID: uuid.New(), EventType: "JobStopped", ContentType: esdb.ContentTypeJson, Data: []byte("{}")})
	if err == nil || !strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("append through a --data reader: %v, want FailedPrecondition, read-only", err)
	}

	r := MustRun(t, bin, nil, "export", "--data", data)
	if got := parseExport(t, r.stdout); r.code != 0 || len(got) != len(want) {
		t.Errorf("export --data: exit %d, %d events, want 0, %d; stderr %s", r.code, len(got), len(want), r.stderr)
	}
	r = MustRun(t, bin, nil, "replay", "--data", data, "--job", "j2", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"type":"JobStopped"`) {
		t.Errorf("replay --data: exit %d, stdout %s, stderr %s; want 0, JobStopped", r.code, r.stdout, r.stderr)
	}
	for _, c := range clients {
		_ = c.Close()
	}
	if diff := cmp.Diff(before, servertest.DirState(t, data)); diff != "" {
		t.Errorf("reading --data changed the data directory (-before +after):\n%s", diff)
	}
}
