package benchlog_test

import (
	"context"
	"testing"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest/benchlog"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// TestWriteGivesTheLogItCounts writes a small log and reads it back: every
// event decodes with the catalog codec, the counts are the Stats', and
// every job stream ends with its terminal event.
func TestWriteGivesTheLogItCounts(t *testing.T) {
	const events = 30_000
	dir := t.TempDir()
	ctx := context.Background()
	st, err := benchlog.Write(ctx, dir, events)
	if err != nil {
		t.Fatal(err)
	}
	if st.Events != events {
		t.Errorf("Stats.Events = %d, want %d", st.Events, events)
	}
	if st.Jobs < 2 || st.ByType[eventstore.DeviceOperationFailed] == 0 || st.ByType[eventstore.JobStopped] == 0 {
		t.Errorf("the log lacks part of the mix: %+v", st)
	}

	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	codec := eventstore.NewCatalogCodec()
	got := map[string]int{}
	last := map[string]string{} // job stream -> type of its last event
	var decodeErr error
	err = s.ReadAll(ctx, 0, false, func(r store.Record) bool {
		got[r.Type]++
		if _, err := codec.Decode(r.Type, r.Data); err != nil {
			decodeErr = err
			return false
		}
		if len(r.Stream) > 4 && r.Stream[:4] == eventstore.JobStreamPrefix {
			last[r.Stream] = r.Type
		}
		return true
	})
	if err != nil || decodeErr != nil {
		t.Fatalf("read back: %v %v", err, decodeErr)
	}
	for typ, n := range st.ByType {
		if got[typ] != n {
			t.Errorf("%s: read %d, Stats say %d", typ, got[typ], n)
		}
	}
	if len(last) != st.Jobs {
		t.Errorf("%d job streams, Stats say %d jobs", len(last), st.Jobs)
	}
	for stream, typ := range last {
		switch typ {
		case eventstore.JobCompleted, eventstore.JobFailed, eventstore.JobStopped:
		default:
			t.Errorf("%s ends with %s", stream, typ)
		}
	}
}
