package server

import (
	"bytes"
	"context"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// Paging of reads from the Log. Every read and subscription copies at most
// one page of records out of the Log's callback, sends it, and reads the next
// page from where it stopped: the Log never waits on a slow client, and a
// read of any Count (up to MaxUint64) uses bounded memory.
const (
	pageRecords = 256
	pageBytes   = 4 << 20
	// retainBytes is the page buffer a subscription keeps between short
	// pages: a live subscription reads a few records at a time for hours
	// after a catch-up that grew its buffer to a full page (or one huge
	// record), and should not pin that memory all along.
	retainBytes = 64 << 10
)

// Server-side filter defaults (§6): the client's default search window is
// 32, and "no max search window" (the Count case) falls back to it too.
const defaultSearchWindow = 32

// linkEventType is the type of a link event; its data is "rev@stream" (§2).
const linkEventType = "$>"

// startKind is where a read or subscription starts.
type startKind uint8

const (
	startAt startKind = iota
	startBeginning
	startEnd
)

// readRequest is a validated ReadReq.
type readRequest struct {
	all          bool
	stream       string // when !all
	backwards    bool
	resolveLinks bool
	uuidString   bool
	subscribe    bool
	count        uint64 // when !subscribe
	start        startKind
	at           uint64 // revision or commit position, with startAt
	filter       *eventFilter
}

// eventFilter is a server-side $all filter (§6).
type eventFilter struct {
	byType   bool
	re       *regexp.Regexp
	prefixes []string
	interval uint64 // checkpoint interval, in considered events
}

// match reports whether r passes the filter. System bookkeeping streams are
// hidden from every filtered read, as KurrentDB does, even when the
// expression would match them.
func (f *eventFilter) match(r *store.Record) bool {
	if hiddenFromFiltered(r.Stream) {
		return false
	}
	subject := r.Stream
	if f.byType {
		subject = r.Type
	}
	if f.re != nil {
		return f.re.MatchString(subject)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}

// hiddenFromFiltered reports the streams KurrentDB never shows to filtered
// $all reads: the epoch log and persistent subscriptions' checkpoint and
// parked-message streams.
func hiddenFromFiltered(stream string) bool {
	if stream == "$epoch-information" {
		return true
	}
	return strings.HasPrefix(stream, "$persistentsubscription-") &&
		(strings.HasSuffix(stream, "-checkpoint") || strings.HasSuffix(stream, "-parked"))
}

// parseRead validates a ReadReq. Every oneof and enum is checked: an unset
// or unknown value is InvalidArgument, never a guess and never a panic.
func parseRead(req *streams.ReadReq) (*readRequest, error) {
	o := req.GetOptions()
	if o == nil {
		return nil, invalidArgument("read: options are missing")
	}
	r := &readRequest{resolveLinks: o.GetResolveLinks()}

	switch o.GetUuidOption().GetContent().(type) {
	case *streams.ReadReq_Options_UUIDOption_Structured:
	case *streams.ReadReq_Options_UUIDOption_String_:
		r.uuidString = true
	default:
		return nil, invalidArgument("read: uuid option is missing")
	}

	switch o.GetReadDirection() {
	case streams.ReadReq_Options_Forwards:
	case streams.ReadReq_Options_Backwards:
		r.backwards = true
	default:
		return nil, invalidArgument("read: unknown read direction %d", o.GetReadDirection())
	}

	switch v := o.GetCountOption().(type) {
	case *streams.ReadReq_Options_Count:
		r.count = v.Count
	case *streams.ReadReq_Options_Subscription:
		r.subscribe = true
		if r.backwards {
			return nil, invalidArgument("read: a subscription can only read forwards")
		}
	default:
		return nil, invalidArgument("read: count option is missing")
	}

	switch v := o.GetStreamOption().(type) {
	case *streams.ReadReq_Options_Stream:
		name, err := streamName(v.Stream.GetStreamIdentifier())
		if err != nil {
			return nil, err
		}
		r.stream = name
		switch rv := v.Stream.GetRevisionOption().(type) {
		case *streams.ReadReq_Options_StreamOptions_Revision:
			r.start, r.at = startAt, rv.Revision
		case *streams.ReadReq_Options_StreamOptions_Start:
			r.start = startBeginning
		case *streams.ReadReq_Options_StreamOptions_End:
			r.start = startEnd
		default:
			return nil, invalidArgument("read %s: revision option is missing", name)
		}
	case *streams.ReadReq_Options_All:
		r.all = true
		switch av := v.All.GetAllOption().(type) {
		case *streams.ReadReq_Options_AllOptions_Position:
			if av.Position == nil {
				return nil, invalidArgument("read $all: position is missing")
			}
			r.start, r.at = startAt, av.Position.GetCommitPosition()
		case *streams.ReadReq_Options_AllOptions_Start:
			r.start = startBeginning
		case *streams.ReadReq_Options_AllOptions_End:
			r.start = startEnd
		default:
			return nil, invalidArgument("read $all: position option is missing")
		}
	default:
		return nil, invalidArgument("read: stream option is missing")
	}

	switch v := o.GetFilterOption().(type) {
	case nil, *streams.ReadReq_Options_NoFilter:
	case *streams.ReadReq_Options_Filter:
		f, err := parseFilter(v.Filter, r.subscribe)
		if err != nil {
			return nil, err
		}
		// Filters apply to $all only, as in KurrentDB; the Go client never
		// sends one for a stream.
		if r.all {
			r.filter = f
		}
	}
	return r, nil
}

// parseFilter validates server-side filter options (§6).
func parseFilter(fo *streams.ReadReq_Options_FilterOptions, subscribe bool) (*eventFilter, error) {
	if fo == nil {
		return nil, invalidArgument("filter: options are missing")
	}
	f := &eventFilter{}
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	switch v := fo.GetFilter().(type) {
	case *streams.ReadReq_Options_FilterOptions_StreamIdentifier:
		expr = v.StreamIdentifier
	case *streams.ReadReq_Options_FilterOptions_EventType:
		expr, f.byType = v.EventType, true
	default:
		return nil, invalidArgument("filter: expression is missing")
	}
	if expr == nil {
		return nil, invalidArgument("filter: expression is missing")
	}
	switch {
	case expr.GetRegex() != "":
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, invalidArgument("filter: invalid regex %q: %v", expr.GetRegex(), err)
		}
		f.re = re
	case len(expr.GetPrefix()) > 0:
		f.prefixes = expr.GetPrefix()
	default:
		return nil, invalidArgument("filter: needs a regex or at least one prefix")
	}
	window := uint64(defaultSearchWindow)
	switch v := fo.GetWindow().(type) {
	case *streams.ReadReq_Options_FilterOptions_Max:
		if v.Max > 0 {
			window = uint64(v.Max)
		}
	case *streams.ReadReq_Options_FilterOptions_Count, nil:
	}
	mult := uint64(fo.GetCheckpointIntervalMultiplier())
	if subscribe && mult == 0 {
		return nil, invalidArgument("filter: checkpoint interval multiplier must be greater than 0")
	}
	f.interval = mult * window
	return f, nil
}

// Read implements Streams.Read: count reads of a stream or $all (§5) and
// catch-up subscriptions (§6).
func (h *streamsService) Read(req *streams.ReadReq, out streams.Streams_ReadServer) error {
	s := h.s
	r, err := parseRead(req)
	if err != nil {
		return err
	}
	// Reads and subscriptions end when the client goes away or the server
	// shuts down: GracefulStop would wait for a subscription forever.
	ctx, cancel := context.WithCancel(out.Context())
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()

	rd := &reader{s: s, out: out, ctx: ctx, req: r}
	switch {
	case r.subscribe && r.all:
		return rd.subscribeAll()
	case r.subscribe:
		return rd.subscribeStream()
	default:
		return rd.readCount()
	}
}

// reader serves one Read call.
type reader struct {
	s    *Server
	out  streams.Streams_ReadServer
	ctx  context.Context
	req  *readRequest
	page pager
	enc  *eventEncoder
}

// name is the stream the call reads, for errors and logs.
func (rd *reader) name() string {
	if rd.req.all {
		return "$all"
	}
	return rd.req.stream
}

// fail maps an error of the Log or of Send to the call's final status.
func (rd *reader) fail(op string, err error) error {
	if _, ok := status.FromError(err); ok {
		if rd.s.ctx.Err() != nil {
			return status.Error(codes.Unavailable, "event store is shutting down")
		}
		return err
	}
	return rd.s.toStatus(rd.ctx, op, rd.name(), err)
}

// done is the final status of a call whose context ended.
func (rd *reader) done() error {
	if rd.s.ctx.Err() != nil {
		return status.Error(codes.Unavailable, "event store is shutting down")
	}
	return status.FromContextError(rd.ctx.Err()).Err()
}

// sendEvent sends one record, resolving a link when asked (§2).
func (rd *reader) sendEvent(rec *store.Record) error {
	if rd.enc == nil {
		rd.enc = &eventEncoder{uuidString: rd.req.uuidString}
	}
	var msg *encodedMessage
	if rd.req.resolveLinks && rec.Type == linkEventType {
		target, _ := rd.resolveLink(rec.Data)
		msg = rd.enc.message(target, rec)
	} else {
		msg = rd.enc.message(rec, nil)
	}
	if err := rd.out.SendMsg(msg); err != nil {
		return rd.fail("send", err)
	}
	return nil
}

// resolveLink reads the event a link's data ("rev@stream") points to. A
// malformed link, or a target that is missing or deleted, resolves to
// nothing: the client then sees only the link.
func (rd *reader) resolveLink(data []byte) (*store.Record, bool) {
	at := bytes.IndexByte(data, '@')
	if at <= 0 || at == len(data)-1 {
		return nil, false
	}
	rev, err := strconv.ParseUint(string(data[:at]), 10, 64)
	if err != nil {
		return nil, false
	}
	var target *store.Record
	err = rd.s.log.ReadStream(rd.ctx, string(data[at+1:]), rev, false, func(r store.Record) bool {
		if r.Revision == rev {
			target = cloneRecord(r)
		}
		return false
	})
	if err != nil || target == nil {
		return nil, false
	}
	return target, true
}

// readCount serves a count read (§5): only Event and StreamNotFound
// messages, never a subscription message, which would panic the client.
func (rd *reader) readCount() error {
	r := rd.req
	remaining := r.count
	from := r.at
	switch r.start {
	case startBeginning:
		from = 0
	case startEnd:
		from = store.End
	}
	if r.all && r.backwards && r.start == startBeginning {
		return nil // nothing lies before the first position
	}
	first := true
	for remaining > 0 {
		limit := uint64(pageRecords)
		if remaining < limit {
			limit = remaining
		}
		recs, full, err := rd.page.read(rd.ctx, rd.s.log, r.all, r.stream, from, r.backwards, int(limit))
		if err != nil {
			if errors.Is(err, store.ErrStreamNotFound) && !r.all {
				if !first {
					return nil // deleted while we read: what was sent stands
				}
				return rd.out.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{
					StreamNotFound: &streams.ReadResp_StreamNotFound{
						StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
					},
				}})
			}
			return rd.fail("read", err)
		}
		first = false
		for i := range recs {
			rec := &recs[i]
			if r.filter != nil && !r.filter.match(rec) {
				continue
			}
			if err := rd.sendEvent(rec); err != nil {
				return err
			}
			remaining--
			if remaining == 0 {
				return nil
			}
		}
		if !full || len(recs) == 0 {
			return nil
		}
		last := &recs[len(recs)-1]
		switch {
		case r.all && r.backwards:
			from = last.Position // exclusive
		case r.all:
			from = last.Position + 1
		case r.backwards:
			if last.Revision == 0 {
				return nil
			}
			from = last.Revision - 1
		default:
			from = last.Revision + 1
		}
	}
	return nil
}

