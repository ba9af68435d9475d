package device

import (
	"fmt"
	"strings"

	"github.com/fleetjobs/fleetjobs/domain"
)

// Set is the state of a device set, folded from its stream. The zero Set is
// one that was never defined.
type Set struct {
	ID         string
	Name       string
	TemplateID string
	// Conditions are all met by a member; values are normalized.
	Conditions []Condition
	// Defined is true once the set was defined (even if deleted since).
	Defined bool
	// Deleted is true after DeviceSetDeleted, until it is defined again.
	Deleted bool
}

// Exists reports whether the set is defined and not deleted.
func (s Set) Exists() bool { return s.Defined && !s.Deleted }

// DecideSet decides what a device set command records, given the set's
// current state.
//
// DefineSet validates the set: its ID, a name, a template that exists
// (cmd.Template), and each condition: a property the template declares, a
// known op that fits the property's schema, a value of that schema (a
// string for contains). Every problem is reported at once, by field
// ("conditions[1].op"). It records DeviceSetDefined unless the set already
// has exactly this body. DeleteSet records DeviceSetDeleted once; deleting
// again decides nothing; deleting a set never defined is CodeNotFound.
func DecideSet(s Set, cmd SetCommand) ([]SetEvent, error) {
	switch c := cmd.(type) {
	case DefineSet:
		bad := checkID(nil, "setId", c.SetID)
		bad = checkName(bad, "name", c.Name)
		bad = checkTemplateRef(bad, c.TemplateID, c.Template)
		conds := make([]Condition, len(c.Conditions))
		if c.Template.Exists() && c.Template.ID == c.TemplateID {
			for i, cond := range c.Conditions {
				field := fmt.Sprintf("conditions[%d]", i)
				p, ok := c.Template.Property(cond.Property)
				if !ok {
					msg := fmt.Sprintf("template %q declares no property %q", c.TemplateID, cond.Property)
					if cond.Property == "" {
						msg = "is required"
					}
					bad = append(bad, domain.FieldError{Field: field + ".property", Message: msg})
					continue
				}
				v, sub, msg := fitCondition(p, cond)
				if msg != "" {
					bad = append(bad, domain.FieldError{Field: field + "." + sub, Message: msg})
					continue
				}
				conds[i] = Condition{Property: cond.Property, Op: cond.Op, Value: v}
			}
		}
		if len(bad) > 0 {
			return nil, domain.InvalidFields(bad)
		}
		ev := SetDefined{SetID: c.SetID, Name: c.Name, TemplateID: c.TemplateID, Conditions: conds}
		if s.Exists() && s.Name == ev.Name && s.TemplateID == ev.TemplateID && equalConditions(s.Conditions, ev.Conditions) {
			return nil, nil
		}
		return []SetEvent{ev}, nil
	case DeleteSet:
		if err := domain.CheckID("setId", c.SetID); err != nil {
			return nil, err
		}
		switch {
		case !s.Defined:
			return nil, domain.NotFound("device set %q does not exist", c.SetID)
		case s.Deleted:
			return nil, nil
		}
		return []SetEvent{SetDeleted{SetID: c.SetID}}, nil
	}
	return nil, fmt.Errorf("decide device set: unknown command %T", cmd)
}

// fitCondition checks that cond's op and value fit property p. It returns
// the normalized value, or the sub-field at fault ("op" or "value") and why.
func fitCondition(p Capability, cond Condition) (value any, field, msg string) {
	switch cond.Op {
	case OpEq, OpNe:
	case OpLt, OpLe, OpGt, OpGe:
		if p.Schema != SchemaNumber && p.Schema != SchemaString {
			return nil, "op", fmt.Sprintf("%s orders numbers or strings, but property %q is %s", cond.Op, p.Name, article(string(p.Schema)))
		}
	case OpContains:
		if p.Schema != SchemaString && p.Schema != SchemaObject {
			return nil, "op", fmt.Sprintf("contains looks into a string or an object's keys, but property %q is %s", p.Name, article(string(p.Schema)))
		}
		v, msg := checkValue(SchemaString, cond.Value)
		return v, "value", msg
	default:
		names := make([]string, 0, 7)
		for _, op := range Ops() {
			names = append(names, string(op))
		}
		return nil, "op", fmt.Sprintf("unknown op %q: use one of %s", cond.Op, strings.Join(names, ", "))
	}
	v, msg := checkValue(p.Schema, cond.Value)
	return v, "value", msg
}

