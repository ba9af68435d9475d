package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// Body limits. Both are defaults of Config; the import route takes many
// devices in one request, so it gets the larger one.
const (
	DefaultMaxBodyBytes   = 1 << 20  // 1 MiB, any JSON body
	DefaultMaxImportBytes = 64 << 20 // 64 MiB, POST /devices:import
)

// maxFieldErrors bounds the errors one answer lists: a pathological body
// must not produce a pathological answer.
const maxFieldErrors = 100

// bodyField is the FieldError.Field of problems with the body as a whole
// (malformed JSON, trailing data): they belong to no field.
const bodyField = "body"

// ErrTooLarge is a request body over the route's limit: 413.
var ErrTooLarge = errors.New("request body too large")

// ErrUnsupportedMediaType is a body in a content type the route does not
// take: 415.
var ErrUnsupportedMediaType = errors.New("unsupported media type")

// Media types the API speaks.
const (
	MIMEJSON    = "application/json"
	MIMENDJSON  = "application/x-ndjson"
	MIMECSV     = "text/csv"
	MIMEProblem = "application/problem+json"
)

// mediaType is the request's media type, lowercased and without parameters,
// or "" if it has none or it does not parse.
func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// requireMediaType checks the request's content type against the accepted
// ones and returns the one it has. JSON also matches any +json type.
func requireMediaType(r *http.Request, accepted ...string) (string, error) {
	mt := mediaType(r)
	for _, a := range accepted {
		if mt == a || (a == MIMEJSON && strings.HasSuffix(mt, "+json")) {
			return a, nil
		}
	}
	got := r.Header.Get("Content-Type")
	if got == "" {
		got = "none"
	}
	return "", fmt.Errorf("%w: Content-Type %s; want %s", ErrUnsupportedMediaType, got, strings.Join(accepted, " or "))
}

// readBody reads the whole request body, refusing more than limit bytes
// with ErrTooLarge. A declared Content-Length over the limit is refused
// before reading anything.
func readBody(c echo.Context, limit int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: over the limit of %d bytes", ErrTooLarge, limit)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	noteBody(c, body, nil)
	return body, nil
}

// bindJSON reads a JSON body (content type checked, size bounded by the
// server's JSON limit) into dst, strictly: see binder.decode.
func (s *Server) bindJSON(c echo.Context, dst any) error {
	if _, err := requireMediaType(c.Request(), MIMEJSON); err != nil {
		return err
	}
	body, err := readBody(c, s.maxBody)
	if err != nil {
		return err
	}
	if fields := s.binder.decode(body, dst, ""); len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	noteBody(c, body, dst)
	return nil
}

// bindOptionalJSON is bindJSON for a route whose body may be left out:
// an empty body binds nothing and is no error (false); any other body must
// be JSON that binds.
func (s *Server) bindOptionalJSON(c echo.Context, dst any) (bool, error) {
	body, err := readBody(c, s.maxBody)
	if err != nil || len(body) == 0 {
		return false, err
	}
	if _, err := requireMediaType(c.Request(), MIMEJSON); err != nil {
		return false, err
	}
	if fields := s.binder.decode(body, dst, ""); len(fields) > 0 {
		return false, &ValidationError{Fields: fields}
	}
	noteBody(c, body, dst)
	return true, nil
}

// noBodyMessage is what a body sent to a route that takes none is told.
const noBodyMessage = "this request takes no body; send none"

// refuseBody is the middleware of the routes that take no body (DELETEs,
// POST .../{id}:issueKey): a body sent is a mistake (another request
// meant, a client that sends what it should not), refused with a 400
// naming "body" rather than ignored.
func refuseBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.ContentLength > 0 {
			return &ValidationError{Fields: []FieldError{{Field: bodyField, Message: noBodyMessage}}}
		}
		if r.ContentLength < 0 { // sent chunked: see whether anything comes
			var one [1]byte
			if n, _ := io.ReadFull(r.Body, one[:]); n > 0 {
				return &ValidationError{Fields: []FieldError{{Field: bodyField, Message: noBodyMessage}}}
			}
		}
		return next(c)
	}
}

