package device

import (
	"fmt"
	"sort"

	"github.com/fleetjobs/fleetjobs/domain"
)

// Device is the state of a device, folded from its stream. The zero Device
// is one that was never registered.
type Device struct {
	ID         string
	Name       string
	TemplateID string
	// Properties are the device's values, normalized (every number a
	// float64). Never modify them: they are shared with the events.
	Properties map[string]any
	// Registered is true once the device was registered (even if it was
	// deleted since).
	Registered bool
	// Deleted is true after DeviceDeleted; it stays so.
	Deleted bool
	// KeyHash is the stored form of the device's current key (the latest
	// DeviceKeyIssued); empty when it was never given one.
	KeyHash string
}

// Exists reports whether the device is registered and not deleted.
func (d Device) Exists() bool { return d.Registered && !d.Deleted }

// DecideDevice decides what a device command records, given the device's
// current state.
//
// Register refuses a deleted device (CodeConflict: its ID is retired), then
// validates the device: its ID, a name, a template that exists (cmd.Template)
// and, for each property value, that the template declares the property and
// the value has its schema; every problem is reported at once, by field
// ("properties.fanSpeed"). It then records DeviceRegistered for a new device
// or a new name or template, DevicePropertiesChanged for new property
// values only, and nothing for the same body. A new device is also given
// its key: DeviceKeyIssued with cmd.KeyHash follows DeviceRegistered in the
// same decision (when the handler drew one). IssueKey records
// DeviceKeyIssued on an existing device every time it is decided (each is
// a new key); a device never registered is CodeNotFound, a deleted one
// CodeConflict. Delete records DeviceDeleted once; deleting again decides
// nothing; deleting a device never registered is a CodeNotFound error.
func DecideDevice(d Device, cmd DeviceCommand) ([]DeviceEvent, error) {
	switch c := cmd.(type) {
	case Register:
		if d.Deleted {
			return nil, domain.Conflict("device %q was deleted and cannot be changed or registered again; register the device under a new ID", c.DeviceID)
		}
		ev, err := CheckRegister(c)
		if err != nil {
			return nil, err
		}
		switch {
		case !d.Registered && c.KeyHash != "":
			return []DeviceEvent{ev, KeyIssued{DeviceID: ev.DeviceID, KeyHash: c.KeyHash}}, nil
		case !d.Registered, d.Name != ev.Name, d.TemplateID != ev.TemplateID:
			return []DeviceEvent{ev}, nil
		case !equalProperties(d.Properties, ev.Properties):
			return []DeviceEvent{PropertiesChanged{DeviceID: ev.DeviceID, Properties: ev.Properties}}, nil
		}
		return nil, nil
	case IssueKey:
		bad := checkID(nil, "deviceId", c.DeviceID)
		if c.KeyHash == "" {
			bad = append(bad, domain.FieldError{Field: "keyHash", Message: "is required"})
		}
		switch {
		case len(bad) > 0:
			return nil, domain.InvalidFields(bad)
		case !d.Registered:
			return nil, domain.NotFound("device %q does not exist", c.DeviceID)
		case d.Deleted:
			return nil, domain.Conflict("device %q was deleted: it has no key and cannot be given one", c.DeviceID)
		}
		return []DeviceEvent{KeyIssued{DeviceID: c.DeviceID, KeyHash: c.KeyHash}}, nil
	case Delete:
		if err := domain.CheckID("deviceId", c.DeviceID); err != nil {
			return nil, err
		}
		switch {
		case !d.Registered:
			return nil, domain.NotFound("device %q does not exist", c.DeviceID)
		case d.Deleted:
			return nil, nil
		}
		return []DeviceEvent{Deleted{DeviceID: c.DeviceID}}, nil
	}
	return nil, fmt.Errorf("decide device: unknown command %T", cmd)
}

// CheckRegister validates a Register command on its own (without the
// device's state) and returns the DeviceRegistered it would record, with
// the property values normalized. Imports use it to check every row before
// loading anything.
func CheckRegister(c Register) (Registered, error) {
	bad := checkID(nil, "deviceId", c.DeviceID)
	bad = checkName(bad, "name", c.Name)
	bad = checkTemplateRef(bad, c.TemplateID, c.Template)
	props := make(map[string]any, len(c.Properties))
	if c.Template.Exists() && c.Template.ID == c.TemplateID {
		names := make([]string, 0, len(c.Properties))
		for name := range c.Properties {
			names = append(names, name)
		}
		sort.Strings(names) // errors in a stable order
		for _, name := range names {
			field := "properties." + name
			p, ok := c.Template.Property(name)
			if !ok {
				bad = append(bad, domain.FieldError{Field: field, Message: fmt.Sprintf("template %q declares no property %q", c.TemplateID, name)})
				continue
			}
			v, msg := checkValue(p.Schema, c.Properties[name])
			if msg != "" {
				bad = append(bad, domain.FieldError{Field: field, Message: msg})
				continue
			}
			props[name] = v
		}
	}
	if len(bad) > 0 {
		return Registered{}, domain.InvalidFields(bad)
	}
	return Registered{DeviceID: c.DeviceID, Name: c.Name, TemplateID: c.TemplateID, Properties: props}, nil
}

// checkTemplateRef checks that a device or set names a template that exists.
func checkTemplateRef(bad []domain.FieldError, id string, t Template) []domain.FieldError {
	n := len(bad)
	bad = checkID(bad, "templateId", id)
	if len(bad) > n {
		return bad
	}
	switch {
	case !t.Published || t.ID != id:
		return append(bad, domain.FieldError{Field: "templateId", Message: fmt.Sprintf("template %q does not exist", id)})
	case t.Deleted:
		return append(bad, domain.FieldError{Field: "templateId", Message: fmt.Sprintf("template %q was deleted; publish it again or use another template", id)})
	}
	return bad
}

// EvolveDevice applies one event of a device stream to its state.
func EvolveDevice(d Device, ev DeviceEvent) Device {
	switch e := ev.(type) {
	case Registered:
		return Device{ID: e.DeviceID, Name: e.Name, TemplateID: e.TemplateID, Properties: e.Properties, Registered: true, Deleted: d.Deleted, KeyHash: d.KeyHash}
	case PropertiesChanged:
		d.Properties = e.Properties
	case KeyIssued:
		d.KeyHash = e.KeyHash
	case Deleted:
		d.Deleted = true
	}
	return d
}

// FoldDevice folds a device stream's events into its state.
func FoldDevice(events []DeviceEvent) Device {
	var d Device
	for _, ev := range events {
		d = EvolveDevice(d, ev)
	}
	return d
}
