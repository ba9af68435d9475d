package eventstore_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

// Test-only events, shaped like the catalog's.
const (
	typeThingCreated = "ThingCreated"
	typeThingRenamed = "ThingRenamed"
)

type thingCreated struct {
	ThingID  string            `json:"thingId"`
	Name     string            `json:"name"`
	Tags     []string          `json:"tags"`
	Props    map[string]string `json:"props"`
	Count    int               `json:"count"`
	Disabled bool              `json:"disabled"`
}

type thingRenamed struct {
	ThingID string `json:"thingId"`
	Name    string `json:"name"`
}

func MustCodec(tb testing.TB) *eventstore.Codec {
	tb.Helper()
	c, err := eventstore.NewCodec(
		eventstore.Register[thingCreated](typeThingCreated),
		eventstore.Register[thingRenamed](typeThingRenamed),
	)
	if err != nil {
		tb.Fatalf("new codec: %v", err)
	}
	return c
}

func TestCodecRoundTripsEveryRegisteredType(t *testing.T) {
	eventstoretest.CheckAllRoundTrip(t, MustCodec(t), map[string]any{
		typeThingCreated: thingCreated{ThingID: "t1", Name: "fan", Tags: []string{"a", "b"}, Props: map[string]string{"k": "v"}, Count: 3, Disabled: true},
		typeThingRenamed: thingRenamed{ThingID: "t1", Name: "fan 2"},
	})
}

func TestCodecEncodeNamesByRegistrationNotReflection(t *testing.T) {
	c := MustCodec(t)
	name, data, err := c.Encode(thingRenamed{ThingID: "t1", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if name != typeThingRenamed {
		t.Errorf("name = %q, want %q", name, typeThingRenamed)
	}
	if diff := cmp.Diff(`{"thingId":"t1","name":"x"}`, string(data)); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
}

func TestCodecRefusesUnknownTypes(t *testing.T) {
	c := MustCodec(t)
	if _, _, err := c.Encode(struct{ X int }{1}); !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Errorf("encode of an unregistered Go type: err = %v, want ErrUnknownEventType", err)
	}
	// A pointer is a different Go type: refusing it keeps Decode's answer
	// (a value) the only form an event takes.
	if _, _, err := c.Encode(&thingRenamed{}); !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Errorf("encode of a pointer to a registered type: err = %v, want ErrUnknownEventType", err)
	}
	_, err := c.Decode("NoSuchEvent", []byte(`{}`))
	if !errors.Is(err, eventstore.ErrUnknownEventType) || !strings.Contains(err.Error(), "NoSuchEvent") {
		t.Errorf("decode of an unknown name: err = %v, want ErrUnknownEventType naming the type", err)
	}
}

func TestCodecDecodeRefusesBadJSON(t *testing.T) {
	c := MustCodec(t)
	for _, data := range []string{``, `{`, `{"thingId": 5}`, `[1,2]`, `{} trailing`} {
		_, err := c.Decode(typeThingRenamed, []byte(data))
		if !errors.Is(err, eventstore.ErrBadEventData) || !strings.Contains(err.Error(), typeThingRenamed) {
			t.Errorf("decode %q: err = %v, want ErrBadEventData naming the type", data, err)
		}
	}
}

func TestCodecDecodeIgnoresUnknownFields(t *testing.T) {
	// Old code must read events written by newer code that added fields.
	got, err := MustCodec(t).Decode(typeThingRenamed, []byte(`{"thingId":"t1","name":"n","addedLater":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(any(thingRenamed{ThingID: "t1", Name: "n"}), got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNewCodecRefusesAmbiguousRegistrations(t *testing.T) {
	cases := map[string][]eventstore.Registration{
		"name twice":      {eventstore.Register[thingCreated]("A"), eventstore.Register[thingRenamed]("A")},
		"Go type twice":   {eventstore.Register[thingCreated]("A"), eventstore.Register[thingCreated]("B")},
		"empty name":      {eventstore.Register[thingCreated]("")},
		"zero registered": {{}},
	}
	for name, regs := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := eventstore.NewCodec(regs...); err == nil {
				t.Error("NewCodec succeeded, want an error")
			}
		})
	}
}

func TestCodecTypesAreSorted(t *testing.T) {
	if diff := cmp.Diff([]string{typeThingCreated, typeThingRenamed}, MustCodec(t).Types()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestMetadataJSONIsTheCatalogShape(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	m := eventstore.Metadata{
		CommandID:     "cmd-1",
		CorrelationID: "corr-1",
		CausationID:   "cause-1",
		Actor:         "alice",
		OccurredAt:    time.Date(2026, 11, 2, 11, 4, 5, 123_000_000, paris),
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"commandId":"cmd-1","correlationId":"corr-1","causationId":"cause-1","actor":"alice","occurredAt":"2026-11-02T10:04:05.123Z"}`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var back eventstore.Metadata
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	m.OccurredAt = m.OccurredAt.UTC()
	if diff := cmp.Diff(m, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestMetadataRefusesABadTime(t *testing.T) {
	var m eventstore.Metadata
	if err := json.Unmarshal([]byte(`{"occurredAt":"yesterday"}`), &m); err == nil {
		t.Error("unmarshal of a non-RFC 3339 occurredAt succeeded")
	}
}

func TestPositionStringRoundTrips(t *testing.T) {
	p := eventstore.Position{Commit: 1788, Prepare: 1790}
	if got, want := p.String(), "C:1788/P:1790"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	back, err := eventstore.ParsePosition(p.String())
	if err != nil {
		t.Fatal(err)
	}
	if back != p {
		t.Errorf("ParsePosition = %v, want %v", back, p)
	}
	for _, bad := range []string{"", "1788", "C:x/P:1", "C:1/Q:1", "C:-1/P:1"} {
		if _, err := eventstore.ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) succeeded", bad)
		}
	}
	if got := (eventstore.Position{Commit: 2, Prepare: 1}).Compare(eventstore.Position{Commit: 1, Prepare: 9}); got != 1 {
		t.Errorf("Compare orders by commit first: got %d, want 1", got)
	}
}
