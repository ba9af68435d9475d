package commands_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

var testNow = time.Date(2026, 11, 2, 10, 4, 5, 0, time.UTC)

// MustHandler returns a Handler on store with a fixed clock and random
// command IDs (unique across handlers, as in production).
func MustHandler(tb testing.TB, store *eventstore.Client, opts ...commands.Option) *commands.Handler {
	tb.Helper()
	return commands.New(store, eventstore.NewCatalogCodec(), func() time.Time { return testNow }, uuid.NewString, zaptest.NewLogger(tb), opts...)
}

// MustStore starts an embedded event store and dials it.
func MustStore(tb testing.TB) *eventstore.Client {
	tb.Helper()
	return eventstoretest.MustStart(tb, eventstore.WithCodec(eventstore.NewCatalogCodec()))
}

// MustRead returns the recorded events of stream (none if it does not exist).
func MustRead(tb testing.TB, store *eventstore.Client, stream string) []eventstore.Recorded {
	tb.Helper()
	var out []eventstore.Recorded
	err := store.ReadStream(context.Background(), stream, 0, func(r eventstore.Recorded) error {
		out = append(out, r)
		return nil
	})
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		tb.Fatalf("read %s: %v", stream, err)
	}
	return out
}

func types(rs []eventstore.Recorded) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Type)
	}
	return out
}

var tmpl = device.PublishTemplate{TemplateID: "vending-v2", Name: "Vending v2", Properties: []device.Capability{
	{Name: "fanSpeed", Schema: device.SchemaNumber}, {Name: "city", Schema: device.SchemaString}}}

func MustPublish(tb testing.TB, h *commands.Handler) {
	tb.Helper()
	if _, err := h.PublishTemplate(context.Background(), commands.Meta{Actor: "test"}, tmpl); err != nil {
		tb.Fatalf("publish template: %v", err)
	}
}

func reg(id string, speed float64) device.Register {
	return device.Register{DeviceID: id, Name: "Machine " + id, TemplateID: "vending-v2", Properties: map[string]any{"fanSpeed": speed}}
}

func TestDecideAppendReload(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)

	first, err := h.RegisterDevice(ctx, commands.Meta{}, reg("d1", 1200))
	if err != nil {
		t.Fatal(err)
	}
	if first.Events != 1 || !first.Created || first.Position.IsZero() {
		t.Errorf("register = %+v, want one event creating the stream at a position", first)
	}
	changed, err := h.RegisterDevice(ctx, commands.Meta{}, reg("d1", 900))
	if err != nil {
		t.Fatal(err)
	}
	if changed.Events != 1 || changed.Created || changed.Position.Compare(first.Position) <= 0 {
		t.Errorf("change = %+v, want one event after %s", changed, first.Position)
	}

	// A handler with an empty cache reads the stream back and finds the
	// same state: the same body decides nothing, at the last position.
	again, err := MustHandler(t, store).RegisterDevice(ctx, commands.Meta{}, reg("d1", 900))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(commands.Result{Position: changed.Position}, again); diff != "" {
		t.Errorf("same body on a reloaded state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{eventstore.DeviceRegistered, eventstore.DevicePropertiesChanged}, types(MustRead(t, store, "device-d1"))); diff != "" {
		t.Errorf("device-d1 (-want +got):\n%s", diff)
	}
}

func TestRefusalsAreDomainErrors(t *testing.T) {
	ctx := context.Background()
	h := MustHandler(t, MustStore(t))
	MustPublish(t, h)
	cases := []struct {
		name string
		run  func() error
		code domain.Code
	}{
		{"a device on an unknown template", func() error {
			_, err := h.RegisterDevice(ctx, commands.Meta{}, device.Register{DeviceID: "d1", Name: "x", TemplateID: "nope"})
			return err
		}, domain.CodeInvalid},
		{"a property of the wrong schema", func() error {
			_, err := h.RegisterDevice(ctx, commands.Meta{}, device.Register{DeviceID: "d1", Name: "x", TemplateID: "vending-v2", Properties: map[string]any{"city": 1.0}})
			return err
		}, domain.CodeInvalid},
		{"deleting a device never registered", func() error {
			_, err := h.DeleteDevice(ctx, commands.Meta{}, device.Delete{DeviceID: "ghost"})
			return err
		}, domain.CodeNotFound},
		{"a set with an unknown op", func() error {
			_, err := h.DefineDeviceSet(ctx, commands.Meta{}, device.DefineSet{SetID: "s1", Name: "x", TemplateID: "vending-v2",
				Conditions: []device.Condition{{Property: "city", Op: "like", Value: "x"}}})
			return err
		}, domain.CodeInvalid},
		{"an ID that cannot be a stream name", func() error {
			_, err := h.DeleteTemplate(ctx, commands.Meta{}, device.DeleteTemplate{TemplateID: "a b"})
			return err
		}, domain.CodeInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := domain.ErrorCode(c.run()); got != c.code {
				t.Errorf("error code %q, want %q", got, c.code)
			}
		})
	}
}

