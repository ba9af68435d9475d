package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// QueriesOption configures NewQueries.
type QueriesOption func(*Queries)

// WithApplied gives the Queries the position up to which the read models
// are known to be applied (the Runner's Position, in the process that runs
// it). With it, JobsJSON and JobDevicesJSON keep the pages they rendered
// and answer again from memory, without Redis, while that position stays
// where it was when the page was read: the read models cannot have
// changed since. A page read at position p holds everything applied up to
// p, so a request that waited for its consistency token first (position
// at or past the token) is never answered from a page older than its
// write.
func WithApplied(applied func() eventstore.Position) QueriesOption {
	return func(q *Queries) { q.applied = applied }
}

// pageMaxAge bounds how long a rendered page is trusted while the applied
// position does not move. In one process the position moves with every
// commit; with several instances on one Redis, another instance may commit
// first and this one's position follows only once its own runner has
// caught up, so this bounds that staleness as activeTTL does for versions.
const pageMaxAge = time.Second

// maxPages bounds the page cache: past it, the cache starts afresh. Pages
// are a few tens of KiB; clients page through a job's devices with cursors,
// so the set of hot pages is small, and a scan through a million-device job
// must not grow memory without bound.
const maxPages = 4096

// pageCache holds rendered pages by query. It is safe for concurrent use.
type pageCache struct {
	mu    sync.RWMutex
	pages map[string]page
}

// page is one rendered answer and what it is valid for.
type page struct {
	at    eventstore.Position // applied position before it was read
	read  time.Time           // when it was read, by the Queries' clock
	until time.Time           // when the 30-day window changes it; zero means never
	body  []byte
}

func (c *pageCache) get(key string, at eventstore.Position, now time.Time) ([]byte, bool) {
	c.mu.RLock()
	p, ok := c.pages[key]
	c.mu.RUnlock()
	if !ok || p.at != at || now.Before(p.read) || now.Sub(p.read) >= pageMaxAge ||
		(!p.until.IsZero() && !now.Before(p.until)) {
		return nil, false
	}
	return p.body, true
}

func (c *pageCache) put(key string, p page) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pages == nil || len(c.pages) >= maxPages {
		c.pages = make(map[string]page)
	}
	if old, ok := c.pages[key]; ok && old.at.Compare(p.at) > 0 {
		return // a newer read got here first
	}
	c.pages[key] = p
}

// cached answers key from the page cache when the applied position has not
// moved since it was rendered, else renders it with fill (which returns
// the body and when the 30-day window changes it) and keeps it.
func (q *Queries) cached(key string, fill func() ([]byte, time.Time, error)) ([]byte, error) {
	if q.applied == nil {
		b, _, err := fill()
		return b, err
	}
	// The position is read before the read models: what fill reads is at
	// least as new as it.
	at := q.applied()
	now := q.now()
	if b, ok := q.pages.get(key, at, now); ok {
		return b, nil
	}
	b, until, err := fill()
	if err != nil {
		return nil, err
	}
	q.pages.put(key, page{at: at, read: now, until: until, body: b})
	return b, nil
}

// listBody is the API's shape of a list page.
type listBody[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

// JobsJSON is Jobs rendered as the API answers it, {"items":[...],
// "next":"..."} with the fields of Job, ready to be sent as it is. Pages
// are kept while the read models do not change (see WithApplied). Errors
// are those of Jobs.
func (q *Queries) JobsJSON(ctx context.Context, filter JobFilter, req PageRequest) ([]byte, error) {
	prefix, err := q.prefix(ctx, JobsProjection)
	if err != nil {
		return nil, err
	}
	key := "jobs\x00" + prefix + "\x00" + string(filter.Status) + "\x00" + strconv.Itoa(req.Limit) + "\x00" + req.Cursor
	return q.cached(key, func() ([]byte, time.Time, error) {
		p, err := q.Jobs(ctx, filter, req)
		if err != nil {
			return nil, time.Time{}, err
		}
		// The page changes without an event when one of its finished
		// jobs leaves the 30-day window (pending and running jobs never
		// do): it is kept until the first of them would.
		var until time.Time
		for i := range p.Items {
			if at := p.Items[i].UpdatedAt.Add(JobRetention); p.Items[i].Status.Finished() && (until.IsZero() || at.Before(until)) {
				until = at
			}
			if p.Items[i].Operations == nil {
				p.Items[i].Operations = []job.Operation{}
			}
		}
		if p.Next != "" {
			// The job after the page decides whether there is a next
			// page; a page is never kept longer than a job may stay.
			if at := q.now().Add(JobRetention); until.IsZero() || at.Before(until) {
				until = at
			}
		}
		b, err := renderList(p)
		return b, until, err
	})
}

// JobDevicesJSON is JobDevices rendered as the API answers it,
// {"items":[...],"next":"..."} with the fields of JobDevice, ready to be
// sent as it is. Pages are kept while the read models (the jobs and the
// devices projection: a device deleted since shows as deleted) do not
// change (see WithApplied). Errors are those of JobDevices.
func (q *Queries) JobDevicesJSON(ctx context.Context, id string, status job.DeviceStatus, req PageRequest) ([]byte, error) {
	prefix, err := q.prefix(ctx, JobsProjection)
	if err != nil {
		return nil, err
	}
	devPrefix, err := q.prefix(ctx, DevicesProjection)
	if err != nil {
		return nil, err
	}
	key := "jobdevices\x00" + prefix + "\x00" + devPrefix + "\x00" + id + "\x00" + string(status) + "\x00" +
		strconv.Itoa(req.Limit) + "\x00" + req.Cursor
	return q.cached(key, func() ([]byte, time.Time, error) {
		p, until, err := q.jobDevices(ctx, id, status, req)
		if err != nil {
			return nil, time.Time{}, err
		}
		b, err := renderList(p)
		return b, until, err
	})
}

func renderList[T any](p Page[T]) ([]byte, error) {
	items := p.Items
	if items == nil {
		items = []T{}
	}
	b, err := json.Marshal(listBody[T]{Items: items, Next: p.Next})
	if err != nil {
		return nil, fmt.Errorf("render page: %w", err)
	}
	// The newline Echo's JSON encoder ends its answers with: the bytes
	// are the same as the handlers' own rendering.
	return append(b, '\n'), nil
}
