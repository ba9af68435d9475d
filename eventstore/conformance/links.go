package conformance

import (
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
)

func linkBehaviours() []behaviour {
	return []behaviour{
		{"a link read without resolving is the link record", linkUnresolved},
		{"a link read with resolving carries the target and the link", linkResolved},
		{"a link to a missing or deleted event resolves to the link alone", linkDangling},
	}
}

// linkTo is a link event ("$>") pointing at revision rev of stream.
func linkTo(rev uint64, stream string) esdb.EventData {
	return esdb.EventData{EventID: uuid.New(), EventType: "$>", ContentType: esdb.ContentTypeBinary, Data: []byte(uitoa(rev) + "@" + stream)}
}

// linkFixture writes two events to a target stream and a link to target's
// revision 1 in a link stream.
func linkFixture(t *testing.T, c *esdb.Client) (target, links string, targetEvents []esdb.EventData, link esdb.EventData) {
	t.Helper()
	target, links = newStream("link-target"), newStream("link-source")
	targetEvents = testEvents("LinkTested", 2)
	mustAppend(t, c, target, esdb.NoStream{}, targetEvents...)
	link = linkTo(1, target)
	mustAppend(t, c, links, esdb.NoStream{}, link)
	return target, links, targetEvents, link
}

func linkUnresolved(t *testing.T, _ *suite, c *esdb.Client) {
	_, links, _, link := linkFixture(t, c)
	got := mustReadStream(t, c, links, esdb.ReadStreamOptions{From: esdb.Start{}}, 10)
	if len(got) != 1 {
		t.Fatalf("read %s: %d events, want 1", links, len(got))
	}
	if got[0].Link != nil {
		t.Errorf("without resolving: Link = %+v, want nil", got[0].Link)
	}
	if e := got[0].Event; e == nil || e.EventID != link.EventID || e.EventType != "$>" || string(e.Data) != string(link.Data) || e.StreamID != links {
		t.Errorf("without resolving: Event = %+v, want the link record itself", got[0].Event)
	}
}

func linkResolved(t *testing.T, _ *suite, c *esdb.Client) {
	target, links, targetEvents, link := linkFixture(t, c)
	got := mustReadStream(t, c, links, esdb.ReadStreamOptions{From: esdb.Start{}, ResolveLinkTos: true}, 10)
	if len(got) != 1 {
		t.Fatalf("read %s resolving links: %d events, want 1", links, len(got))
	}
	ev := got[0]
	if ev.Event == nil || ev.Event.EventID != targetEvents[1].EventID || ev.Event.StreamID != target || ev.Event.EventNumber != 1 {
		t.Errorf("resolved Event = %+v, want event 1@%s", ev.Event, target)
	}
	if ev.Link == nil || ev.Link.EventID != link.EventID || ev.Link.StreamID != links || ev.Link.EventNumber != 0 {
		t.Errorf("resolved Link = %+v, want the link record 0@%s", ev.Link, links)
	}
	// OriginalEvent is the link: what a subscriber of the link stream
	// checkpoints on.
	if o := ev.OriginalEvent(); o == nil || o.StreamID != links {
		t.Errorf("OriginalEvent() = %+v, want the link", o)
	}
	// Subscriptions resolve the same way.
	sub := mustSubscribeToStream(t, c, links, esdb.SubscribeToStreamOptions{From: esdb.Start{}, ResolveLinkTos: true})
	sev := sub.events(t, 1, nil)[0]
	if sev.Event == nil || sev.Event.EventID != targetEvents[1].EventID || sev.Link == nil || sev.Link.EventID != link.EventID {
		t.Errorf("subscription resolving links: Event %+v, Link %+v; want target event 1@%s and the link", sev.Event, sev.Link, target)
	}
}

func linkDangling(t *testing.T, _ *suite, c *esdb.Client) {
	target, links, _, link := linkFixture(t, c)
	missing := linkTo(7, target)
	mustAppend(t, c, links, esdb.Revision(0), missing)
	if _, err := c.DeleteStream(t.Context(), target, esdb.DeleteStreamOptions{}); err != nil {
		t.Fatalf("delete %s: %v", target, err)
	}
	got := mustReadStream(t, c, links, esdb.ReadStreamOptions{From: esdb.Start{}, ResolveLinkTos: true}, 10)
	if len(got) != 2 {
		t.Fatalf("read %s resolving links: %d events, want 2", links, len(got))
	}
	for i, want := range []esdb.EventData{link, missing} {
		if got[i].Event != nil {
			t.Errorf("link %d to a deleted or missing event: Event = %d@%s, want nil", i, got[i].Event.EventNumber, got[i].Event.StreamID)
		}
		if got[i].Link == nil || got[i].Link.EventID != want.EventID {
			t.Errorf("link %d to a deleted or missing event: Link = %+v, want the link record", i, got[i].Link)
		}
	}
}
