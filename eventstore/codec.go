package eventstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
)

// ErrUnknownEventType is returned (wrapped) by Codec.Decode for an event type
// name the codec has no registration for, and by Codec.Encode for a Go value
// whose type was not registered.
var ErrUnknownEventType = errors.New("unknown event type")

// ErrBadEventData is returned (wrapped, with the JSON error) by Codec.Decode
// when the stored data is not valid JSON for the registered Go type, and by
// Codec.Encode when the value does not marshal.
var ErrBadEventData = errors.New("bad event data")

// Registration binds one event type name to one Go type. Build it with
// Register; the zero Registration is invalid.
type Registration struct {
	name   string
	goType reflect.Type
	decode func(data []byte) (any, error)
}

// Register declares that events of type name (the `type` of the recorded
// event, a constant of the package defining E, never derived from E's Go
// name) hold a JSON-encoded E. Decode returns an E (not a *E), and Encode
// accepts an E.
func Register[E any](name string) Registration {
	return Registration{
		name:   name,
		goType: reflect.TypeFor[E](),
		decode: func(data []byte) (any, error) {
			var ev E
			if err := json.Unmarshal(data, &ev); err != nil {
				return nil, err
			}
			return ev, nil
		},
	}
}

// Name is the event type name this registration binds.
func (r Registration) Name() string { return r.name }

// Codec maps event type names to Go types and back, encoding event data as
// JSON. It is immutable once built, so one Codec can serve every goroutine.
type Codec struct {
	byName map[string]Registration
	byType map[reflect.Type]string
}

// NewCodec builds a codec from an explicit list of registrations. It refuses
// an empty name, a name registered twice and a Go type registered under two
// names: each would make the stored history ambiguous.
func NewCodec(regs ...Registration) (*Codec, error) {
	c := &Codec{
		byName: make(map[string]Registration, len(regs)),
		byType: make(map[reflect.Type]string, len(regs)),
	}
	for i, r := range regs {
		switch {
		case r.decode == nil:
			return nil, fmt.Errorf("new codec: registration %d was not built with Register", i)
		case r.name == "":
			return nil, fmt.Errorf("new codec: registration %d (%s) has an empty event type name", i, r.goType)
		}
		if _, dup := c.byName[r.name]; dup {
			return nil, fmt.Errorf("new codec: event type %q registered twice", r.name)
		}
		if other, dup := c.byType[r.goType]; dup {
			return nil, fmt.Errorf("new codec: Go type %s registered as both %q and %q", r.goType, other, r.name)
		}
		c.byName[r.name] = r
		c.byType[r.goType] = r.name
	}
	return c, nil
}

// MustNewCodec is NewCodec for registration lists fixed at compile time; it
// panics on the errors NewCodec returns, which are programming mistakes.
func MustNewCodec(regs ...Registration) *Codec {
	c, err := NewCodec(regs...)
	if err != nil {
		panic(err)
	}
	return c
}

// Types lists the registered event type names, sorted.
func (c *Codec) Types() []string {
	names := make([]string, 0, len(c.byName))
	for n := range c.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TypeOf returns the event type name registered for ev's Go type, or an error
// wrapping ErrUnknownEventType.
func (c *Codec) TypeOf(ev any) (string, error) {
	name, ok := c.byType[reflect.TypeOf(ev)]
	if !ok {
		return "", fmt.Errorf("encode %T: %w: no event type registered for this Go type", ev, ErrUnknownEventType)
	}
	return name, nil
}

// Encode returns the event type name and JSON data of ev, whose Go type must
// have been registered.
func (c *Codec) Encode(ev any) (name string, data []byte, err error) {
	name, err = c.TypeOf(ev)
	if err != nil {
		return "", nil, err
	}
	data, err = json.Marshal(ev)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w: %w", name, ErrBadEventData, err)
	}
	return name, data, nil
}

// Decode turns stored JSON data of event type name back into the registered
// Go value. Unknown names wrap ErrUnknownEventType; data that is not JSON for
// that type wraps ErrBadEventData. Fields the Go type lacks are ignored, so
// that old code can read events written by newer code.
func (c *Codec) Decode(name string, data []byte) (any, error) {
	r, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("decode %q: %w", name, ErrUnknownEventType)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("decode %s: %w: empty data", name, ErrBadEventData)
	}
	ev, err := r.decode(data)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w: %w", name, ErrBadEventData, err)
	}
	return ev, nil
}
