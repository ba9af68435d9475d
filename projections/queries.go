package projections

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ErrNotFound is returned (wrapped) by the queries for a template, device or
// device set that does not exist (or was deleted).
var ErrNotFound = errors.New("not found")

// Paging limits of every list (API.md).
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// PageRequest asks for one page of a list.
type PageRequest struct {
	// Limit is the most items to return: 0 means DefaultLimit; more than
	// MaxLimit, or negative, is a *PageError.
	Limit int
	// Cursor is the Next of the previous page; empty for the first page.
	Cursor string
}

// Page is one page of a list, ordered by ID.
type Page[T any] struct {
	Items []T
	// Next is the cursor of the following page, empty on the last page.
	// It is opaque to callers and stays valid when items are added or
	// removed: the next page starts after the last ID of this one.
	Next string
}

// PageError is returned by the list queries for a PageRequest they cannot
// serve; Field is "limit" or "cursor", as the HTTP query parameters are
// named.
type PageError struct {
	Field  string
	Reason string
}

func (e *PageError) Error() string { return e.Field + ": " + e.Reason }

// activeTTL is how long a Queries trusts the active version it read: a
// rebuild deletes the old version's keys well after switching, so a reader
// that still uses it for this long reads consistent, if slightly older,
// data.
const activeTTL = time.Second

// Queries answers the HTTP layer's questions from the read models, reading
// the active version of each projection. It is safe for concurrent use.
type Queries struct {
	rdb  redis.UniversalClient
	root string
	now  func() time.Time

	mu     sync.Mutex
	active map[string]activeVersion

	versions func(name string) string // nil, or "" for a name: read the active key

	applied func() eventstore.Position // nil: rendered pages are not kept
	pages   pageCache
}

type activeVersion struct {
	prefix string
	read   time.Time
}

// NewQueries returns the queries over the keys under root (as given to
// NewWriter) in rdb; now is the clock of the active-version cache and of
// the 30-day window.
func NewQueries(rdb redis.UniversalClient, root string, now func() time.Time, opts ...QueriesOption) *Queries {
	q := &Queries{rdb: rdb, root: root, now: now, active: make(map[string]activeVersion)}
	for _, o := range opts {
		o(q)
	}
	return q
}

// WithVersions gives the Queries the version of each projection to read,
// by name: the Runner's Version, in the process that runs it. With it,
// queries read the version that Runner has applied up to its Position,
// rather than the active key (cached for a second), so a request that
// waited for its consistency token never reads a version switched away
// from by a rebuild, which the Runner no longer writes. A name it answers
// "" for is read from the active key as without it.
func WithVersions(versions func(name string) string) QueriesOption {
	return func(q *Queries) { q.versions = versions }
}

// DefaultVersion is the version a projection is written to when no
// rebuild has made another one active.
const DefaultVersion = "1"

// prefix returns the key prefix of the active version of projection name.
func (q *Queries) prefix(ctx context.Context, name string) (string, error) {
	if q.versions != nil {
		if v := q.versions(name); v != "" {
			return Prefix(q.root, name, v), nil
		}
	}
	now := q.now()
	q.mu.Lock()
	a, ok := q.active[name]
	q.mu.Unlock()
	if ok && now.Sub(a.read) < activeTTL && now.Sub(a.read) >= 0 {
		return a.prefix, nil
	}
	v, err := q.rdb.Get(ctx, ActiveKey(q.root, name)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		// Nothing projected yet: the default version's keys, all
		// missing, give empty answers. Not cached, so the first
		// projection is seen at once.
		return Prefix(q.root, name, DefaultVersion), nil
	case err != nil:
		return "", fmt.Errorf("read active version of projection %s: %w", name, err)
	}
	p := Prefix(q.root, name, v)
	q.mu.Lock()
	q.active[name] = activeVersion{prefix: p, read: now}
	q.mu.Unlock()
	return p, nil
}

// Template returns template id; ErrNotFound if it does not exist.
func (q *Queries) Template(ctx context.Context, id string) (Template, error) {
	return getDoc[Template](ctx, q, "template", id, TemplateKey(id))
}

// Templates lists the templates by ID.
func (q *Queries) Templates(ctx context.Context, req PageRequest) (Page[Template], error) {
	return listDocs[Template](ctx, q, templatesKey, TemplateKey, req)
}

// Device returns device id; ErrNotFound if it does not exist or was
// deleted.
func (q *Queries) Device(ctx context.Context, id string) (Device, error) {
	return getDoc[Device](ctx, q, "device", id, DeviceKey(id))
}

// Devices lists the devices by ID.
func (q *Queries) Devices(ctx context.Context, req PageRequest) (Page[Device], error) {
	return listDocs[Device](ctx, q, devicesKey, DeviceKey, req)
}

// TemplateDevices lists the devices using template id, by ID. Devices of a
// deleted template are still listed under it (they are unusable until it is
// published again); an unknown template has no devices.
func (q *Queries) TemplateDevices(ctx context.Context, templateID string, req PageRequest) (Page[Device], error) {
	return listDocs[Device](ctx, q, TemplateDevicesKey(templateID), DeviceKey, req)
}

// DeviceSet returns device set id with its broken state; ErrNotFound if it
// does not exist.
func (q *Queries) DeviceSet(ctx context.Context, id string) (DeviceSet, error) {
	return getDoc[DeviceSet](ctx, q, "device set", id, SetKey(id))
}