func TestDeletedTemplateBreaksSetsAndRefusesDevices(t *testing.T) {
	ctx := context.Background()
	h := MustHandler(t, MustStore(t))
	MustPublish(t, h)
	if _, err := h.DefineDeviceSet(ctx, commands.Meta{}, device.DefineSet{SetID: "s1", Name: "Seattle", TemplateID: "vending-v2",
		Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeleteTemplate(ctx, commands.Meta{}, device.DeleteTemplate{TemplateID: "vending-v2"}); err != nil {
		t.Fatal(err)
	}
	tm, err := h.Template(ctx, "vending-v2")
	if err != nil {
		t.Fatal(err)
	}
	if reason, broken := device.BrokenReason(device.Set{TemplateID: "vending-v2"}, tm); !broken {
		t.Errorf("set on a deleted template is not broken (reason %q)", reason)
	}
	_, err = h.RegisterDevice(ctx, commands.Meta{}, reg("d1", 1))
	if e, ok := domain.AsError(err); !ok || len(e.Fields) != 1 || e.Fields[0].Field != "templateId" {
		t.Errorf("register on a deleted template: %v, want an invalid templateId", err)
	}
}

func TestConflictIsRetriedOnFreshState(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	a, b := MustHandler(t, store), MustHandler(t, store)
	MustPublish(t, a)
	if _, err := a.RegisterDevice(ctx, commands.Meta{}, reg("d1", 1)); err != nil {
		t.Fatal(err)
	}
	// b writes behind a's back: a's cached state is now one revision old.
	if _, err := b.RegisterDevice(ctx, commands.Meta{}, reg("d1", 2)); err != nil {
		t.Fatal(err)
	}
	res, err := a.RegisterDevice(ctx, commands.Meta{}, reg("d1", 3))
	if err != nil {
		t.Fatalf("register on a stale cache: %v", err)
	}
	if res.Events != 1 {
		t.Errorf("register on a stale cache recorded %d events, want 1", res.Events)
	}
	// a's cache said "2 is new" would be wrong now: going back to 2 is a
	// change, and going to 3 again is none.
	if res, err := a.RegisterDevice(ctx, commands.Meta{}, reg("d1", 3)); err != nil || res.Events != 0 {
		t.Errorf("same body again = %+v, %v; want no events", res, err)
	}
	// A decision without events taken on a stale cache is checked against
	// the stream: b's cache still says 2.
	if res, err := b.RegisterDevice(ctx, commands.Meta{}, reg("d1", 2)); err != nil || res.Events != 1 {
		t.Errorf("b back to 2 on a stale cache = %+v, %v; want one event", res, err)
	}
	if diff := cmp.Diff([]string{eventstore.DeviceRegistered, eventstore.DevicePropertiesChanged, eventstore.DevicePropertiesChanged, eventstore.DevicePropertiesChanged},
		types(MustRead(t, store, "device-d1"))); diff != "" {
		t.Errorf("device-d1 (-want +got):\n%s", diff)
	}
}

func TestConcurrentHandlersAllLand(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	hs := []*commands.Handler{MustHandler(t, store, commands.WithMaxAttempts(50)), MustHandler(t, store, commands.WithMaxAttempts(50))}
	MustPublish(t, hs[0])
	if _, err := hs[0].RegisterDevice(ctx, commands.Meta{}, reg("d1", 0)); err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			_, err := hs[i%2].RegisterDevice(ctx, commands.Meta{}, reg("d1", float64(i+1)))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent register: %v", err)
		}
	}
	// Every writer set a distinct value, so every one recorded an event.
	if got := len(MustRead(t, store, "device-d1")); got != writers+1 {
		t.Errorf("device-d1 has %d events, want %d", got, writers+1)
	}
}

