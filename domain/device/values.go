package device

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// normalize returns v in the one form events store and comparisons expect
// (float64 for every number, map[string]any and []any for structures) and the
// JSON kind it has: a Schema, or "array" / "null". ok is false for a value
// JSON cannot hold (a NaN, a channel...).
func normalize(v any) (out any, kind string, ok bool) {
	switch x := v.(type) {
	case nil:
		return nil, "null", true
	case string:
		return x, string(SchemaString), true
	case bool:
		return x, string(SchemaBoolean), true
	case float64:
		return x, string(SchemaNumber), !math.IsNaN(x) && !math.IsInf(x, 0)
	case float32:
		return normalize(float64(x))
	case int:
		return float64(x), string(SchemaNumber), true
	case int8:
		return float64(x), string(SchemaNumber), true
	case int16:
		return float64(x), string(SchemaNumber), true
	case int32:
		return float64(x), string(SchemaNumber), true
	case int64:
		return float64(x), string(SchemaNumber), true
	case uint:
		return float64(x), string(SchemaNumber), true
	case uint8:
		return float64(x), string(SchemaNumber), true
	case uint16:
		return float64(x), string(SchemaNumber), true
	case uint32:
		return float64(x), string(SchemaNumber), true
	case uint64:
		return float64(x), string(SchemaNumber), true
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return nil, "", false
		}
		return normalize(f)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			n, _, ok := normalize(e)
			if !ok {
				return nil, "", false
			}
			m[k] = n
		}
		return m, string(SchemaObject), true
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			n, _, ok := normalize(e)
			if !ok {
				return nil, "", false
			}
			a[i] = n
		}
		return a, "array", true
	}
	return nil, "", false
}

// checkValue normalizes v and checks it has schema s. The message says what
// was expected and what came, for the caller to attach to a field.
func checkValue(s Schema, v any) (any, string) {
	n, kind, ok := normalize(v)
	switch {
	case !ok:
		return nil, fmt.Sprintf("must be a %s, got a value JSON cannot hold (%T)", s, v)
	case kind != string(s):
		return nil, fmt.Sprintf("must be %s, got %s", article(string(s)), describe(kind, n))
	}
	return n, ""
}

// article returns "a number", "an object"...
func article(kind string) string {
	switch kind {
	case string(SchemaObject), "array":
		return "an " + kind
	case "null":
		return "null"
	}
	return "a " + kind
}

// describe renders a normalized value for an error message: its kind, and
// for scalars the value itself.
func describe(kind string, n any) string {
	switch kind {
	case string(SchemaString):
		s := n.(string)
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return fmt.Sprintf("a string (%q)", s)
	case string(SchemaNumber):
		return fmt.Sprintf("a number (%s)", strconv.FormatFloat(n.(float64), 'g', -1, 64))
	case string(SchemaBoolean):
		return fmt.Sprintf("a boolean (%t)", n.(bool))
	}
	return article(kind)
}

// equalValues compares two normalized values.
func equalValues(a, b any) bool { return reflect.DeepEqual(a, b) }

// equalProperties compares two normalized property maps; nil equals empty.
func equalProperties(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || !equalValues(av, bv) {
			return false
		}
	}
	return true
}

// holds reports whether a device's value v meets the condition "v op want".
// Both values come from events (numbers are float64) or are normalized first.
func holds(op Op, v, want any) bool {
	v, want = norm(v), norm(want)
	switch op {
	case OpEq:
		return equalValues(v, want)
	case OpNe:
		return !equalValues(v, want)
	case OpLt, OpLe, OpGt, OpGe:
		c, ok := compare(v, want)
		if !ok {
			return false
		}
		switch op {
		case OpLt:
			return c < 0
		case OpLe:
			return c <= 0
		case OpGt:
			return c > 0
		default:
			return c >= 0
		}
	case OpContains:
		w, ok := want.(string)
		if !ok {
			return false
		}
		switch x := v.(type) {
		case string:
			return strings.Contains(x, w)
		case map[string]any:
			_, has := x[w]
			return has
		}
		return false
	}
	return false
}

// norm normalizes v unless it already is in normal form: values read from
// events are, and membership checks run for every device, so they should
// not copy objects for nothing.
func norm(v any) any {
	switch v.(type) {
	case nil, float64, string, bool, map[string]any, []any:
		return v
	}
	n, _, _ := normalize(v)
	return n
}

// compare orders two numbers numerically or two strings byte-wise.
func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	}
	return 0, false
}
