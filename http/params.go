package http

import (
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fleetjobs/fleetjobs/domain"
)

// MaxIDLength is the longest ID (template, device, set, job) the API
// accepts. IDs become stream names and Redis keys, so they are bounded and
// drawn from a small alphabet that needs no escaping anywhere.
const MaxIDLength = 128

// validID reports whether s is an ID the domain accepts (domain.CheckID: 1
// to MaxIDLength characters of [A-Za-z0-9._:@-]). The HTTP layer asks the
// domain rather than keeping its own alphabet, so that an ID the commands
// would accept is never refused at the edge, nor the other way round.
func validID(s string) bool {
	return len(s) <= MaxIDLength && domain.CheckID("id", s) == nil
}

// idMessage is what a bad ID is told.
const idMessage = "must be 1 to 128 characters of A-Z a-z 0-9 - _ . : @"

// checkID adds a FieldError naming field when id is not a valid ID.
func checkID(fe *fieldErrors, field, id string) {
	if !validID(id) {
		fe.add(field, idMessage)
	}
}

// pathIDs returns the named path parameters, each checked to be an ID;
// a bad one is a 400 naming the parameter.
func pathIDs(c echo.Context, names ...string) ([]string, error) {
	var fe fieldErrors
	ids := make([]string, len(names))
	for i, n := range names {
		ids[i] = c.Param(n)
		checkID(&fe, n, ids[i])
	}
	return ids, fe.err()
}

// pathID is pathIDs for one parameter.
func pathID(c echo.Context, name string) (string, error) {
	ids, err := pathIDs(c, name)
	if err != nil {
		return "", err
	}
	return ids[0], nil
}

// Paging limits of every list (API.md).
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 1000
	maxCursorLength  = 1024
)

// Page is the paging of a list query: at most Limit items after Cursor
// ("" is the first page). The cursor is opaque to the HTTP layer: it is
// whatever the read model returned as Next.
type Page struct {
	Limit  int
	Cursor string
}

// pageOf reads ?limit= (default 50, a whole number from 1 to 1000) and ?cursor= (opaque,
// printable ASCII, at most 1024 bytes); a bad one is a 400 naming it.
func pageOf(c echo.Context) (Page, error) {
	p := Page{Limit: DefaultPageLimit, Cursor: c.QueryParam("cursor")}
	var fe fieldErrors
	for _, name := range []string{"limit", "cursor"} {
		if len(c.QueryParams()[name]) > 1 {
			fe.add(name, "is given more than once; give it once")
		}
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			fe.add("limit", wholeMessage(span{lo: 1, hi: MaxPageLimit, ok: true}, reflect.TypeFor[int](), v))
		} else {
			p.Limit = n
		}
	}
	if !validCursor(p.Cursor) {
		fe.add("cursor", "is not a cursor this API returned")
	}
	return p, fe.err()
}

func validCursor(s string) bool {
	if len(s) > maxCursorLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// fieldErrors collects the problems of one request, then becomes one
// ValidationError (or nil).
type fieldErrors struct {
	list []FieldError
}

func (fe *fieldErrors) add(field, msg string) {
	if len(fe.list) < maxFieldErrors {
		fe.list = append(fe.list, FieldError{Field: field, Message: msg})
	}
}

func (fe *fieldErrors) addAll(list []FieldError) {
	for _, f := range list {
		fe.add(f.Field, f.Message)
	}
}

func (fe *fieldErrors) err() error {
	if len(fe.list) == 0 {
		return nil
	}
	return &ValidationError{Fields: fe.list}
}

func itoa(i int) string { return strconv.Itoa(i) }

// checkQuery refuses a query string that does not parse (a bad %-escape, a
// semicolon), naming the parameter: Echo's QueryParam would silently drop
// it and the request would go on with a default (a page of 50 for a
// ?limit=%zz).
func checkQuery(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw := c.Request().URL.RawQuery
		if raw == "" {
			return next(c)
		}
		var fe fieldErrors
		for _, pair := range strings.Split(raw, "&") {
			if pair == "" {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			name, err := url.QueryUnescape(k)
			if err != nil {
				fe.add("query", fmt.Sprintf("parameter %q: %v", k, err))
				continue
			}
			if strings.Contains(pair, ";") {
				fe.add(name, "contains a semicolon; separate parameters with &")
				continue
			}
			if _, err := url.QueryUnescape(v); err != nil {
				fe.add(name, err.Error())
			}
		}
		if err := fe.err(); err != nil {
			return err
		}
		return next(c)
	}
}