func TestRetriedCommandRecordsOnce(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)
	meta := commands.Meta{CommandID: "req-1", Actor: "alice"}
	first, err := h.RegisterDevice(ctx, meta, reg("d1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.RegisterDevice(ctx, commands.Meta{CommandID: "req-2"}, reg("d1", 2)); err != nil {
		t.Fatal(err)
	}
	// The retry arrives after another command changed the device, on
	// another instance: the command ID on the stream answers it.
	for _, hh := range []*commands.Handler{h, MustHandler(t, store)} {
		again, err := hh.RegisterDevice(ctx, meta, reg("d1", 1))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(commands.Result{Position: first.Position}, again); diff != "" {
			t.Errorf("retried command (-want +got):\n%s", diff)
		}
	}
	if got := len(MustRead(t, store, "device-d1")); got != 2 {
		t.Errorf("device-d1 has %d events, want 2", got)
	}
}

func TestEventsCarryMetadataAndDerivedIDs(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	meta := commands.Meta{CommandID: "req-7", CorrelationID: "conv-1", CausationID: "msg-3", Actor: "alice"}
	if _, err := h.PublishTemplate(ctx, meta, tmpl); err != nil {
		t.Fatal(err)
	}
	got := MustRead(t, store, "template-vending-v2")
	if len(got) != 1 {
		t.Fatalf("template stream has %d events, want 1", len(got))
	}
	want := eventstore.Metadata{CommandID: "req-7", CorrelationID: "conv-1", CausationID: "msg-3", Actor: "alice", OccurredAt: testNow}
	if diff := cmp.Diff(want, got[0].Metadata); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if id := commands.EventID("req-7", "template-vending-v2", 0); got[0].ID != id {
		t.Errorf("event ID %s, want %s (derived from the command ID)", got[0].ID, id)
	}

	// Without IDs, the command's ID is drawn and stands in for the others.
	if _, err := h.DeleteTemplate(ctx, commands.Meta{Actor: "bob"}, device.DeleteTemplate{TemplateID: "vending-v2"}); err != nil {
		t.Fatal(err)
	}
	md := MustRead(t, store, "template-vending-v2")[1].Metadata
	if md.CommandID == "" || md.CorrelationID != md.CommandID || md.CausationID != md.CommandID || md.Actor != "bob" {
		t.Errorf("defaulted metadata = %+v", md)
	}
}

// TestEventIDsDifferByCommandStreamAndIndex: every (command, stream,
// index) gets its own ID. That a retry of a command derives the same IDs is
// pinned by TestEventIDIsNameBasedSHA1.
func TestEventIDsDifferByCommandStreamAndIndex(t *testing.T) {
	ids := map[string]bool{}
	for _, c := range []string{"c1", "c2"} {
		for _, s := range []string{"device-a", "device-b"} {
			for i := range 3 {
				ids[commands.EventID(c, s, i).String()] = true
			}
		}
	}
	if len(ids) != 12 {
		t.Errorf("12 (command, stream, index) triples gave %d distinct IDs", len(ids))
	}
}

// TestEventIDIsNameBasedSHA1 pins the derivation of event IDs: a version 5
// UUID of the command ID, the stream and the index under a fixed namespace.
// Changing it would stop the store from recognising retries of commands
// recorded before the change.
func TestEventIDIsNameBasedSHA1(t *testing.T) {
	space := uuid.UUID{0x6f, 0x1c, 0x2a, 0x5e, 0x93, 0x47, 0x4b, 0x0d, 0xa1, 0x52, 0x0e, 0x8b, 0x3c, 0x7d, 0x19, 0xf4}
	long := strings.Repeat("k", 300) // beyond the stack scratch buffer
	for _, c := range []struct {
		cmd, stream string
		index       int
	}{
		{"c1", "device-a", 0},
		{"", "", 0},
		{"delivery-bench-0-1000", "job-7c0e4e5a", 1_999_999},
		{"idem-é-東", "device-x", 3},
		{long, "job-" + long, 12},
	} {
		want := uuid.NewSHA1(space, []byte(c.cmd+"\x00"+c.stream+"\x00"+strconv.Itoa(c.index)))
		if got := commands.EventID(c.cmd, c.stream, c.index); got != want {
			t.Errorf("EventID(%.20q, %.20q, %d) = %s, want %s", c.cmd, c.stream, c.index, got, want)
		}
	}
}

func rows(n int) []device.Register {
	out := make([]device.Register, n)
	for i := range out {
		out[i] = reg(fmt.Sprintf("dev-%05d", i), float64(i))
	}
	return out
}

