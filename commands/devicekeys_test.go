package commands_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// countingKeys draws keys key-1, key-2... whose stored form is "hash:" and
// the key, so a test can tell which draw the log holds.
func countingKeys() commands.KeyDrawer {
	var n atomic.Int64
	return func() (string, string, error) {
		k := fmt.Sprintf("key-%d", n.Add(1))
		return k, "hash:" + k, nil
	}
}

// keyHashes returns the hashes of stream's DeviceKeyIssued events, in order.
func keyHashes(tb testing.TB, store *eventstore.Client, stream string) []string {
	tb.Helper()
	codec := eventstore.NewCatalogCodec()
	var out []string
	for _, r := range MustRead(tb, store, stream) {
		if r.Type != eventstore.DeviceKeyIssued {
			continue
		}
		v, err := r.Decode(codec)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, v.(device.KeyIssued).KeyHash)
	}
	return out
}

func TestRegisteringANewDeviceIssuesItsKeyOnce(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store, commands.WithDeviceKeys(countingKeys()))
	MustPublish(t, h)
	meta := commands.Meta{CommandID: "put-1"}
	res, err := h.RegisterDevice(ctx, meta, reg("d1", 1))
	if err != nil {
		t.Fatal(err)
	}
	if res.DeviceKey != "key-1" || !res.Created || res.Events != 2 {
		t.Errorf("register = %+v, want key-1 on a created device with 2 events", res)
	}
	if diff := cmp.Diff([]string{eventstore.DeviceRegistered, eventstore.DeviceKeyIssued}, types(MustRead(t, store, "device-d1"))); diff != "" {
		t.Errorf("device-d1 events (-want +got):\n%s", diff)
	}
	// The same PUT, a change, and a retry of the first (here and on
	// another instance) answer without a key and issue none.
	for _, c := range []struct {
		name string
		h    *commands.Handler
		meta commands.Meta
		cmd  device.Register
	}{
		{"same body", h, commands.Meta{}, reg("d1", 1)},
		{"new values", h, commands.Meta{}, reg("d1", 2)},
		{"retry", h, meta, reg("d1", 1)},
		{"retry elsewhere", MustHandler(t, store, commands.WithDeviceKeys(countingKeys())), meta, reg("d1", 1)},
	} {
		res, err := c.h.RegisterDevice(ctx, c.meta, c.cmd)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if res.DeviceKey != "" {
			t.Errorf("%s answered key %q, want none", c.name, res.DeviceKey)
		}
	}
	if diff := cmp.Diff([]string{"hash:key-1"}, keyHashes(t, store, "device-d1")); diff != "" {
		t.Errorf("issued keys (-want +got):\n%s", diff)
	}
	d, err := h.Device(ctx, "d1")
	if err != nil || d.KeyHash != "hash:key-1" || !d.Exists() {
		t.Errorf("device = %+v, %v; want it with hash:key-1", d, err)
	}
}

// lossyStore lands the next append to stream once armed, and then reports
// it failed, as a connection lost after the store committed would.
type lossyStore struct {
	*eventstore.Client
	stream string
	armed  atomic.Bool
}

func (s *lossyStore) Append(ctx context.Context, stream string, expected eventstore.Revision, events []eventstore.Event) (eventstore.AppendResult, error) {
	res, err := s.Client.Append(ctx, stream, expected, events)
	if err == nil && stream == s.stream && s.armed.CompareAndSwap(true, false) {
		return eventstore.AppendResult{}, errors.New("connection reset (the append landed)")
	}
	return res, err
}

// TestRetryAfterALostAnswerShowsNoOtherKey: an append that issued a key
// landed but its answer was lost; the retry (same command ID) draws
// another key, which must not be shown, since the log holds the first one.
// For a registration the retry reads the new stream; for a new key it
// decides on the handler's cached state, from before the lost append, and
// the store must not take its append for the original.
func TestRetryAfterALostAnswerShowsNoOtherKey(t *testing.T) {
	ctx := context.Background()
	client := MustStore(t)
	store := &lossyStore{Client: client, stream: "device-d1"}
	h := commands.New(store, eventstore.NewCatalogCodec(), func() time.Time { return testNow }, uuid.NewString, nil, commands.WithDeviceKeys(countingKeys()))
	MustPublish(t, h)
	for _, c := range []struct {
		name string
		try  func(commands.Meta) (commands.Result, error)
		want []string // the hashes in the log after the retry
	}{
		{"register", func(m commands.Meta) (commands.Result, error) { return h.RegisterDevice(ctx, m, reg("d1", 1)) },
			[]string{"hash:key-1"}},
		{"issue a key", func(m commands.Meta) (commands.Result, error) { return h.IssueDeviceKey(ctx, m, "d1") },
			[]string{"hash:key-1", "hash:key-3"}},
	} {
		meta := commands.Meta{CommandID: "cmd-" + c.name}
		store.armed.Store(true)
		if _, err := c.try(meta); err == nil {
			t.Fatalf("%s: the first try succeeded: the store did not lose its answer", c.name)
		}
		res, err := c.try(meta)
		if err != nil && !isCode(err, domain.CodeConflict) {
			t.Fatalf("%s: retry: %v", c.name, err)
		}
		if res.DeviceKey != "" || res.Events != 0 {
			t.Errorf("%s: retry = %+v, want no key and no events (the first try landed)", c.name, res)
		}
		if diff := cmp.Diff(c.want, keyHashes(t, client, "device-d1")); diff != "" {
			t.Errorf("%s: issued keys (-want +got):\n%s", c.name, diff)
		}
	}
}