// binder decodes JSON strictly into Go structs: malformed JSON, trailing
// data, fields the struct does not have (names match exactly, unlike
// encoding/json), values of the wrong type, null where a value is
// required, numbers that are not whole where a whole number is wanted
// (wholeMessage), numbers out of range anywhere, property values
// included, and what encoding/json would record otherwise than sent or
// clients could not read back: strings that are not UTF-8 text
// (textMessage), integers beyond 2^53 (inexactMessage), free values nested
// deeper than MaxJSONDepth: each is a FieldError naming the field
// by its path ("properties.fanSpeed", "conditions[1].op"). encoding/json
// stops at the first problem and names unknown fields without their path,
// so the body is first decoded generically and walked against dst's type;
// only a body that passes is decoded into dst.
//
// It caches the JSON field names of each struct type it meets.
type binder struct {
	fields sync.Map // reflect.Type -> map[string]reflect.StructField
}

// decode decodes data into dst (a pointer), naming fields under prefix
// (used for the rows of an import: "rows[3]"). It returns the problems
// found, nil if none.
func (b *binder) decode(data []byte, dst any, prefix string) []FieldError {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []FieldError{{Field: orBody(prefix), Message: jsonSyntaxMessage(err, data)}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return []FieldError{{Field: orBody(prefix), Message: fmt.Sprintf("unexpected data after the JSON value, at byte %d", dec.InputOffset())}}
	}
	// Duplicate keys are looked for in a request's body only (an import's
	// rows are many and machine-made); text that encoding/json would
	// change is looked for wherever the bytes hint at it.
	if dups := prefix == ""; dups || suspectText(data) {
		if fe, ok := rawProblem(data, dups); ok {
			fe.Field = joinPrefix(prefix, fe.Field)
			return []FieldError{fe}
		}
	}
	var fields []FieldError
	b.walk(v, reflect.TypeOf(dst).Elem(), prefix, span{}, &fields)
	if len(fields) > 0 {
		return fields
	}
	if err := json.Unmarshal(data, dst); err != nil {
		// The walk accepted it, so this is a type the walk does not know
		// (a custom unmarshaler): report what encoding/json says.
		return []FieldError{{Field: orBody(prefix), Message: err.Error()}}
	}
	return nil
}

func orBody(prefix string) string {
	if prefix == "" {
		return bodyField
	}
	return prefix
}

func jsonSyntaxMessage(err error, data []byte) string {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return "empty body: want a JSON value"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("malformed JSON: unexpected end at byte %d", len(data))
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	return "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	wholeRangerType = reflect.TypeFor[wholeRanger]()
)

// wholeRanger is a body type whose whole-number fields have a range the
// domain defines: a value that is no whole number is told that range,
// where the field's Go type would only give its own (int64's, which no
// field takes). The domain still checks the range itself.
type wholeRanger interface {
	// wholeRange is the range of the field of JSON name field, ok false if
	// it has none.
	wholeRange(field string) (lo, hi int64, ok bool)
}

// span is a whole-number field's range, if ok.
type span struct {
	lo, hi int64
	ok     bool
}

// wholeMessage is what a whole-number field of type t is told when its
// value is not one it holds: n, the number as written ("" for a value that
// is no number). It must be a whole number, in r when the field has a
// range, never in the Go type's own range, which is not the field's; a
// whole number in range written with a fraction or exponent (1e3, 2.0) is
// shown in digits, and one too large for a field without a range is said
// to be out of range.
func wholeMessage(r span, t reflect.Type, n string) string {
	msg := "must be a whole number"
	if r.ok {
		msg += fmt.Sprintf(" from %d to %d", r.lo, r.hi)
	}
	if n == "" {
		return msg
	}
	f, err := strconv.ParseFloat(n, 64)
	whole := err == nil && f == math.Trunc(f)
	switch {
	case whole && math.Abs(f) < 1<<53 && holds(t, r, f) && strings.ContainsAny(n, ".eE"):
		return fmt.Sprintf("%s, written without a fraction or exponent: %d, not %s", msg, int64(f), shortNumber(n))
	case !r.ok && (whole || err != nil):
		return "is out of range, got " + shortNumber(n)
	}
	return msg + ", got " + shortNumber(n)
}

