package commands_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// TestImportListsEveryRefusedRowInRowOrder: rows are decided by concurrent
// workers; the rows refused (here: deleted devices, in an import large
// enough to load the devices in one pass over the log) come back in row
// order, each once, and nothing is recorded.
func TestImportListsEveryRefusedRowInRowOrder(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store, commands.WithWorkers(8))
	MustPublish(t, h)
	deleted := []int{2900, 5, 1234, 17, 2999}
	in := rows(3000)
	for _, i := range deleted {
		if _, err := h.RegisterDevice(ctx, commands.Meta{}, in[i]); err != nil {
			t.Fatal(err)
		}
		if _, err := h.DeleteDevice(ctx, commands.Meta{}, device.Delete{DeviceID: in[i].DeviceID}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.ImportDevices(ctx, commands.Meta{}, in)
	var ie *commands.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("import over deleted devices: %v, want an *ImportError", err)
	}
	var got []int
	for _, r := range ie.Rows {
		got = append(got, r.Row)
		if r.Err.Code != domain.CodeConflict || r.DeviceID != in[r.Row].DeviceID {
			t.Errorf("row %d: %s %v, want a conflict on %s", r.Row, r.DeviceID, r.Err, in[r.Row].DeviceID)
		}
	}
	if d := cmp.Diff([]int{5, 17, 1234, 2900, 2999}, got); d != "" {
		t.Errorf("refused rows (-want +got):\n%s", d)
	}
	if n := len(MustRead(t, store, "device-dev-00000")); n != 0 {
		t.Errorf("row 0 recorded %d events although the import was refused", n)
	}
}

// TestImportRefusesARowTooLargeToRecordBeforeRecordingAny: a row whose
// event is over what one append may carry (the store would refuse it) is
// refused with the other bad rows, naming the row, and the good rows
// before and after it are not recorded: the import stays all or nothing.
func TestImportRefusesARowTooLargeToRecordBeforeRecordingAny(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)
	in := rows(3)
	in[1].Properties = map[string]any{"city": strings.Repeat("a", commands.DefaultMaxAppendBytes)}
	_, err := h.ImportDevices(ctx, commands.Meta{CommandID: "import-huge"}, in)
	var ie *commands.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("import with an oversized row: %v, want an *ImportError", err)
	}
	if len(ie.Rows) != 1 || ie.Rows[0].Row != 1 || ie.Rows[0].Err.Code != domain.CodeInvalid || !strings.Contains(ie.Rows[0].Err.Message, "too large to record") {
		t.Errorf("refused rows: %+v, want row 1, too large to record", ie.Rows)
	}
	if e, ok := domain.AsError(err); !ok || len(e.Fields) != 1 || e.Fields[0].Field != "rows[1]" {
		t.Errorf("import error as a domain error: %+v, want one field rows[1]", e)
	}
	for _, r := range in {
		if n := len(MustRead(t, store, eventstore.DeviceStream(r.DeviceID))); n != 0 {
			t.Errorf("device %s has %d events after a refused import", r.DeviceID, n)
		}
	}
	// Just under the limit, the same row is recorded.
	in[1].Properties = map[string]any{"city": strings.Repeat("a", commands.DefaultMaxAppendBytes-4096)}
	if _, err := h.ImportDevices(ctx, commands.Meta{CommandID: "import-big"}, in); err != nil {
		t.Fatalf("import with a big row that fits: %v", err)
	}
}