func equalConditions(a, b []Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Property != b[i].Property || a[i].Op != b[i].Op || !equalValues(norm(a[i].Value), norm(b[i].Value)) {
			return false
		}
	}
	return true
}

// EvolveSet applies one event of a device set stream to its state.
func EvolveSet(s Set, ev SetEvent) Set {
	switch e := ev.(type) {
	case SetDefined:
		return Set{ID: e.SetID, Name: e.Name, TemplateID: e.TemplateID, Conditions: e.Conditions, Defined: true}
	case SetDeleted:
		s.Deleted = true
	}
	return s
}

// FoldSet folds a device set stream's events into its state.
func FoldSet(events []SetEvent) Set {
	var s Set
	for _, ev := range events {
		s = EvolveSet(s, ev)
	}
	return s
}

// BrokenReason is the broken-set rule. A set is broken, and lists no
// devices, when its template (t: the current state of the template the set
// names, the zero Template if there is none) does not exist or was deleted,
// or when a condition no longer fits the template: it names a property the
// template does not declare any more, or the property's schema changed so
// that the condition cannot be evaluated. The reason is a sentence for an
// operator, e.g. "Template 'vending-v2' was deleted, so this set lists no
// devices."
func BrokenReason(s Set, t Template) (reason string, broken bool) {
	i, why := brokenBy(s, t)
	switch why {
	case notBroken:
		return "", false
	case templateMissing:
		return fmt.Sprintf("Template '%s' does not exist, so this set lists no devices.", s.TemplateID), true
	case templateDeleted:
		return fmt.Sprintf("Template '%s' was deleted, so this set lists no devices.", s.TemplateID), true
	case propertyMissing:
		return fmt.Sprintf("Template '%s' has no property '%s' any more (condition %d names it), so this set lists no devices.",
			s.TemplateID, s.Conditions[i].Property, i+1), true
	}
	c := s.Conditions[i]
	p, _ := t.Property(c.Property)
	return fmt.Sprintf("Template '%s' now declares property '%s' as %s, which condition %d (%s %s) cannot compare, so this set lists no devices.",
		s.TemplateID, c.Property, article(string(p.Schema)), i+1, c.Property, c.Op), true
}

type brokenWhy int

const (
	notBroken brokenWhy = iota
	templateMissing
	templateDeleted
	propertyMissing
	conditionMisfit
)

// brokenBy is BrokenReason without building the sentence: Matches runs it
// for every device.
func brokenBy(s Set, t Template) (condition int, why brokenWhy) {
	switch {
	case !t.Published || t.ID != s.TemplateID:
		return 0, templateMissing
	case t.Deleted:
		return 0, templateDeleted
	}
	for i, c := range s.Conditions {
		p, ok := t.Property(c.Property)
		if !ok {
			return i, propertyMissing
		}
		if _, _, msg := fitCondition(p, c); msg != "" {
			return i, conditionMisfit
		}
	}
	return 0, notBroken
}

// Matches is the membership rule: d is a member of s when both exist, d
// uses s's template, the set is not broken (t is the current state of that
// template) and d's values meet every condition. A device with no value for
// a condition's property does not meet it. A deleted device never matches;
// a broken set matches nothing.
func Matches(s Set, t Template, d Device) bool {
	if !s.Exists() || !d.Exists() || d.TemplateID != s.TemplateID {
		return false
	}
	if _, why := brokenBy(s, t); why != notBroken {
		return false
	}
	for _, c := range s.Conditions {
		v, ok := d.Properties[c.Property]
		if !ok || !holds(c.Op, v, c.Value) {
			return false
		}
	}
	return true
}