// holds reports whether a field of type t with range r takes the whole
// number f (less than 2^53 in size).
func holds(t reflect.Type, r span, f float64) bool {
	switch {
	case r.ok:
		return f >= float64(r.lo) && f <= float64(r.hi)
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		return f >= 0 && !reflect.Zero(t).OverflowUint(uint64(f))
	}
	return !reflect.Zero(t).OverflowInt(int64(f))
}

// numberMessage is what a number n that its field cannot hold is told:
// one too large for a float64 anywhere (encoding/json refuses it, even
// where any value goes), or for a float32 field.
func numberMessage(n string, limit float64) string {
	return fmt.Sprintf("is out of range: a number must be less than %.2g in size, got %s", limit, shortNumber(n))
}

// shortNumber is n, cut if it is long: a message quotes what was sent, not
// a megabyte of digits.
func shortNumber(n string) string {
	const maxShown = 24
	if len(n) <= maxShown {
		return n
	}
	return n[:maxShown] + "..."
}

// MaxJSONDepth bounds how deeply a free JSON value (an operation's value,
// a device's property) may nest objects and arrays: {"a":[1]} is 2 levels
// deep. Deeper values were accepted and recorded, and then broke the
// answers that show them for standard clients (Go's encoding/json stops at
// 10,000 levels, Python's json at about 1,000).
const MaxJSONDepth = 32

// maxExactInteger is 2^53: a whole number written without a fraction or
// exponent beyond it in size is not kept exactly by a float64, which is how
// JSON numbers are kept (9007199254740993 would be recorded as
// 9007199254740992).
const maxExactInteger = 1 << 53

// inexactMessage is what an integer that a float64 would change is told.
var inexactMessage = fmt.Sprintf("must be between %d and %d to be kept exactly; send larger numbers as strings", -maxExactInteger, maxExactInteger)

// textMessage is what a string that is not valid UTF-8 (or holds a lone
// surrogate escape such as \ud800) is told: encoding/json would record it
// with U+FFFD in place of what was sent.
const textMessage = "must be valid UTF-8 text: it holds bytes that are not UTF-8, or an escaped lone surrogate (\\ud800 to \\udfff not in a pair)"

// checkFree adds a FieldError for a free JSON value v (under path) that
// would not be kept as sent or that nests deeper than MaxJSONDepth, and
// for every number in it that no float64 holds (encoding/json would refuse
// it when decoding into any, naming no field) or that is an integer it
// would not keep exactly (exactNumber).
func checkFree(v any, path string, fields *[]FieldError) {
	if d := depth(v, MaxJSONDepth+1); d > MaxJSONDepth {
		add(fields, path, fmt.Sprintf("is nested more than %d levels deep (objects and arrays); at most %d are allowed", MaxJSONDepth, MaxJSONDepth))
		return
	}
	checkNumbers(v, path, fields)
}

// depth is how many levels of objects and arrays v nests (0 for a scalar),
// counting no further than limit.
func depth(v any, limit int) int {
	if limit == 0 {
		return 0
	}
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			if d = max(d, depth(x, limit-1)); d == limit-1 {
				break
			}
		}
	case []any:
		for _, x := range v {
			if d = max(d, depth(x, limit-1)); d == limit-1 {
				break
			}
		}
	default:
		return 0
	}
	return d + 1
}

func checkNumbers(v any, path string, fields *[]FieldError) {
	switch v := v.(type) {
	case json.Number:
		if _, err := strconv.ParseFloat(string(v), 64); err != nil {
			add(fields, path, numberMessage(string(v), math.MaxFloat64))
		} else if !exactNumber(string(v)) {
			add(fields, path, inexactMessage+", got "+shortNumber(string(v)))
		}
	case map[string]any:
		for _, k := range sortedKeys(v) {
			checkNumbers(v[k], join(path, k), fields)
		}
	case []any:
		for i, item := range v {
			checkNumbers(item, path+"["+strconv.Itoa(i)+"]", fields)
		}
	}
}