// confirm sends the subscription confirmation, which must be the first
// message of a subscription (§6).
func (rd *reader) confirm() error {
	err := rd.out.Send(&streams.ReadResp{Content: &streams.ReadResp_Confirmation{
		Confirmation: &streams.ReadResp_SubscriptionConfirmation{SubscriptionId: newSubscriptionID()},
	}})
	if err != nil {
		return rd.fail("confirm", err)
	}
	return nil
}

// caughtUp tells the client catch-up has reached the head.
func (rd *reader) caughtUp() error {
	if err := rd.out.Send(&streams.ReadResp{Content: &streams.ReadResp_CaughtUp_{CaughtUp: &streams.ReadResp_CaughtUp{}}}); err != nil {
		return rd.fail("caught up", err)
	}
	return nil
}

// wait blocks until ch (taken from Log.Changed before the last read) closes,
// or the call ends.
func (rd *reader) wait(ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-rd.ctx.Done():
		return rd.done()
	}
}

// subscribeAll serves a $all subscription (§6). It is one loop: take the
// Changed channel, read a page after the last delivered position, send it,
// and wait on the channel only when the read came back short. Catch-up and
// live delivery are the same code, so there is no switch-over to race, no
// gap, no duplicate, and a slow subscriber just reads from the Log later.
func (rd *reader) subscribeAll() error {
	r, log := rd.req, rd.s.log
	if err := rd.confirm(); err != nil {
		return err
	}
	var pos uint64 // everything <= pos has been considered
	switch r.start {
	case startAt:
		pos = r.at
	case startEnd:
		pos = log.Head()
	}
	cp := checkpointer{rd: rd}
	caught := false
	var considered uint64
	for {
		ch := log.Changed()
		var recs []store.Record
		full := false
		if pos != math.MaxUint64 {
			var err error
			recs, full, err = rd.page.read(rd.ctx, log, true, "", pos+1, false, pageRecords)
			if err != nil {
				return rd.fail("subscribe", err)
			}
		}
		for i := range recs {
			rec := &recs[i]
			if err := cp.flush(); err != nil {
				return err
			}
			if r.filter == nil || r.filter.match(rec) {
				if err := rd.sendEvent(rec); err != nil {
					return err
				}
			}
			pos = rec.Position
			if r.filter != nil {
				considered++
				if considered >= r.filter.interval {
					considered = 0
					cp.hold(pos)
				}
			}
		}
		if full {
			// Catch-up holds an interval checkpoint until the next record:
			// if catch-up ends right here, the one checkpoint sent before
			// CaughtUp stands for both, without a duplicate.
			if caught {
				if err := cp.flush(); err != nil {
					return err
				}
			}
			continue
		}
		if !caught {
			if r.filter != nil {
				// This checkpoint covers everything considered so far, so
				// the live interval counts from here.
				considered = 0
				cp.hold(pos)
				if err := cp.flushAlways(); err != nil {
					return err
				}
			}
			if err := rd.caughtUp(); err != nil {
				return err
			}
			caught = true
		} else if err := cp.flush(); err != nil {
			return err
		}
		if err := rd.wait(ch); err != nil {
			return err
		}
	}
}