func TestIssueDeviceKeyReplacesTheKey(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store, commands.WithDeviceKeys(countingKeys()))
	MustPublish(t, h)
	if _, err := h.RegisterDevice(ctx, commands.Meta{}, reg("d1", 1)); err != nil {
		t.Fatal(err)
	}
	meta := commands.Meta{CommandID: "rotate-1"}
	res, err := h.IssueDeviceKey(ctx, meta, "d1")
	if err != nil || res.DeviceKey != "key-2" || res.Events != 1 {
		t.Fatalf("issue = %+v, %v; want key-2 in one event", res, err)
	}
	d, err := h.Device(ctx, "d1")
	if err != nil || d.KeyHash != "hash:key-2" {
		t.Errorf("device = %+v, %v; want hash:key-2", d, err)
	}
	// A retry cannot show the key its first try issued: a conflict.
	_, err = MustHandler(t, store, commands.WithDeviceKeys(countingKeys())).IssueDeviceKey(ctx, meta, "d1")
	if e, ok := domain.AsError(err); !ok || e.Code != domain.CodeConflict {
		t.Errorf("retried issue: %v, want a conflict", err)
	}
	if _, err := h.IssueDeviceKey(ctx, commands.Meta{}, "nope"); !isCode(err, domain.CodeNotFound) {
		t.Errorf("issue to an unknown device: %v, want not found", err)
	}
	if _, err := h.DeleteDevice(ctx, commands.Meta{}, device.Delete{DeviceID: "d1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.IssueDeviceKey(ctx, commands.Meta{}, "d1"); !isCode(err, domain.CodeConflict) {
		t.Errorf("issue to a deleted device: %v, want a conflict", err)
	}
	if diff := cmp.Diff([]string{"hash:key-1", "hash:key-2"}, keyHashes(t, store, "device-d1")); diff != "" {
		t.Errorf("issued keys (-want +got):\n%s", diff)
	}
}

func isCode(err error, c domain.Code) bool {
	e, ok := domain.AsError(err)
	return ok && e.Code == c
}

func TestImportIssuesKeysToNewDevicesOnly(t *testing.T) {
	ctx := context.Background()
	store := MustStore(t)
	h := MustHandler(t, store, commands.WithDeviceKeys(countingKeys()))
	MustPublish(t, h)
	if _, err := h.RegisterDevice(ctx, commands.Meta{}, reg("dev-00001", 100)); err != nil { // key-1
		t.Fatal(err)
	}
	if _, err := h.RegisterDevice(ctx, commands.Meta{}, reg("dev-00002", 2)); err != nil { // key-2
		t.Fatal(err)
	}
	in := rows(5) // dev-00000..dev-00004: 1 is changed, 2 is unchanged
	meta := commands.Meta{CommandID: "import-1"}
	res, err := h.ImportDevices(ctx, meta, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 5 || res.Changed != 4 || res.Registered != 3 {
		t.Errorf("import = %+v, want 5 rows, 4 changed of which 3 registered", res)
	}
	got := map[string]string{}
	for _, k := range res.Keys {
		got[k.DeviceID] = k.Key
	}
	if len(got) != 3 || got["dev-00000"] == "" || got["dev-00003"] == "" || got["dev-00004"] == "" {
		t.Fatalf("keys %v, want one for each new device", res.Keys)
	}
	for id, k := range got {
		if diff := cmp.Diff([]string{"hash:" + k}, keyHashes(t, store, "device-"+id)); diff != "" {
			t.Errorf("%s: issued keys (-want +got):\n%s", id, diff)
		}
	}
	again, err := MustHandler(t, store, commands.WithDeviceKeys(countingKeys())).ImportDevices(ctx, meta, in)
	if err != nil {
		t.Fatal(err)
	}
	if again.Registered != 0 || len(again.Keys) != 0 {
		t.Errorf("retried import = %+v, want no registration and no key", again)
	}
}