func TestImportIsAllOrNothingOnABadRow(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)
	in := rows(50)
	in[17].Properties = map[string]any{"fanSpeed": "fast"}
	in[33].DeviceID = in[2].DeviceID
	_, err := h.ImportDevices(ctx, commands.Meta{CommandID: "import-1"}, in)
	var ie *commands.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("import with bad rows: %v, want an *ImportError", err)
	}
	var got []string
	for _, r := range ie.Rows {
		for _, f := range r.Err.Fields {
			got = append(got, fmt.Sprintf("%d %s %s", r.Row, r.DeviceID, f.Field))
		}
	}
	if diff := cmp.Diff([]string{"17 dev-00017 properties.fanSpeed", "33 dev-00002 deviceId"}, got); diff != "" {
		t.Errorf("row errors (-want +got):\n%s", diff)
	}
	if e, ok := domain.AsError(err); !ok || e.Code != domain.CodeInvalid || e.Fields[0].Field != "rows[17].properties.fanSpeed" {
		t.Errorf("import error as a domain error: %+v", e)
	}
	for _, r := range in {
		if n := len(MustRead(t, store, eventstore.DeviceStream(r.DeviceID))); n != 0 {
			t.Fatalf("device %s has %d events after a refused import", r.DeviceID, n)
		}
	}
}

func TestImportRefusesDeletedDevicesBeforeRecordingAny(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)
	if _, err := h.RegisterDevice(ctx, commands.Meta{}, reg("dev-00030", 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeleteDevice(ctx, commands.Meta{}, device.Delete{DeviceID: "dev-00030"}); err != nil {
		t.Fatal(err)
	}
	_, err := MustHandler(t, store).ImportDevices(ctx, commands.Meta{}, rows(40))
	var ie *commands.ImportError
	if !errors.As(err, &ie) || len(ie.Rows) != 1 || ie.Rows[0].Row != 30 || ie.Rows[0].Err.Code != domain.CodeConflict {
		t.Fatalf("import over a deleted device: %v, want row 30 refused", err)
	}
	if n := len(MustRead(t, store, "device-dev-00000")); n != 0 {
		t.Errorf("row 0 recorded %d events although the import was refused", n)
	}
}

func TestImportRecordsEveryRowAndRetriesIdempotently(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)
	if _, err := h.RegisterDevice(ctx, commands.Meta{}, reg("dev-00003", 3)); err != nil {
		t.Fatal(err)
	}
	in := rows(200)
	meta := commands.Meta{CommandID: "import-2", Actor: "alice"}
	res, err := h.ImportDevices(ctx, meta, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 200 || res.Changed != 199 || res.Position.IsZero() {
		t.Errorf("import = %+v, want 200 rows, 199 changed (one was already so)", res)
	}
	// A retry (from another instance, so nothing cached) records nothing
	// and answers the same token.
	again, err := MustHandler(t, store).ImportDevices(ctx, meta, in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(commands.ImportResult{Position: res.Position, Rows: 200}, again); diff != "" {
		t.Errorf("retried import (-want +got):\n%s", diff)
	}
	got := MustRead(t, store, "device-dev-00199")
	if len(got) != 1 || got[0].Metadata.CommandID != "import-2" || got[0].Metadata.Actor != "alice" {
		t.Errorf("device-dev-00199 = %+v, want one event of import-2", got)
	}
}

// From a few thousand rows the import loads devices in one pass over $all
// rather than row by row: the same rules hold.
func TestLargeImportValidatesAgainstStoredDevices(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store)
	MustPublish(t, h)
	for _, id := range []string{"dev-00005", "dev-02050"} {
		if _, err := h.RegisterDevice(ctx, commands.Meta{}, reg(id, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.DeleteDevice(ctx, commands.Meta{}, device.Delete{DeviceID: "dev-02050"}); err != nil {
		t.Fatal(err)
	}
	in := rows(2100)
	_, err := MustHandler(t, store).ImportDevices(ctx, commands.Meta{}, in)
	var ie *commands.ImportError
	if !errors.As(err, &ie) || len(ie.Rows) != 1 || ie.Rows[0].Row != 2050 {
		t.Fatalf("large import over a deleted device: %v, want row 2050 refused", err)
	}
	in = append(in[:2050], in[2051:]...)
	res, err := MustHandler(t, store).ImportDevices(ctx, commands.Meta{CommandID: "big"}, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 2099 || res.Changed != 2099 { // dev-00005 changes from 1 to 5
		t.Errorf("large import = %+v, want 2099 rows all changed", res)
	}
	if got := types(MustRead(t, store, "device-dev-00005")); len(got) != 2 || got[1] != eventstore.DevicePropertiesChanged {
		t.Errorf("device-dev-00005 = %v, want registered then changed", got)
	}
	again, err := MustHandler(t, store).ImportDevices(ctx, commands.Meta{CommandID: "big"}, in)
	if err != nil || again.Changed != 0 || again.Position != res.Position {
		t.Errorf("retried large import = %+v, %v; want nothing changed at %s", again, err, res.Position)
	}
}