// checkpointer sends filtered-subscription checkpoints: monotonic, never
// duplicated (§6).
type checkpointer struct {
	rd      *reader
	pending uint64
	held    bool
	last    uint64
	sent    bool
}

// hold records a checkpoint to send at the next flush.
func (c *checkpointer) hold(pos uint64) { c.pending, c.held = pos, true }

// flush sends the held checkpoint unless it would go backwards or repeat.
func (c *checkpointer) flush() error {
	if !c.held {
		return nil
	}
	c.held = false
	if c.sent && c.pending <= c.last {
		return nil
	}
	return c.send(c.pending)
}

// flushAlways sends the held checkpoint even if it equals the last one: the
// protocol sends exactly one checkpoint right before CaughtUp.
func (c *checkpointer) flushAlways() error {
	if !c.held {
		return nil
	}
	c.held = false
	if c.sent && c.pending < c.last {
		return nil
	}
	return c.send(c.pending)
}

func (c *checkpointer) send(pos uint64) error {
	c.last, c.sent = pos, true
	err := c.rd.out.Send(&streams.ReadResp{Content: &streams.ReadResp_Checkpoint_{Checkpoint: &streams.ReadResp_Checkpoint{
		CommitPosition: pos, PreparePosition: pos,
	}}})
	if err != nil {
		return c.rd.fail("checkpoint", err)
	}
	return nil
}