// exactNumber reports whether the JSON number n is kept as written by a
// float64 in the way that matters: an integer literal (no fraction, no
// exponent) must be at most 2^53 in size. A number with a fraction or an
// exponent is taken as the double it denotes, as JSON parsers do.
func exactNumber(n string) bool {
	if strings.ContainsAny(n, ".eE") {
		return true
	}
	i, err := strconv.ParseInt(n, 10, 64)
	return err == nil && i >= -maxExactInteger && i <= maxExactInteger
}

func add(fields *[]FieldError, path, msg string) {
	if len(*fields) < maxFieldErrors {
		*fields = append(*fields, FieldError{Field: orBody(path), Message: msg})
	}
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// walk checks the generic JSON value v against type t; r is the range of
// a whole-number field (wholeRanger).
func (b *binder) walk(v any, t reflect.Type, path string, r span, fields *[]FieldError) {
	if t == rawMessageType || t.Kind() == reflect.Interface {
		checkFree(v, path, fields) // any JSON value that decodes, kept as sent
		return
	}
	if t.Kind() == reflect.Pointer {
		if v == nil {
			return
		}
		b.walk(v, t.Elem(), path, r, fields)
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return // its own rules: encoding/json reports on them
	}
	if v == nil {
		switch t.Kind() {
		case reflect.Slice, reflect.Map:
			return // null is an empty list or object
		}
		add(fields, path, "must be "+describe(t)+", not null")
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			add(fields, path, "must be "+describe(t))
			return
		}
		known := b.structFields(t)
		var ranger wholeRanger
		if t.Implements(wholeRangerType) {
			ranger = reflect.Zero(t).Interface().(wholeRanger)
		}
		// Sorted keys: the same body always gives the same errors, in order.
		for _, k := range sortedKeys(obj) {
			f, ok := known[k]
			if !ok {
				add(fields, join(path, k), "unknown field")
				continue
			}
			var fr span
			if ranger != nil {
				fr.lo, fr.hi, fr.ok = ranger.wholeRange(k)
			}
			b.walk(obj[k], f.Type, join(path, k), fr, fields)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			add(fields, path, "must be "+describe(t))
			return
		}
		for _, k := range sortedKeys(obj) {
			b.walk(obj[k], t.Elem(), join(path, k), span{}, fields)
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			add(fields, path, "must be "+describe(t))
			return
		}
		if t.Kind() == reflect.Array && len(arr) != t.Len() {
			add(fields, path, fmt.Sprintf("must have %d items", t.Len()))
			return
		}
		for i, item := range arr {
			b.walk(item, t.Elem(), path+"["+strconv.Itoa(i)+"]", span{}, fields)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			add(fields, path, "must be a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			add(fields, path, "must be true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			add(fields, path, wholeMessage(r, t, ""))
			return
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || reflect.Zero(t).OverflowInt(i) {
			add(fields, path, wholeMessage(r, t, string(n)))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			add(fields, path, wholeMessage(r, t, ""))
			return
		}
		u, err := strconv.ParseUint(string(n), 10, 64)
		if err != nil || reflect.Zero(t).OverflowUint(u) {
			add(fields, path, wholeMessage(r, t, string(n)))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			add(fields, path, "must be a number")
			return
		}
		f, err := strconv.ParseFloat(string(n), 64)
		switch {
		case err != nil || math.IsInf(f, 0):
			add(fields, path, numberMessage(string(n), math.MaxFloat64))
		case t.Kind() == reflect.Float32 && math.Abs(f) > math.MaxFloat32:
			add(fields, path, numberMessage(string(n), math.MaxFloat32))
		case !exactNumber(string(n)):
			add(fields, path, inexactMessage+", got "+shortNumber(string(n)))
		}
	default:
		add(fields, path, "cannot be set")
	}
}

func describe(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	}
	return "a value"
}

// structFields maps the JSON names of t's exported fields to the fields,
// as encoding/json names them (the json tag's name, else the Go name;
// "-" skipped). Request types do not embed structs, so promotion is not
// handled.
func (b *binder) structFields(t reflect.Type) map[string]reflect.StructField {
	if m, ok := b.fields.Load(t); ok {
		return m.(map[string]reflect.StructField)
	}
	m := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		m[name] = f
	}
	b.fields.Store(t, m)
	return m
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// joinPrefix puts an import row's prefix ("rows[3]") before a path found
// in the row ("name"); the path "" is the row itself.
func joinPrefix(prefix, path string) string {
	switch {
	case prefix == "":
		return orBody(path)
	case path == "":
		return prefix
	}
	return prefix + "." + path
}

// suspectText reports whether data may hold a string that encoding/json
// would not keep as sent: bytes that are not UTF-8, or an escape of a
// surrogate ("\ud800"), which is only valid as half of a pair. Most
// bodies have neither, and skip rawProblem's pass over their tokens.
func suspectText(data []byte) bool {
	if !utf8.Valid(data) {
		return true
	}
	for i := 0; ; i++ {
		j := bytes.Index(data[i:], []byte(`\u`))
		if j < 0 {
			return false
		}
		i += j
		if i+3 < len(data) && (data[i+2] == 'd' || data[i+2] == 'D') && strings.IndexByte("89abcdefABCDEF", data[i+3]) >= 0 {
			return true
		}
	}
}

// validText reports whether raw, the bytes between a JSON string's quotes,
// is valid UTF-8 whose \u escapes pair every surrogate.
func validText(raw []byte) bool {
	if !utf8.Valid(raw) {
		return false
	}
	pendingHigh := false // the last escape was a high surrogate
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			if pendingHigh {
				return false
			}
			continue
		}
		i++ // the escaped character
		if i >= len(raw) || raw[i] != 'u' || i+5 > len(raw) {
			if pendingHigh {
				return false
			}
			continue
		}
		r, err := strconv.ParseUint(string(raw[i+1:i+5]), 16, 32)
		if err != nil {
			return false
		}
		i += 4
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if pendingHigh {
				return false
			}
			pendingHigh = true
		case r >= 0xDC00 && r <= 0xDFFF:
			if !pendingHigh {
				return false
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return false
			}
		}
	}
	return !pendingHigh
}