// DeviceSets lists the device sets by ID.
func (q *Queries) DeviceSets(ctx context.Context, req PageRequest) (Page[DeviceSet], error) {
	return listDocs[DeviceSet](ctx, q, setsKey, SetKey, req)
}

// SetMembers lists the members of device set id by ID: never a deleted
// device, and none for a broken set (DeviceSet says why). ErrNotFound if
// the set does not exist.
func (q *Queries) SetMembers(ctx context.Context, setID string, req PageRequest) (Page[Device], error) {
	if _, err := q.DeviceSet(ctx, setID); err != nil {
		return Page[Device]{}, err
	}
	return listDocs[Device](ctx, q, SetMembersKey(setID), DeviceKey, req)
}

// Member is a member of a device set as a job targets it.
type Member struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// EachSetMember calls fn with the members of device set id, in ID order,
// a few thousand at a time, until the last or fn's first error (returned
// as is): how a job resolves "all members" of a set of any size. It reads
// the next members from Redis while fn and the decoding of the current
// ones run. ErrNotFound if the set does not exist.
func (q *Queries) EachSetMember(ctx context.Context, setID string, fn func([]Member) error) error {
	if _, err := q.DeviceSet(ctx, setID); err != nil {
		return err
	}
	prefix, err := q.prefix(ctx, DevicesProjection)
	if err != nil {
		return err
	}
	var fnErr error
	err = walkDocs(ctx, NewReader(q.rdb, prefix), SetMembersKey(setID), DeviceKey, func(ids []string, docs map[string]string) error {
		members := make([]Member, 0, len(ids))
		for _, id := range ids {
			doc, ok := docs[id]
			if !ok {
				continue // deleted between the two reads
			}
			m, err := decodeMember(doc)
			if err != nil {
				return fmt.Errorf("decode device %s: %w", id, err)
			}
			members = append(members, m)
		}
		if len(members) == 0 {
			return nil
		}
		fnErr = fn(members)
		return fnErr
	})
	switch {
	case err == nil:
		return nil
	case fnErr != nil:
		return fnErr // fn's own error, as is
	default:
		return fmt.Errorf("members of device set %s: %w", setID, err)
	}
}

// decodeMember reads the ID and name of a device document. The documents
// start with them (deviceJSON), so the usual ones, whose two strings have
// no escapes, are read without a JSON decoder; any other goes through
// encoding/json. The strings are copied: a member outlives the document.
func decodeMember(doc string) (Member, error) {
	if rest, ok := strings.CutPrefix(doc, `{"id":"`); ok {
		if i := strings.IndexByte(rest, '"'); i >= 0 && strings.IndexByte(rest[:i], '\\') < 0 {
			id := rest[:i]
			if rest, ok := strings.CutPrefix(rest[i+1:], `,"name":"`); ok {
				if j := strings.IndexByte(rest, '"'); j >= 0 && strings.IndexByte(rest[:j], '\\') < 0 {
					return Member{ID: strings.Clone(id), Name: strings.Clone(rest[:j])}, nil
				}
			}
		}
	}
	var m Member
	err := json.Unmarshal([]byte(doc), &m)
	return m, err
}

func getDoc[T any](ctx context.Context, q *Queries, what, id, key string) (T, error) {
	var v T
	prefix, err := q.prefix(ctx, DevicesProjection)
	if err != nil {
		return v, err
	}
	s, err := q.rdb.Get(ctx, prefix+key).Result()
	if errors.Is(err, redis.Nil) {
		return v, fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("read %s %q: %w", what, id, err)
	}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return v, fmt.Errorf("decode %s %q: %w", what, id, err)
	}
	return v, nil
}

func listDocs[T any](ctx context.Context, q *Queries, index string, key func(string) string, req PageRequest) (Page[T], error) {
	limit, after, err := parsePage(req)
	if err != nil {
		return Page[T]{}, err
	}
	prefix, err := q.prefix(ctx, DevicesProjection)
	if err != nil {
		return Page[T]{}, err
	}
	start := "-"
	if after != "" {
		start = "(" + after
	}
	ids, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: prefix + index, Start: start, Stop: "+", ByLex: true, Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return Page[T]{}, fmt.Errorf("list %s: %w", index, err)
	}
	var next string
	if len(ids) > limit {
		ids = ids[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(ids[limit-1]))
	}
	docs, err := readDocs[T](ctx, NewReader(q.rdb, prefix), ids, key)
	if err != nil {
		return Page[T]{}, fmt.Errorf("list %s: %w", index, err)
	}
	items := make([]T, 0, len(ids))
	for _, id := range ids {
		// A document deleted between the two reads is left out: the
		// next read of the list will not have it either.
		if d, ok := docs[id]; ok {
			items = append(items, d)
		}
	}
	return Page[T]{Items: items, Next: next}, nil
}

func parsePage(req PageRequest) (limit int, after string, err error) {
	switch {
	case req.Limit == 0:
		limit = DefaultLimit
	case req.Limit < 0 || req.Limit > MaxLimit:
		return 0, "", &PageError{Field: "limit", Reason: fmt.Sprintf("must be between 1 and %d", MaxLimit)}
	default:
		limit = req.Limit
	}
	if req.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(req.Cursor)
		if err != nil || len(b) == 0 || !utf8.Valid(b) {
			return 0, "", &PageError{Field: "cursor", Reason: "is not a cursor this service handed out"}
		}
		after = string(b)
	}
	return limit, after, nil
}
