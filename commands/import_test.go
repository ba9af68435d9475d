package commands_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
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
