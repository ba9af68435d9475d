package eventstore

import (
	"bytes"
	"encoding"
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
	fast   *fastFields // nil: always encoding/json
}

// Register declares that events of type name (the `type` of the recorded
// event, a constant of the package defining E, never derived from E's Go
// name) hold a JSON-encoded E. Decode returns an E (not a *E), and Encode
// accepts an E.
//
// Types whose fields are all strings, lists of strings or lists of structs
// of strings (the catalog's device results, JobStarted, the targeting and
// dispatch events) are decoded without encoding/json when the data has
// the form encoding/json writes for them: objects with exactly their keys,
// plain strings, no space inside; anything else goes through
// encoding/json, so the result is always json.Unmarshal's.
func Register[E any](name string) Registration {
	fast, hasFast := fastFieldsOf(reflect.TypeFor[E](), true)
	var enc *fastFields
	if hasFast {
		enc = &fast
	}
	return Registration{
		name:   name,
		goType: reflect.TypeFor[E](),
		fast:   enc,
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

// The kinds of field the fast decoder reads.
const (
	fieldString  = iota // string
	fieldStrings        // []string
	fieldStructs        // []S, S a struct of string fields
)

// fastField is one field of a fastFields type.
type fastField struct {
	name string       // its JSON key
	kind int          // fieldString, fieldStrings or fieldStructs
	typ  reflect.Type // the field's type
	elem fastFields   // fieldStructs: the decoder of S
}

// fastFields is the fast decoder of a struct type whose fields are all
// exported, with plain JSON names and no options, each of a kind above.
type fastFields struct{ fields []fastField }

var stringsType = reflect.TypeFor[[]string]()

// fastFieldsOf returns the fast decoder of t, if t is such a type; lists
// only if lists (a list's structs hold strings only).
func fastFieldsOf(t reflect.Type, lists bool) (fastFields, bool) {
	if t.Kind() != reflect.Struct || t.NumField() == 0 || t.NumField() > 64 || customJSON(t) {
		return fastFields{}, false
	}
	var f fastFields
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || sf.Anonymous || name == "" || name == "-" || opts != "" || !isPlainKey(name) {
			return fastFields{}, false
		}
		if customJSON(sf.Type) {
			return fastFields{}, false
		}
		ff := fastField{name: name, typ: sf.Type}
		switch {
		case sf.Type.Kind() == reflect.String:
			ff.kind = fieldString
		case lists && sf.Type == stringsType:
			ff.kind = fieldStrings
		case lists && sf.Type.Kind() == reflect.Slice:
			elem, ok := fastFieldsOf(sf.Type.Elem(), false)
			if !ok {
				return fastFields{}, false
			}
			ff.kind, ff.elem = fieldStructs, elem
		default:
			return fastFields{}, false
		}
		f.fields = append(f.fields, ff)
	}
	return f, true
}

// customJSON reports whether t (or *t) encodes or decodes itself: the
// fast paths would bypass it.
func customJSON(t reflect.Type) bool {
	for _, i := range []reflect.Type{reflect.TypeFor[json.Marshaler](), reflect.TypeFor[json.Unmarshaler](),
		reflect.TypeFor[encoding.TextMarshaler](), reflect.TypeFor[encoding.TextUnmarshaler]()} {
		if t.Implements(i) || reflect.PointerTo(t).Implements(i) {
			return true
		}
	}
	return false
}

// appendObject appends v (a struct of f's type) as encoding/json writes
// it, and reports false, having written garbage, if a string needs
// escaping (encoding/json then writes it).
func (f fastFields) appendObject(b []byte, v reflect.Value) ([]byte, bool) {
	b = append(b, '{')
	for i, ff := range f.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, ff.name...)
		b = append(b, '"', ':')
		fv := v.Field(i)
		var ok bool
		switch {
		case ff.kind == fieldString:
			if b, ok = appendPlainString(b, fv.String()); !ok {
				return b, false
			}
		case fv.IsNil():
			b = append(b, "null"...)
		default:
			b = append(b, '[')
			for j := range fv.Len() {
				if j > 0 {
					b = append(b, ',')
				}
				if ff.kind == fieldStrings {
					b, ok = appendPlainString(b, fv.Index(j).String())
				} else {
					b, ok = ff.elem.appendObject(b, fv.Index(j))
				}
				if !ok {
					return b, false
				}
			}
			b = append(b, ']')
		}
	}
	return append(b, '}'), true
}

