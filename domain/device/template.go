package device

import (
	"fmt"

	"github.com/fleetjobs/fleetjobs/domain"
)

// maxNameLen bounds names, which are shown in lists and job histories.
const maxNameLen = 200

// Template is the state of a device template, folded from its stream. The
// zero Template is one that was never published. Device and set commands
// carry the Template they name, so that their decisions stay pure.
type Template struct {
	ID         string
	Name       string
	Settings   []Capability
	Properties []Capability
	Commands   []Capability
	// Published is true once the template was published (even if it was
	// deleted since).
	Published bool
	// Deleted is true after DeviceTemplateDeleted, until it is published again.
	Deleted bool
}

// Exists reports whether the template is published and not deleted: only
// such a template accepts new devices and sets.
func (t Template) Exists() bool { return t.Published && !t.Deleted }

// Property returns the property called name, if the template declares one.
func (t Template) Property(name string) (Capability, bool) { return find(t.Properties, name) }

// Setting returns the setting called name, if the template declares one.
func (t Template) Setting(name string) (Capability, bool) { return find(t.Settings, name) }

// Command returns the command called name, if the template declares one.
func (t Template) Command(name string) (Capability, bool) { return find(t.Commands, name) }

func find(cs []Capability, name string) (Capability, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return Capability{}, false
}

// DecideTemplate decides what a template command records, given the
// template's current state.
//
// Publishing validates the whole template (its ID, a name, and in each list
// non-empty unique names with a known schema) and records
// DeviceTemplatePublished, unless the template already has exactly this
// body (zero events). Deleting a published template records
// DeviceTemplateDeleted; deleting it again decides nothing; deleting one
// never published is a CodeNotFound error.
func DecideTemplate(t Template, cmd TemplateCommand) ([]TemplateEvent, error) {
	switch c := cmd.(type) {
	case PublishTemplate:
		ev, err := checkTemplate(c)
		if err != nil {
			return nil, err
		}
		if t.Exists() && t.Name == ev.Name && equalCapabilities(t.Settings, ev.Settings) &&
			equalCapabilities(t.Properties, ev.Properties) && equalCapabilities(t.Commands, ev.Commands) {
			return nil, nil
		}
		return []TemplateEvent{ev}, nil
	case DeleteTemplate:
		if err := domain.CheckID("templateId", c.TemplateID); err != nil {
			return nil, err
		}
		switch {
		case !t.Published:
			return nil, domain.NotFound("template %q does not exist", c.TemplateID)
		case t.Deleted:
			return nil, nil
		}
		return []TemplateEvent{TemplateDeleted{TemplateID: c.TemplateID}}, nil
	}
	return nil, fmt.Errorf("decide template: unknown command %T", cmd)
}

// checkTemplate validates a PublishTemplate and returns the event it
// records, with empty lists rather than nil ones.
func checkTemplate(c PublishTemplate) (TemplatePublished, error) {
	bad := checkID(nil, "templateId", c.TemplateID)
	bad = checkName(bad, "name", c.Name)
	bad = checkCapabilities(bad, "settings", c.Settings)
	bad = checkCapabilities(bad, "properties", c.Properties)
	bad = checkCapabilities(bad, "commands", c.Commands)
	if len(bad) > 0 {
		return TemplatePublished{}, domain.InvalidFields(bad)
	}
	return TemplatePublished{
		TemplateID: c.TemplateID,
		Name:       c.Name,
		Settings:   nonNil(c.Settings),
		Properties: nonNil(c.Properties),
		Commands:   nonNil(c.Commands),
	}, nil
}

// checkID appends the problem with id, if any, to bad.
func checkID(bad []domain.FieldError, field, id string) []domain.FieldError {
	if e, ok := domain.AsError(domain.CheckID(field, id)); ok {
		bad = append(bad, e.Fields...)
	}
	return bad
}

func checkName(bad []domain.FieldError, field, name string) []domain.FieldError {
	switch {
	case name == "":
		return append(bad, domain.FieldError{Field: field, Message: "is required"})
	case len(name) > maxNameLen:
		return append(bad, domain.FieldError{Field: field, Message: fmt.Sprintf("is %d bytes long; at most %d are allowed", len(name), maxNameLen)})
	}
	if p := domain.NameProblem(name); p != "" {
		return append(bad, domain.FieldError{Field: field, Message: p})
	}
	return bad
}

func checkCapabilities(bad []domain.FieldError, list string, cs []Capability) []domain.FieldError {
	first := make(map[string]int, len(cs))
	for i, c := range cs {
		field := fmt.Sprintf("%s[%d]", list, i)
		if c.Name == "" {
			bad = append(bad, domain.FieldError{Field: field + ".name", Message: "is required"})
		} else if j, dup := first[c.Name]; dup {
			bad = append(bad, domain.FieldError{Field: field + ".name", Message: fmt.Sprintf("%q is already declared by %s[%d]; names must be unique", c.Name, list, j)})
		} else {
			first[c.Name] = i
		}
		if !c.Schema.Valid() {
			bad = append(bad, domain.FieldError{Field: field + ".schema", Message: fmt.Sprintf("unknown schema %q: use one of number, string, boolean, object", c.Schema)})
		}
	}
	return bad
}

func nonNil(cs []Capability) []Capability {
	if cs == nil {
		return []Capability{}
	}
	return cs
}

func equalCapabilities(a, b []Capability) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// EvolveTemplate applies one event of a template stream to its state.
func EvolveTemplate(t Template, ev TemplateEvent) Template {
	switch e := ev.(type) {
	case TemplatePublished:
		return Template{
			ID:         e.TemplateID,
			Name:       e.Name,
			Settings:   e.Settings,
			Properties: e.Properties,
			Commands:   e.Commands,
			Published:  true,
		}
	case TemplateDeleted:
		t.Deleted = true
	}
	return t
}

// FoldTemplate folds a template stream's events into its state.
func FoldTemplate(events []TemplateEvent) Template {
	var t Template
	for _, ev := range events {
		t = EvolveTemplate(t, ev)
	}
	return t
}