// rawProblem finds, in data (valid JSON), the first string (key or value)
// that is not valid text (validText), and with dups the first key that
// appears twice in one object (encoding/json would keep the last value
// without a word). It returns the problem naming its path
// ("properties.city", "conditions[1].op"; "" for the value as a whole).
func rawProblem(data []byte, dups bool) (FieldError, bool) {
	type frame struct {
		object bool
		path   string
		keys   map[string]bool
		key    string // the object's key whose value comes next, unless wantKey
		// wantKey: the object's next token is a key.
		wantKey bool
		index   int // the array's next element
	}
	var stack []*frame
	// at is the path of the value the next token starts.
	at := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.object {
			return join(f.path, f.key)
		}
		return f.path + "[" + strconv.Itoa(f.index) + "]"
	}
	// done ends the value the last token closed or was.
	done := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.object {
			f.wantKey = true
		} else {
			f.index++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return FieldError{}, false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, &frame{object: t == '{', wantKey: t == '{', path: at(), keys: map[string]bool{}})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
			continue
		case string:
			// The token's bytes: separators and spaces, then the quoted string.
			raw := data[start:dec.InputOffset()]
			if q := bytes.IndexByte(raw, '"'); q >= 0 && len(raw) >= q+2 {
				raw = raw[q+1 : len(raw)-1]
			}
			top := (*frame)(nil)
			if len(stack) > 0 {
				top = stack[len(stack)-1]
			}
			if top != nil && top.object && top.wantKey {
				if !validText(raw) {
					return FieldError{Field: top.path, Message: "has a key that is not valid UTF-8 text"}, true
				}
				if dups && top.keys[t] {
					return FieldError{Field: join(top.path, t), Message: "is given twice in one object"}, true
				}
				top.keys[t] = true
				top.key, top.wantKey = t, false
				continue
			}
			if !validText(raw) {
				return FieldError{Field: at(), Message: textMessage}, true
			}
		}
		done()
	}
}
