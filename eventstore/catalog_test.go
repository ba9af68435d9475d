package eventstore_test

import (
	"strings"
	"testing"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

func TestCatalogRoundTripsEveryEvent(t *testing.T) {
	caps := []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}, {Name: "cfg", Schema: device.SchemaObject}}
	props := map[string]any{"fanSpeed": 1200.5, "city": "Seattle", "cold": true, "cfg": map[string]any{"a": "b", "n": 1.0}}
	eventstoretest.CheckAllRoundTrip(t, eventstore.NewCatalogCodec(), map[string]any{
		eventstore.DeviceTemplatePublished: device.TemplatePublished{TemplateID: "vending-v2", Name: "Vending v2",
			Settings: caps, Properties: caps, Commands: []device.Capability{{Name: "reboot", Schema: device.SchemaBoolean}}},
		eventstore.DeviceTemplateDeleted:   device.TemplateDeleted{TemplateID: "vending-v2"},
		eventstore.DeviceRegistered:        device.Registered{DeviceID: "d1", Name: "Pike Place 1", TemplateID: "vending-v2", Properties: props},
		eventstore.DevicePropertiesChanged: device.PropertiesChanged{DeviceID: "d1", Properties: props},
		eventstore.DeviceKeyIssued:         device.KeyIssued{DeviceID: "d1", KeyHash: "sha256:0f"},
		eventstore.DeviceDeleted:           device.Deleted{DeviceID: "d1"},
		eventstore.DeviceSetDefined: device.SetDefined{SetID: "seattle", Name: "Seattle", TemplateID: "vending-v2",
			Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}, {Property: "fanSpeed", Op: device.OpGe, Value: 1000.0}}},
		eventstore.DeviceSetDeleted: device.SetDeleted{SetID: "seattle"},

		eventstore.JobCreated: job.Created{JobID: "j1", Name: "Fan speed", Description: "slower fans", DeviceSetID: "seattle",
			Type: job.TypeSetting, Operations: []job.Operation{{Name: "fanSpeed", Value: 1200.0}, {Name: "cfg", Value: map[string]any{"mode": "eco"}}},
			DeviceCount: 2, TimeoutSeconds: 30, BatchSize: 100, CancellationThreshold: 25},
		eventstore.JobDevicesTargeted:       job.DevicesTargeted{JobID: "j1", Devices: []job.TargetedDevice{{DeviceID: "d1", Name: "Pike Place 1"}, {DeviceID: "d2", Name: "Pike Place 2"}}},
		eventstore.JobStarted:               job.Started{JobID: "j1"},
		eventstore.JobDevicesDispatched:     job.DevicesDispatched{JobID: "j1", DeviceIDs: []string{"d1", "d2"}},
		eventstore.DeviceOperationSucceeded: job.OperationSucceeded{JobID: "j1", DeviceID: "d1"},
		eventstore.DeviceOperationFailed:    job.OperationFailed{JobID: "j1", DeviceID: "d2", Error: "timed out"},
		eventstore.JobCompleted:             job.Completed{JobID: "j1", Succeeded: 2, Failed: 1},
		eventstore.JobFailed:                job.Failed{JobID: "j1", Reason: "1 of 2 devices failed", Succeeded: 1, Failed: 1},
		eventstore.JobStopped:               job.Stopped{JobID: "j1", Reason: "stopped by a user"},
	})
}

// The stored data is the catalog's public contract: camelCase field names
// exactly as ARCHITECTURE.md lists them.
func TestCatalogStoresCamelCaseFields(t *testing.T) {
	codec := eventstore.NewCatalogCodec()
	cases := []struct {
		ev   any
		want string
	}{
		{device.TemplatePublished{TemplateID: "t", Name: "n", Settings: []device.Capability{}, Properties: []device.Capability{{Name: "p", Schema: device.SchemaString}}, Commands: []device.Capability{}},
			`{"templateId":"t","name":"n","settings":[],"properties":[{"name":"p","schema":"string"}],"commands":[]}`},
		{device.Registered{DeviceID: "d", Name: "n", TemplateID: "t", Properties: map[string]any{"p": "x"}},
			`{"deviceId":"d","name":"n","templateId":"t","properties":{"p":"x"}}`},
		{device.PropertiesChanged{DeviceID: "d", Properties: map[string]any{}}, `{"deviceId":"d","properties":{}}`},
		{device.KeyIssued{DeviceID: "d", KeyHash: "sha256:0f"}, `{"deviceId":"d","keyHash":"sha256:0f"}`},
		{device.SetDefined{SetID: "s", Name: "n", TemplateID: "t", Conditions: []device.Condition{{Property: "p", Op: device.OpContains, Value: "x"}}},
			`{"setId":"s","name":"n","templateId":"t","conditions":[{"property":"p","op":"contains","value":"x"}]}`},
		{job.Created{JobID: "j", Name: "n", Description: "d", DeviceSetID: "s", Type: job.TypeCommand, Operations: []job.Operation{{Name: "reboot", Value: true}},
			DeviceCount: 3, TimeoutSeconds: 30, BatchSize: 100, CancellationThreshold: 0},
			`{"jobId":"j","name":"n","description":"d","deviceSetId":"s","jobType":"command","operations":[{"name":"reboot","value":true}],"deviceCount":3,"timeoutSeconds":30,"batchSize":100,"cancellationThreshold":0}`},
		{job.DevicesTargeted{JobID: "j", Devices: []job.TargetedDevice{{DeviceID: "d", Name: "n"}}}, `{"jobId":"j","devices":[{"deviceId":"d","name":"n"}]}`},
		{job.Started{JobID: "j"}, `{"jobId":"j"}`},
		{job.DevicesDispatched{JobID: "j", DeviceIDs: []string{"d"}}, `{"jobId":"j","deviceIds":["d"]}`},
		{job.OperationSucceeded{JobID: "j", DeviceID: "d"}, `{"jobId":"j","deviceId":"d"}`},
		{job.OperationFailed{JobID: "j", DeviceID: "d", Error: "e"}, `{"jobId":"j","deviceId":"d","error":"e"}`},
		{job.Completed{JobID: "j", Succeeded: 3, Failed: 0}, `{"jobId":"j","succeeded":3,"failed":0}`},
		{job.Failed{JobID: "j", Reason: "r", Succeeded: 1, Failed: 2}, `{"jobId":"j","reason":"r","succeeded":1,"failed":2}`},
		{job.Stopped{JobID: "j", Reason: "r"}, `{"jobId":"j","reason":"r"}`},
	}
	for _, c := range cases {
		_, data, err := codec.Encode(c.ev)
		if err != nil {
			t.Fatalf("encode %T: %v", c.ev, err)
		}
		if string(data) != c.want {
			t.Errorf("%T stored as\n %s\nwant\n %s", c.ev, data, c.want)
		}
	}
}

func TestCatalogStreamNamesDoNotShadowEachOther(t *testing.T) {
	// A filter on "device-" must not pick up device sets' streams.
	if strings.HasPrefix(eventstore.DeviceSetStream("x"), eventstore.DeviceStreamPrefix) {
		t.Errorf("%q starts with the device stream prefix %q", eventstore.DeviceSetStream("x"), eventstore.DeviceStreamPrefix)
	}
	if got, want := eventstore.DeviceStream("d1"), "device-d1"; got != want {
		t.Errorf("DeviceStream = %q, want %q", got, want)
	}
}
