package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// ImportResult is the outcome of an import that recorded every row.
type ImportResult struct {
	// Position is the consistency token: the latest position among the
	// rows' events (or, for rows that changed nothing, their streams' last
	// events). Read models that reached it include every imported device.
	Position eventstore.Position
	// Rows is the number of rows imported.
	Rows int
	// Changed counts the rows that recorded events; the others were
	// already so (same body, or recorded by an earlier try of the same
	// import).
	Changed int
	// Registered counts the rows, among Changed, that registered a new
	// device (the others changed an existing one).
	Registered int
	// Keys are the keys of the devices this call registered, in row order
	// (with WithDeviceKeys): shown once. A device an earlier try of the
	// same import registered is not among them (its key was in that try's
	// answer); issue it a new key if that answer was lost.
	Keys []DeviceKey
}

// DeviceKey is the key a command issued to a device.
type DeviceKey struct {
	DeviceID string
	Key      string
}

// RowError is what is wrong with one row of an import.
type RowError struct {
	Row      int // 0-based index of the row in the import
	DeviceID string
	Err      *domain.Error
}

// ImportError is the answer to an import with invalid rows: nothing was
// recorded. It unwraps to a CodeInvalid *domain.Error whose fields are
// prefixed with the row ("rows[3].properties.fanSpeed"), at most
// maxRowFields of them, so the edge's one error table serves it.
type ImportError struct {
	Rows  []RowError // every invalid row, in row order
	Total int        // rows in the import
}

// maxRowFields caps the field errors an ImportError flattens: a file of
// 100,000 bad rows should not answer with 100,000 messages.
const maxRowFields = 1000

func (e *ImportError) Error() string {
	return fmt.Sprintf("import: %d of %d rows are invalid; nothing was recorded", len(e.Rows), e.Total)
}

// Unwrap returns the CodeInvalid *domain.Error of every row's fields.
func (e *ImportError) Unwrap() error {
	var fields []domain.FieldError
	for _, r := range e.Rows {
		for _, f := range r.Err.Fields {
			if len(fields) == maxRowFields {
				break
			}
			fields = append(fields, domain.FieldError{Field: fmt.Sprintf("rows[%d].%s", r.Row, f.Field), Message: f.Message})
		}
		if len(r.Err.Fields) == 0 && len(fields) < maxRowFields {
			fields = append(fields, domain.FieldError{Field: fmt.Sprintf("rows[%d]", r.Row), Message: r.Err.Message})
		}
	}
	return &domain.Error{Code: domain.CodeInvalid, Message: e.Error(), Fields: fields}
}

// row is one row's progress through an import.
type row struct {
	cmd    device.Register
	stream string
	snap   *snapshot
	events []device.DeviceEvent
	key    string // the key drawn for a new device (its hash is in cmd)
	issued bool   // this call recorded the device's registration and key
}

// ImportDevices registers (or changes) many devices as one command: all or
// nothing (POST /devices:import). Each row is a Register command; its
// Template is filled in here, and for a device that does not exist yet its
// KeyHash, from a key drawn here (returned in Keys if this call recorded it).
//
// Every row is validated first: on its own, against its template, against
// the device's current state (a deleted device is refused) and against the
// other rows (a device twice is refused). Any invalid row makes the import
// fail with an *ImportError listing every invalid row, and nothing is
// recorded. Then each device's events are appended to its own stream
// (KurrentDB has no transaction across streams), by a bounded pool of
// workers, each append expecting the revision the row was validated
// against; a row whose device changed meanwhile is decided again and, if
// it is now refused, ends the import with that error.
//
// So "nothing" is guaranteed for invalid input, not for a crash or a lost
// connection half-way: some devices are then recorded and the others not.
// Retrying the same import with the same command ID completes it: rows
// already recorded carry that command ID on their stream (and would decide
// no events anyway), the others are appended with the same event IDs, which
// the store recognises if their first append did land.
func (h *Handler) ImportDevices(ctx context.Context, meta Meta, cmds []device.Register) (ImportResult, error) {
	meta = h.fill(meta)
	rows, err := h.checkImport(ctx, meta, cmds, nil)
	if err != nil {
		return ImportResult{}, err
	}
	return h.recordImport(ctx, meta, rows)
}

// CheckImport validates an import as ImportDevices does and records
// nothing: nil if ImportDevices would take every row, else the
// *ImportError listing every invalid row. A row for which skip is true
// (another layer refused it already) is not checked, and only the others
// count for "a device twice". The HTTP layer asks it when it refused rows
// itself, so that one answer lists every problem of the import.
func (h *Handler) CheckImport(ctx context.Context, meta Meta, cmds []device.Register, skip func(row int) bool) error {
	_, err := h.checkImport(ctx, h.fill(meta), cmds, skip)
	return err
}