// subscribeStream serves a stream subscription (§6) with the same loop as
// subscribeAll, keyed on revisions. A missing or soft-deleted stream is
// simply empty; a tombstoned one gets its "$streamDeleted" event and then
// the stream-deleted status.
func (rd *reader) subscribeStream() error {
	r, log := rd.req, rd.s.log
	if err := rd.confirm(); err != nil {
		return err
	}
	var next uint64  // the next revision to read
	var floor uint64 // records at or below this position predate an End start
	switch r.start {
	case startAt:
		next = r.at + 1
		if r.at == math.MaxUint64 {
			next = store.End
		}
	case startEnd:
		floor = log.Head()
		var err error
		if next, err = rd.revisionAfter(floor); err != nil {
			return err
		}
	}
	caught := false
	for {
		ch := log.Changed()
		recs, full, err := rd.page.read(rd.ctx, log, false, r.stream, next, false, pageRecords)
		var deleted *store.StreamDeletedError
		switch {
		case err == nil:
		case errors.Is(err, store.ErrStreamNotFound):
			recs, full = nil, false
		case errors.As(err, &deleted):
			return rd.tombstoned()
		default:
			return rd.fail("subscribe", err)
		}
		for i := range recs {
			rec := &recs[i]
			next = rec.Revision + 1
			if rec.Position <= floor {
				continue
			}
			if err := rd.sendEvent(rec); err != nil {
				return err
			}
		}
		if full {
			continue
		}
		if !caught {
			if err := rd.caughtUp(); err != nil {
				return err
			}
			caught = true
		}
		if err := rd.wait(ch); err != nil {
			return err
		}
	}
}

