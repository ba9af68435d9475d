package commands_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// RecordDispatches records several batches in one append, each batch its
// own JobDevicesDispatched event; a device an earlier batch (or an earlier
// call) named is left out, a retry with the same command ID records
// nothing, and on a stopped job the whole call is refused.
func TestRecordDispatchesRecordsEachBatchAsItsOwnEvent(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustJobHandler(t, store)
	MustRunningJob(t, h, "j1", 30)
	ids := deviceIDs(30)
	batches := func(bs ...[]string) []job.RecordDispatch {
		out := make([]job.RecordDispatch, len(bs))
		for i, b := range bs {
			out[i] = job.RecordDispatch{JobID: "j1", DeviceIDs: b}
		}
		return out
	}
	dispatched := func() [][]string {
		_, recs := MustFold(t, store, "j1")
		codec := eventstore.NewCatalogCodec()
		var out [][]string
		for _, r := range recs {
			if r.Type != eventstore.JobDevicesDispatched {
				continue
			}
			v, err := codec.Decode(r.Type, r.Data)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v.(job.DevicesDispatched).DeviceIDs)
		}
		return out
	}

	meta := commands.Meta{CommandID: "dispatch-1", Actor: "dispatcher"}
	res, err := h.RecordDispatches(ctx, meta, batches(ids[0:10], ids[10:20], ids[15:25]))
	if err != nil || res.Events != 3 {
		t.Fatalf("RecordDispatches = %+v, %v; want 3 events", res, err)
	}
	want := [][]string{ids[0:10], ids[10:20], ids[20:25]}
	if diff := cmp.Diff(want, dispatched()); diff != "" {
		t.Errorf("dispatched batches (-want +got):\n%s", diff)
	}

	again, err := h.RecordDispatches(ctx, meta, batches(ids[0:10], ids[10:20], ids[15:25]))
	if err != nil || again.Position != res.Position || again.Events != 0 {
		t.Errorf("retried call = %+v, %v; want nothing new, at %s", again, err, res.Position)
	}
	if _, err := h.RecordDispatches(ctx, commands.Meta{}, batches(ids[0:5], ids[20:30])); err != nil {
		t.Fatal(err)
	}
	want = append(want, ids[25:30])
	if diff := cmp.Diff(want, dispatched()); diff != "" {
		t.Errorf("after a call naming dispatched devices (-want +got):\n%s", diff)
	}

	if _, err := h.StopJob(ctx, commands.Meta{}, job.Stop{JobID: "j1"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.RecordDispatches(ctx, commands.Meta{}, batches(ids[0:1]))
	checkCode(t, err, domain.CodeConflict, "stopped")
	_, err = h.RecordDispatches(ctx, commands.Meta{}, []job.RecordDispatch{{JobID: "j1"}, {JobID: "j2"}})
	checkCode(t, err, domain.CodeInvalid, "one job")
}