// checkImport validates every row (but those skip names), on its own and
// against its template, then each row that passed against its device's
// current state; it returns the rows ready to record, or an *ImportError
// with the problems of both stages.
func (h *Handler) checkImport(ctx context.Context, meta Meta, cmds []device.Register, skip func(int) bool) ([]row, error) {
	rows := make([]row, len(cmds))
	var bad []RowError
	first := make(map[string]int, len(cmds))
	tmpls := make(map[string]device.Template)
	for i, c := range cmds {
		if skip != nil && skip(i) {
			continue
		}
		if j, dup := first[c.DeviceID]; dup && c.DeviceID != "" {
			bad = append(bad, RowError{Row: i, DeviceID: c.DeviceID, Err: domain.Invalid("deviceId", "device %q is already in row %d of this import", c.DeviceID, j)})
			continue
		}
		first[c.DeviceID] = i
		t, ok := tmpls[c.TemplateID]
		if !ok {
			var err error
			if t, err = h.Template(ctx, c.TemplateID); err != nil {
				return nil, fmt.Errorf("import: %w", err)
			}
			tmpls[c.TemplateID] = t
		}
		c.Template = t
		if _, err := device.CheckRegister(c); err != nil {
			bad = append(bad, rowError(i, c.DeviceID, err))
			continue
		}
		rows[i] = row{cmd: c, stream: eventstore.DeviceStream(c.DeviceID)}
	}

	// Load every device whose row passed and decide its row against it
	// (the rows refused so far have no stream), so that one answer lists
	// the problems of both stages.
	checked := make([]row, 0, len(rows))
	at := make([]int, 0, len(rows))
	for i := range rows {
		if rows[i].stream != "" {
			checked = append(checked, rows[i])
			at = append(at, i)
		}
	}
	if err := h.loadRows(ctx, checked); err != nil {
		return nil, fmt.Errorf("import: load devices: %w", err)
	}
	for k, i := range at {
		rows[i] = checked[k]
	}
	// Rows are decided independently (a key drawn and hashed, the device's
	// events), on the workers.
	var badMu sync.Mutex
	err := h.each(ctx, len(at), func(_ context.Context, k int) error {
		i := at[k]
		r := &rows[i]
		if _, done := r.snap.recorded(meta.CommandID); done {
			return nil
		}
		d := r.snap.state.(device.Device)
		if !d.Registered {
			var err error
			if r.key, r.cmd.KeyHash, err = h.newKey(); err != nil {
				return err
			}
		}
		var err error
		if r.events, err = device.DecideDevice(d, r.cmd); err == nil {
			// A row whose event the store would refuse is refused here,
			// with the other bad rows, before any row is recorded.
			if err = h.fitsAppend(r.stream, meta, r.events); err != nil && !errors.As(err, new(*domain.Error)) {
				return err // an event that does not encode: not the row's fault
			}
		}
		if err != nil {
			badMu.Lock()
			bad = append(bad, rowError(i, r.cmd.DeviceID, err))
			badMu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if len(bad) > 0 {
		sortRows(bad)
		return nil, &ImportError{Rows: bad, Total: len(cmds)}
	}
	return rows, nil
}

// recordImport records every row that checkImport accepted.
func (h *Handler) recordImport(ctx context.Context, meta Meta, rows []row) (ImportResult, error) {
	var changed, registered, done atomic.Int64
	positions := make([]eventstore.Position, len(rows))
	err := h.each(ctx, len(rows), func(ctx context.Context, i int) error {
		r := &rows[i]
		if len(r.events) == 0 {
			positions[i] = r.snap.pos
			if pos, ok := r.snap.recorded(meta.CommandID); ok {
				positions[i] = pos
			}
			done.Add(1)
			return nil
		}
		res, next, err := appendEvents(ctx, h, devices(), r.stream, r.snap, r.events, meta)
		var conflict *eventstore.ConflictError
		switch {
		case errors.As(err, &conflict):
			// Another writer got there first: the one command path
			// catches up, decides again and retries.
			if res, err = handle(ctx, h, devices(), r.stream, device.DeviceCommand(r.cmd), meta); err != nil {
				return fmt.Errorf("row %d (device %s): %w", i, r.cmd.DeviceID, err)
			}
		case err != nil:
			return fmt.Errorf("row %d (device %s): %w", i, r.cmd.DeviceID, err)
		default:
			h.cache.put(r.stream, next)
		}
		positions[i] = res.Position
		if res.Events > 0 {
			changed.Add(1)
		}
		if res.Created && res.Events > 0 {
			registered.Add(1)
			r.issued = issuedOnRegister(res, r.cmd.KeyHash)
		}
		done.Add(1)
		return nil
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("import %s: recorded %d of %d devices, then: %w; retry the same import with the same command ID (over HTTP, the same request and Idempotency-Key) to finish it",
			meta.CommandID, done.Load(), len(rows), err)
	}
	out := ImportResult{Rows: len(rows), Changed: int(changed.Load()), Registered: int(registered.Load())}
	for i := range rows {
		if rows[i].issued {
			out.Keys = append(out.Keys, DeviceKey{DeviceID: rows[i].cmd.DeviceID, Key: rows[i].key})
		}
	}
	for _, p := range positions {
		if p.Compare(out.Position) > 0 {
			out.Position = p
		}
	}
	return out, nil
}

// scanFrom is the import size from which loadRows reads every device
// stream in one pass over $all instead of one read per row: a read costs a
// round trip, while the pass streams every device event of the log at
// hundreds of thousands per second. (A small import into a large fleet is
// cheaper row by row.)
const scanFrom = 2000

// errCaughtUp ends the pass over $all once it reached the log's end.
var errCaughtUp = errors.New("caught up")

// loadRows sets every row's snapshot to its device's current state.
func (h *Handler) loadRows(ctx context.Context, rows []row) error {
	if len(rows) < scanFrom {
		return h.each(ctx, len(rows), func(ctx context.Context, i int) error {
			snap, err := load(ctx, h, devices(), rows[i].stream)
			rows[i].snap = snap
			return err
		})
	}
	byStream := make(map[string]int, len(rows))
	states := make([]device.Device, len(rows))
	for i := range rows {
		byStream[rows[i].stream] = i
		rows[i].snap = &snapshot{}
	}
	err := h.store.SubscribeAll(ctx, eventstore.Position{}, eventstore.Filter{StreamPrefixes: []string{eventstore.DeviceStreamPrefix}}, eventstore.Handler{
		Event: func(_ context.Context, r eventstore.Recorded) error {
			i, ok := byStream[r.Stream]
			if !ok {
				return nil
			}
			v, err := h.codec.Decode(r.Type, r.Data)
			if err != nil {
				return fmt.Errorf("load %s@%d: %w", r.Stream, r.Revision, err)
			}
			ev, ok := v.(device.DeviceEvent)
			if !ok {
				return fmt.Errorf("load %s@%d: event %s is not a device event", r.Stream, r.Revision, r.Type)
			}
			states[i] = device.EvolveDevice(states[i], ev)
			s := rows[i].snap
			s.exists, s.rev, s.pos = true, r.Revision, r.Position
			s.mark(r.Metadata.CommandID, r.Position)
			return nil
		},
		CaughtUp: func(context.Context) error { return errCaughtUp },
	})
	if !errors.Is(err, errCaughtUp) {
		return fmt.Errorf("scan device streams: %w", err)
	}
	for i := range rows {
		rows[i].snap.state = states[i]
	}
	return nil
}

// occurredAtSpread is how much more the same metadata can weigh when
// recorded at another instant: its occurredAt drops the trailing zeros of
// its fractional seconds (RFC 3339 with nanoseconds).
const occurredAtSpread = len(".000000001")

// fitsAppend checks that events can be appended to stream under meta: that
// none (with the metadata it would carry) is over the most one append may
// carry, which the store would refuse however the events were split. It
// answers a CodeInvalid *domain.Error naming no field (the event as a
// whole is too large) or, if an event does not encode, that error.
func (h *Handler) fitsAppend(stream string, meta Meta, events []device.DeviceEvent) error {
	_, sizes, err := envelope(h, stream, meta, events, 0)
	if err != nil {
		return err
	}
	for _, n := range sizes {
		if n += occurredAtSpread; n > h.maxAppendBytes {
			return &domain.Error{Code: domain.CodeInvalid, Message: fmt.Sprintf(
				"too large to record: the device's event would weigh about %d bytes, more than the %d one append to the event store may carry; make its properties smaller",
				n, h.maxAppendBytes)}
		}
	}
	return nil
}

func rowError(i int, id string, err error) RowError {
	e, ok := domain.AsError(err)
	if !ok {
		e = &domain.Error{Code: domain.CodeInvalid, Message: err.Error()}
	}
	return RowError{Row: i, DeviceID: id, Err: e}
}

// sortRows puts row errors, which come from concurrent workers, in row order.
func sortRows(rs []RowError) {
	slices.SortFunc(rs, func(a, b RowError) int { return cmp.Compare(a.Row, b.Row) })
}

// each runs fn for 0..n-1 on at most h.workers goroutines, stopping at the
// first error (which it returns) or ctx's end.
func (h *Handler) each(ctx context.Context, n int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(h.workers, n)
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return nil
}
