package eventstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
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
//
// Types whose fields are all strings (most of the catalog by count: device
// results, JobStarted) are decoded without encoding/json when the data is
// a flat object of plain strings with exactly their keys, the form
// encoding/json writes for them; anything else goes through encoding/json,
// so the result is always json.Unmarshal's.
func Register[E any](name string) Registration {
	fast, hasFast := stringFieldsOf(reflect.TypeFor[E]())
	return Registration{
		name:   name,
		goType: reflect.TypeFor[E](),
		decode: func(data []byte) (any, error) {
			var ev E
			if hasFast {
				if fast.decode(data, reflect.ValueOf(&ev).Elem()) {
					return ev, nil
				}
				var zero E
				ev = zero
			}
			if err := json.Unmarshal(data, &ev); err != nil {
				return nil, err
			}
			return ev, nil
		},
	}
}

// stringFields is the fast decoder of a struct type whose fields are all
// exported strings with plain JSON names: names[i] is the JSON key of
// field i.
type stringFields struct{ names []string }

// stringFieldsOf returns the fast decoder of t, if t is such a type.
func stringFieldsOf(t reflect.Type) (stringFields, bool) {
	if t.Kind() != reflect.Struct || t.NumField() == 0 {
		return stringFields{}, false
	}
	var f stringFields
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() || sf.Anonymous || sf.Type.Kind() != reflect.String {
			return stringFields{}, false
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" || opts != "" || !isPlainKey(name) {
			return stringFields{}, false
		}
		f.names = append(f.names, name)
	}
	return f, true
}

func isPlainKey(s string) bool {
	for i := range len(s) {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// decode sets the fields of v (a struct of f's type) from data and
// reports true if data is an object whose keys are exactly f's names, in
// any order, each once, with plain string values (no escapes, ASCII only,
// which encoding/json would read the same), with no space but around the
// object. Otherwise v may be half set.
func (f stringFields) decode(data []byte, v reflect.Value) bool {
	b := bytes.TrimSpace(data)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	b = b[1 : len(b)-1]
	var seen uint64
	for n := 0; ; n++ {
		key, rest, ok := plainString(b)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return false
		}
		val, rest, ok := plainString(rest[1:])
		if !ok {
			return false
		}
		i := slices.Index(f.names, string(key))
		if i < 0 || i >= 64 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		v.Field(i).SetString(string(val))
		if len(rest) == 0 {
			return n+1 == len(f.names)
		}
		if rest[0] != ',' {
			return false
		}
		b = rest[1:]
	}
}

// plainString reads a JSON string at the start of b that holds no escape,
// control character or non-ASCII byte: its content and what follows.
func plainString(b []byte) (content, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return b[1:i], b[i+1:], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, nil, false
		}
	}
	return nil, nil, false
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
