package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/projections"
)

func TestListsArePagedAndStable(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	MustAppend(t, es, "template-vending", vendingTemplate("city"))
	for i := range 25 {
		MustAppend(t, es, fmt.Sprintf("device-d%02d", i), device.Registered{DeviceID: fmt.Sprintf("d%02d", i), Name: "n",
			TemplateID: "vending", Properties: map[string]any{"city": "Seattle"}})
	}
	tok := MustAppend(t, es, "deviceset-all", device.SetDefined{SetID: "all", Name: "All", TemplateID: "vending"})
	r := MustRun(t, es, rdb, root, "1")
	MustReach(t, r.Runner, tok)
	q := projections.NewQueries(rdb, root, time.Now)
	ctx := context.Background()

	var got []string
	req := projections.PageRequest{Limit: 10}
	pages := 0
	for {
		p, err := q.SetMembers(ctx, "all", req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range p.Items {
			got = append(got, d.ID)
		}
		if p.Next == "" {
			break
		}
		req.Cursor = p.Next
		if pages == 1 { // a device added before the cursor does not shift the pages
			tok := MustAppend(t, es, "device-a", device.Registered{DeviceID: "a", Name: "n", TemplateID: "vending"})
			MustReach(t, r.Runner, tok)
		}
	}
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("d%02d", i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members over %d pages (-want +got):\n%s", pages, diff)
	}
	if pages != 3 {
		t.Errorf("%d pages of 10 for 25 members, want 3", pages)
	}

	p, err := q.Devices(ctx, projections.PageRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 26 || p.Next != "" {
		t.Errorf("default page: %d items, next %q; want all 26 (default limit 50), no next", len(p.Items), p.Next)
	}
	for _, bad := range []struct {
		req   projections.PageRequest
		field string
	}{
		{projections.PageRequest{Limit: 1001}, "limit"},
		{projections.PageRequest{Limit: -1}, "limit"},
		{projections.PageRequest{Cursor: "!!not base64"}, "cursor"},
	} {
		_, err := q.Templates(ctx, bad.req)
		var pe *projections.PageError
		if !errors.As(err, &pe) || pe.Field != bad.field {
			t.Errorf("Templates(%+v) = %v, want a PageError on %s", bad.req, err, bad.field)
		}
	}
	if _, err := q.Templates(ctx, projections.PageRequest{Limit: 1000}); err != nil {
		t.Errorf("limit 1000: %v, want accepted", err)
	}
}

// TestEachSetMemberReadsLargeSets: a set of more members than one read
// takes comes back whole, in ID order, with each member's name, without
// the devices outside its conditions or deleted ones; an unknown set is
// ErrNotFound, and fn's error ends the walk as is.
func TestEachSetMemberReadsLargeSets(t *testing.T) {
	t.Parallel()
	es := MustStore(t)
	rdb, root := MustRedis(t)
	MustAppend(t, es, "template-vending", vendingTemplate("city"))
	const n = 12_345
	var want []projections.Member
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var failed error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				id := fmt.Sprintf("d%05d", i)
				city := "Seattle"
				if i%10 == 3 {
					city = "Paris" // not a member
				}
				evs := []eventstore.Event{{ID: uuid.New(), Data: device.Registered{DeviceID: id, Name: "Fridge " + id,
					TemplateID: "vending", Properties: map[string]any{"city": city}}}}
				deleted := i%97 == 5
				if deleted {
					evs = append(evs, eventstore.Event{ID: uuid.New(), Data: device.Deleted{DeviceID: id}})
				}
				_, err := es.Append(ctx, "device-"+id, eventstore.NoStream(), evs)
				mu.Lock()
				if err != nil {
					failed = err
					mu.Unlock()
					return
				}
				if city == "Seattle" && !deleted {
					want = append(want, projections.Member{ID: id, Name: "Fridge " + id})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	slices.SortFunc(want, func(a, b projections.Member) int { return strings.Compare(a.ID, b.ID) })
	tok := MustAppend(t, es, "deviceset-seattle", device.SetDefined{SetID: "seattle", Name: "Seattle", TemplateID: "vending",
		Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}})
	r := MustRun(t, es, rdb, root, "1")
	MustReach(t, r.Runner, tok)
	q := projections.NewQueries(rdb, root, time.Now)

	var got []projections.Member
	calls := 0
	err := q.EachSetMember(ctx, "seattle", func(ms []projections.Member) error {
		calls++
		got = append(got, ms...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("members of a set of %d (-want +got):\n%s", len(want), diff)
	}
	if calls < 2 {
		t.Errorf("fn called %d times for %d members: want them in several parts", calls, len(want))
	}

	MustNotFound(t, q.EachSetMember(ctx, "nope", func([]projections.Member) error { return nil }))
	stop := errors.New("stop")
	calls = 0
	if err := q.EachSetMember(ctx, "seattle", func([]projections.Member) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("fn's error: EachSetMember returned %v after %d calls, want it after 1", err, calls)
	}
}