// revisionAfter is where a stream subscription from End starts reading: the
// revision after the newest event at or below position floor. Events
// committed since are delivered (they are live, not history).
func (rd *reader) revisionAfter(floor uint64) (uint64, error) {
	var next uint64
	err := rd.s.log.ReadStream(rd.ctx, rd.req.stream, store.End, true, func(rec store.Record) bool {
		if rec.Position <= floor {
			next = rec.Revision + 1
			return false
		}
		return true
	})
	var deleted *store.StreamDeletedError
	switch {
	case err == nil, errors.Is(err, store.ErrStreamNotFound):
		return next, nil
	case errors.As(err, &deleted):
		return 0, rd.tombstoned()
	default:
		return 0, rd.fail("subscribe", err)
	}
}

// tombstoned ends a stream subscription on a tombstoned stream the way
// KurrentDB does: the "$streamDeleted" event, then the stream-deleted status.
// The metastream of a tombstoned stream has no such event of its own. The
// event is found by an exact index lookup, however far back it lies.
func (rd *reader) tombstoned() error {
	name := rd.req.stream
	tomb, err := rd.s.log.TombstoneRecord(rd.ctx, name)
	switch {
	case errors.Is(err, store.ErrStreamNotFound):
		// A metastream: deleted through its owner, nothing to deliver.
	case err != nil:
		return rd.fail("subscribe", err)
	default:
		if err := rd.sendEvent(&tomb); err != nil {
			return err
		}
	}
	return streamDeleted(rd.ctx, name)
}

// pager copies pages of records out of Log callbacks into buffers it reuses
// from page to page. The records of one page are valid until the next read.
type pager struct {
	recs []store.Record
	buf  []byte
}

// read returns up to limit records (and about pageBytes of payload) from
// from; full reports that it stopped at a limit, so more may follow.
func (p *pager) read(ctx context.Context, log Log, all bool, stream string, from uint64, backwards bool, limit int) ([]store.Record, bool, error) {
	// Clear the previous page's records: their slices point into the
	// previous buffers, which must not stay reachable once released.
	clear(p.recs)
	p.recs, p.buf = p.recs[:0], p.buf[:0]
	full := false
	fn := func(r store.Record) bool {
		start := len(p.buf)
		p.buf = append(p.buf, r.Data...)
		p.buf = append(p.buf, r.Metadata...)
		r.Data = p.buf[start : start+len(r.Data) : start+len(r.Data)]
		r.Metadata = p.buf[start+len(r.Data) : len(p.buf) : len(p.buf)]
		p.recs = append(p.recs, r)
		if len(p.recs) >= limit || len(p.buf) >= pageBytes {
			full = true
			return false
		}
		return true
	}
	var err error
	if all {
		err = log.ReadAll(ctx, from, backwards, fn)
	} else {
		err = log.ReadStream(ctx, stream, from, backwards, fn)
	}
	if err != nil {
		return nil, false, err
	}
	if !full && cap(p.buf) > retainBytes && len(p.buf) < cap(p.buf)/4 {
		// The next read starts a fresh buffer; this page keeps the old
		// one alive only until then.
		p.buf = nil
	}
	return p.recs, full, nil
}

// cloneRecord copies a record out of a Log callback.
func cloneRecord(r store.Record) *store.Record {
	r.Data = bytes.Clone(r.Data)
	r.Metadata = bytes.Clone(r.Metadata)
	return &r
}

// newSubscriptionID is a fresh subscription id; KurrentDB uses a GUID.
func newSubscriptionID() string { return uuid.NewString() }
