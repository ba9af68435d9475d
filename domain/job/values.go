package job

import (
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
)

// checkValue normalizes v and checks it has schema s, with the device
// package's rules and messages (a number is any JSON number, stored as a
// float64; an object is a JSON object...). Package device keeps those rules
// unexported, so the check goes through its one exported entry point: a
// device of a one-property template. It returns the normalized value, or a
// message saying what was expected and what came.
func checkValue(s device.Schema, v any) (any, string) {
	const probe, id = "value", "probe"
	t := device.Template{ID: id, Published: true, Properties: []device.Capability{{Name: probe, Schema: s}}}
	ev, err := device.CheckRegister(device.Register{DeviceID: id, Name: id, TemplateID: id, Template: t, Properties: map[string]any{probe: v}})
	if err != nil {
		if e, ok := domain.AsError(err); ok && len(e.Fields) > 0 {
			return nil, e.Fields[0].Message
		}
		return nil, err.Error()
	}
	return ev.Properties[probe], ""
}

// schemaOf is the schema of a value as events hold it (normalized).
func schemaOf(v any) device.Schema {
	switch v.(type) {
	case float64:
		return device.SchemaNumber
	case string:
		return device.SchemaString
	case bool:
		return device.SchemaBoolean
	case map[string]any:
		return device.SchemaObject
	}
	return ""
}