// appendPlainString appends s quoted if it is printable ASCII that
// encoding/json writes as it is (no quote, backslash or HTML character).
func appendPlainString(b []byte, s string) ([]byte, bool) {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return b, false
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), true
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
// any order, each once, with values of their field's kind: plain strings
// (no escapes, ASCII only, which encoding/json would read the same), lists
// of them or of such objects, or null for a list; no space but around the
// object. Otherwise v may be half set.
func (f fastFields) decode(data []byte, v reflect.Value) bool {
	rest, ok := f.object(bytes.TrimSpace(data), v)
	return ok && len(rest) == 0
}

// object reads an object of f's type at the start of b into v and returns
// what follows it.
func (f fastFields) object(b []byte, v reflect.Value) ([]byte, bool) {
	if len(b) == 0 || b[0] != '{' {
		return nil, false
	}
	b = b[1:]
	var seen uint64
	for n := 1; ; n++ {
		key, rest, ok := plainString(b)
		if !ok || len(rest) == 0 || rest[0] != ':' {
			return nil, false
		}
		i := slices.IndexFunc(f.fields, func(ff fastField) bool { return ff.name == string(key) })
		if i < 0 || seen&(1<<i) != 0 {
			return nil, false
		}
		seen |= 1 << i
		if rest, ok = f.fields[i].value(rest[1:], v.Field(i)); !ok || len(rest) == 0 {
			return nil, false
		}
		switch rest[0] {
		case '}':
			return rest[1:], n == len(f.fields)
		case ',':
			b = rest[1:]
		default:
			return nil, false
		}
	}
}

// value reads the field's value at the start of b into v.
func (ff fastField) value(b []byte, v reflect.Value) ([]byte, bool) {
	if ff.kind == fieldString {
		s, rest, ok := plainString(b)
		if ok {
			v.SetString(string(s))
		}
		return rest, ok
	}
	if rest, ok := bytes.CutPrefix(b, []byte("null")); ok {
		return rest, true // v stays nil, as encoding/json leaves it
	}
	if len(b) < 2 || b[0] != '[' {
		return nil, false
	}
	if b[1] == ']' {
		v.Set(reflect.MakeSlice(ff.typ, 0, 0))
		return b[2:], true
	}
	b = b[1:]
	var ss []string
	var list reflect.Value
	if ff.kind == fieldStrings {
		ss = make([]string, 0, 16)
	} else {
		list = reflect.MakeSlice(ff.typ, 0, 16)
	}
	for {
		var ok bool
		if ff.kind == fieldStrings {
			var s []byte
			if s, b, ok = plainString(b); !ok {
				return nil, false
			}
			ss = append(ss, string(s))
		} else {
			list = reflect.Append(list, reflect.Zero(ff.typ.Elem()))
			if b, ok = ff.elem.object(b, list.Index(list.Len()-1)); !ok {
				return nil, false
			}
		}
		if len(b) == 0 {
			return nil, false
		}
		switch b[0] {
		case ']':
			if ff.kind == fieldStrings {
				v.Set(reflect.ValueOf(ss))
			} else {
				v.Set(list)
			}
			return b[1:], true
		case ',':
			b = b[1:]
		default:
			return nil, false
		}
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
	fast   map[reflect.Type]*fastFields // the types Encode writes itself
}

// NewCodec builds a codec from an explicit list of registrations. It refuses
// an empty name, a name registered twice and a Go type registered under two
// names: each would make the stored history ambiguous.
func NewCodec(regs ...Registration) (*Codec, error) {
	c := &Codec{
		byName: make(map[string]Registration, len(regs)),
		byType: make(map[reflect.Type]string, len(regs)),
		fast:   make(map[reflect.Type]*fastFields, len(regs)),
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
		if r.fast != nil {
			c.fast[r.goType] = r.fast
		}
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
	// The types the fast decoder reads are written without reflection on
	// encoding/json's part, byte for byte as it would (the events of a
	// job's targeting, dispatch and results), unless a string needs
	// escaping.
	if f := c.fast[reflect.TypeOf(ev)]; f != nil {
		if data, ok := f.appendObject(make([]byte, 0, 128), reflect.ValueOf(ev)); ok {
			return name, data, nil
		}
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
