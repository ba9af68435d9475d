package projections_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain/device"
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
