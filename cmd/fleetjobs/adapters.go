package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// This file adapts the commands and projections packages to the small
// interfaces the HTTP layer declares (fjhttp.DeviceCommands, DeviceQueries,
// ConsistencyWaiter). The adapters only convert: plain structs to domain
// commands, read models to API shapes, positions to opaque tokens, and the
// read side's not-found and paging errors to the HTTP error table's. Domain
// errors pass through untouched: errors.go maps their codes.

// deviceCommands is fjhttp.DeviceCommands over the command handler. It reads
// the read models only to word the note of a template deletion.
type deviceCommands struct {
	h       *commands.Handler
	queries *deviceQueries
	waiter  *runnerWaiter
	// noteWait bounds how long a template deletion waits for the read
	// models before counting who used the template.
	noteWait time.Duration
}

var _ fjhttp.DeviceCommands = (*deviceCommands)(nil)

func commandMeta(m fjhttp.CommandMeta) commands.Meta {
	return commands.Meta{CommandID: m.CommandID, CorrelationID: m.CorrelationID, CausationID: m.CommandID, Actor: m.Actor}
}

// token renders a position as the consistency token; the start of the log
// (a stream with no events) is no token at all.
func token(p eventstore.Position) string {
	if p.IsZero() {
		return ""
	}
	return p.String()
}

func commandResult(r commands.Result) fjhttp.CommandResult {
	return fjhttp.CommandResult{Token: token(r.Position), Created: r.Created, DeviceKey: r.DeviceKey}
}

func capabilities(items []fjhttp.SchemaItem) []device.Capability {
	out := make([]device.Capability, len(items))
	for i, it := range items {
		out[i] = device.Capability{Name: it.Name, Schema: device.Schema(it.Schema)}
	}
	return out
}

func schemaItems(caps []device.Capability) []fjhttp.SchemaItem {
	out := make([]fjhttp.SchemaItem, len(caps))
	for i, c := range caps {
		out[i] = fjhttp.SchemaItem{Name: c.Name, Schema: string(c.Schema)}
	}
	return out
}

func domainConditions(conds []fjhttp.Condition) []device.Condition {
	out := make([]device.Condition, len(conds))
	for i, c := range conds {
		out[i] = device.Condition{Property: c.Property, Op: device.Op(c.Op), Value: c.Value}
	}
	return out
}

func apiConditions(conds []device.Condition) []fjhttp.Condition {
	out := make([]fjhttp.Condition, len(conds))
	for i, c := range conds {
		out[i] = fjhttp.Condition{Property: c.Property, Op: string(c.Op), Value: c.Value}
	}
	return out
}

func (a *deviceCommands) PublishTemplate(ctx context.Context, cmd fjhttp.PublishTemplate) (fjhttp.CommandResult, error) {
	r, err := a.h.PublishTemplate(ctx, commandMeta(cmd.Meta), device.PublishTemplate{
		TemplateID: cmd.TemplateID, Name: cmd.Name,
		Settings: capabilities(cmd.Settings), Properties: capabilities(cmd.Properties), Commands: capabilities(cmd.Commands),
	})
	return commandResult(r), err
}

// DeleteTemplate deletes the template and says who it leaves unusable:
// the devices using it and the sets naming it, counted from the read models
// once they have applied the deletion (so that devices registered just
// before it are counted).
func (a *deviceCommands) DeleteTemplate(ctx context.Context, cmd fjhttp.DeleteTemplate) (fjhttp.CommandResult, error) {
	r, err := a.h.DeleteTemplate(ctx, commandMeta(cmd.Meta), device.DeleteTemplate{TemplateID: cmd.TemplateID})
	if err != nil {
		return fjhttp.CommandResult{}, err
	}
	res := commandResult(r)
	if r.Events == 0 {
		return res, nil // already deleted: nothing new to say
	}
	wctx, cancel := context.WithTimeout(ctx, a.noteWait)
	defer cancel()
	if err := a.waiter.runner.WaitFor(wctx, r.Position); err != nil {
		// The deletion is recorded; only the note is missing. Say so
		// rather than fail the command.
		res.Notes = []string{fmt.Sprintf("Template %q was deleted; the devices and sets using it are unusable until it is published again (the read models were too far behind to count them).", cmd.TemplateID)}
		return res, nil
	}
	devices, sets, err := a.queries.templateUsage(ctx, cmd.TemplateID)
	if err != nil {
		return res, fmt.Errorf("template %s deleted, but counting its users failed: %w", cmd.TemplateID, err)
	}
	res.Notes = []string{deletionNote(cmd.TemplateID, devices, sets)}
	return res, nil
}

// deletionNote is the sentence a template deletion answers with.
func deletionNote(id string, devices, sets int) string {
	if devices == 0 && sets == 0 {
		return fmt.Sprintf("Template %q was deleted; no device or device set used it.", id)
	}
	return fmt.Sprintf("Template %q was deleted: %s and %s use it; those devices cannot be changed or targeted by jobs and those sets are broken (they list no devices) until the template is published again.",
		id, plural(devices, "device", "devices"), plural(sets, "device set", "device sets"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (a *deviceCommands) RegisterDevice(ctx context.Context, cmd fjhttp.RegisterDevice) (fjhttp.CommandResult, error) {
	r, err := a.h.RegisterDevice(ctx, commandMeta(cmd.Meta), device.Register{
		DeviceID: cmd.DeviceID, Name: cmd.Name, TemplateID: cmd.TemplateID, Properties: cmd.Properties,
	})
	return commandResult(r), err
}

func (a *deviceCommands) DeleteDevice(ctx context.Context, cmd fjhttp.DeleteDevice) (fjhttp.CommandResult, error) {
	r, err := a.h.DeleteDevice(ctx, commandMeta(cmd.Meta), device.Delete{DeviceID: cmd.DeviceID})
	return commandResult(r), err
}

func (a *deviceCommands) DefineDeviceSet(ctx context.Context, cmd fjhttp.DefineDeviceSet) (fjhttp.CommandResult, error) {
	r, err := a.h.DefineDeviceSet(ctx, commandMeta(cmd.Meta), device.DefineSet{
		SetID: cmd.SetID, Name: cmd.Name, TemplateID: cmd.TemplateID, Conditions: domainConditions(cmd.Conditions),
	})
	return commandResult(r), err
}

func (a *deviceCommands) DeleteDeviceSet(ctx context.Context, cmd fjhttp.DeleteDeviceSet) (fjhttp.CommandResult, error) {
	r, err := a.h.DeleteDeviceSet(ctx, commandMeta(cmd.Meta), device.DeleteSet{SetID: cmd.SetID})
	return commandResult(r), err
}

// ImportDevices runs the all-or-nothing import.
func (a *deviceCommands) ImportDevices(ctx context.Context, cmd fjhttp.ImportDevices) (fjhttp.ImportResult, error) {
	rows := make([]device.Register, len(cmd.Rows))
	for i, r := range cmd.Rows {
		rows[i] = device.Register{DeviceID: r.DeviceID, Name: r.Name, TemplateID: r.TemplateID, Properties: r.Properties}
	}
	if len(cmd.Refused) > 0 {
		// Only the other rows' problems: nothing is recorded.
		return fjhttp.ImportResult{}, a.h.CheckImport(ctx, commandMeta(cmd.Meta), rows, func(i int) bool { return cmd.Refused[i] })
	}
	r, err := a.h.ImportDevices(ctx, commandMeta(cmd.Meta), rows)
	if err != nil {
		return fjhttp.ImportResult{}, err
	}
	keys := make([]fjhttp.DeviceKey, len(r.Keys))
	for i, k := range r.Keys {
		keys[i] = fjhttp.DeviceKey{DeviceID: k.DeviceID, DeviceKey: k.Key}
	}
	return fjhttp.ImportResult{Token: token(r.Position), Registered: r.Registered, Updated: r.Changed - r.Registered,
		Unchanged: r.Rows - r.Changed, Keys: keys}, nil
}

func (a *deviceCommands) IssueDeviceKey(ctx context.Context, cmd fjhttp.IssueDeviceKey) (fjhttp.CommandResult, error) {
	r, err := a.h.IssueDeviceKey(ctx, commandMeta(cmd.Meta), cmd.DeviceID)
	return commandResult(r), err
}

// deviceQueries is fjhttp.DeviceQueries over the read models.
type deviceQueries struct {
	q    *projections.Queries
	rdb  redis.UniversalClient
	root string // the key root the projections write under
}

var _ fjhttp.DeviceQueries = (*deviceQueries)(nil)

// queryError translates the read side's errors into the HTTP table's:
// a missing thing is fjhttp.ErrNotFound naming it, a page it cannot serve a
// 400 naming the query parameter. Anything else passes through (a 500).
func queryError(what, id string, err error) error {
	var pe *projections.PageError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, projections.ErrNotFound):
		return fmt.Errorf("%s %q does not exist: %w", what, id, fjhttp.ErrNotFound)
	case errors.As(err, &pe):
		return &fjhttp.ValidationError{Fields: []fjhttp.FieldError{{Field: pe.Field, Message: pe.Reason}}}
	}
	return err
}

func pageRequest(p fjhttp.Page) projections.PageRequest {
	return projections.PageRequest{Limit: p.Limit, Cursor: p.Cursor}
}

func apiTemplate(t projections.Template) fjhttp.Template {
	return fjhttp.Template{ID: t.ID, Name: t.Name, Settings: schemaItems(t.Settings), Properties: schemaItems(t.Properties), Commands: schemaItems(t.Commands)}
}

func apiDeviceSet(s projections.DeviceSet) fjhttp.DeviceSet {
	return fjhttp.DeviceSet{ID: s.ID, Name: s.Name, TemplateID: s.TemplateID, Conditions: apiConditions(s.Conditions), Broken: s.Broken, BrokenReason: s.BrokenReason}
}

func (a *deviceQueries) Template(ctx context.Context, id string) (fjhttp.Template, error) {
	t, err := a.q.Template(ctx, id)
	if err != nil {
		return fjhttp.Template{}, queryError("template", id, err)
	}
	return apiTemplate(t), nil
}

func (a *deviceQueries) Templates(ctx context.Context, page fjhttp.Page) (fjhttp.List[fjhttp.Template], error) {
	p, err := a.q.Templates(ctx, pageRequest(page))
	if err != nil {
		return fjhttp.List[fjhttp.Template]{}, queryError("", "", err)
	}
	out := fjhttp.List[fjhttp.Template]{Items: make([]fjhttp.Template, len(p.Items)), Next: p.Next}
	for i, t := range p.Items {
		out.Items[i] = apiTemplate(t)
	}
	return out, nil
}

// templateCheck remembers, for one answer, which templates exist: a device
// whose template was deleted is shown as unusable.
type templateCheck struct {
	a     *deviceQueries
	known map[string]bool
}

func (c *templateCheck) device(ctx context.Context, d projections.Device) (fjhttp.Device, error) {
	exists, ok := c.known[d.TemplateID]
	if !ok {
		_, err := c.a.q.Template(ctx, d.TemplateID)
		switch {
		case err == nil:
			exists = true
		case errors.Is(err, projections.ErrNotFound):
		default:
			return fjhttp.Device{}, fmt.Errorf("template %s of device %s: %w", d.TemplateID, d.ID, err)
		}
		c.known[d.TemplateID] = exists
	}
	out := fjhttp.Device{ID: d.ID, Name: d.Name, TemplateID: d.TemplateID, Properties: d.Properties}
	if out.Properties == nil {
		out.Properties = map[string]any{}
	}
	if !exists {
		out.Unusable = true
		out.UnusableReason = fmt.Sprintf("Its template %q was deleted: the device cannot be changed or targeted by jobs until the template is published again.", d.TemplateID)
	}
	return out, nil
}

func (c *templateCheck) devices(ctx context.Context, ds []projections.Device) ([]fjhttp.Device, error) {
	out := make([]fjhttp.Device, len(ds))
	for i, d := range ds {
		var err error
		if out[i], err = c.device(ctx, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (a *deviceQueries) check() *templateCheck {
	return &templateCheck{a: a, known: make(map[string]bool)}
}

func (a *deviceQueries) Device(ctx context.Context, id string) (fjhttp.Device, error) {
	d, err := a.q.Device(ctx, id)
	if err != nil {
		return fjhttp.Device{}, queryError("device", id, err)
	}
	return a.check().device(ctx, d)
}

func (a *deviceQueries) Devices(ctx context.Context, f fjhttp.DeviceFilter, page fjhttp.Page) (fjhttp.List[fjhttp.Device], error) {
	var p projections.Page[projections.Device]
	var err error
	if f.TemplateID != "" {
		p, err = a.q.TemplateDevices(ctx, f.TemplateID, pageRequest(page))
	} else {
		p, err = a.q.Devices(ctx, pageRequest(page))
	}
	if err != nil {
		return fjhttp.List[fjhttp.Device]{}, queryError("template", f.TemplateID, err)
	}
	items, err := a.check().devices(ctx, p.Items)
	if err != nil {
		return fjhttp.List[fjhttp.Device]{}, err
	}
	return fjhttp.List[fjhttp.Device]{Items: items, Next: p.Next}, nil
}

func (a *deviceQueries) DeviceSet(ctx context.Context, id string) (fjhttp.DeviceSet, error) {
	s, err := a.q.DeviceSet(ctx, id)
	if err != nil {
		return fjhttp.DeviceSet{}, queryError("device set", id, err)
	}
	return apiDeviceSet(s), nil
}

func (a *deviceQueries) DeviceSets(ctx context.Context, page fjhttp.Page) (fjhttp.List[fjhttp.DeviceSet], error) {
	p, err := a.q.DeviceSets(ctx, pageRequest(page))
	if err != nil {
		return fjhttp.List[fjhttp.DeviceSet]{}, queryError("", "", err)
	}
	out := fjhttp.List[fjhttp.DeviceSet]{Items: make([]fjhttp.DeviceSet, len(p.Items)), Next: p.Next}
	for i, s := range p.Items {
		out.Items[i] = apiDeviceSet(s)
	}
	return out, nil
}

func (a *deviceQueries) SetMembers(ctx context.Context, id string, page fjhttp.Page) (fjhttp.Members, error) {
	s, err := a.q.DeviceSet(ctx, id)
	if err != nil {
		return fjhttp.Members{}, queryError("device set", id, err)
	}
	out := fjhttp.Members{Items: []fjhttp.Device{}, Broken: s.Broken, BrokenReason: s.BrokenReason}
	if s.Broken {
		return out, nil
	}
	p, err := a.q.SetMembers(ctx, id, pageRequest(page))
	if err != nil {
		return fjhttp.Members{}, queryError("device set", id, err)
	}
	if out.Items, err = a.check().devices(ctx, p.Items); err != nil {
		return fjhttp.Members{}, err
	}
	out.Next = p.Next
	return out, nil
}

// templateUsage counts the devices using template id (a ZCARD of the
// projection's by-template index, whatever its size) and the device sets
// naming it (a walk over the set definitions, which are few).
func (a *deviceQueries) templateUsage(ctx context.Context, id string) (devices, sets int, err error) {
	version, err := a.rdb.Get(ctx, projections.ActiveKey(a.root, projections.DevicesProjection)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		version = projections.DefaultVersion
	case err != nil:
		return 0, 0, fmt.Errorf("active devices projection: %w", err)
	}
	prefix := projections.Prefix(a.root, projections.DevicesProjection, version)
	n, err := a.rdb.ZCard(ctx, prefix+projections.TemplateDevicesKey(id)).Result()
	if err != nil {
		return 0, 0, fmt.Errorf("count devices of template %s: %w", id, err)
	}
	req := projections.PageRequest{Limit: projections.MaxLimit}
	for {
		p, err := a.q.DeviceSets(ctx, req)
		if err != nil {
			return 0, 0, fmt.Errorf("count device sets of template %s: %w", id, err)
		}
		for _, s := range p.Items {
			if s.TemplateID == id {
				sets++
			}
		}
		if p.Next == "" {
			return int(n), sets, nil
		}
		req.Cursor = p.Next
	}
}

// runnerWaiter is fjhttp.ConsistencyWaiter over the projection runner: it
// parses the opaque token back into a position.
type runnerWaiter struct {
	runner *projections.Runner
}

var _ fjhttp.ConsistencyWaiter = (*runnerWaiter)(nil)

func (w *runnerWaiter) WaitFor(ctx context.Context, tok string) error {
	pos, err := eventstore.ParsePosition(tok)
	if err != nil {
		return fmt.Errorf("%w: %w", fjhttp.ErrMalformedToken, err)
	}
	return w.runner.WaitFor(ctx, pos)
}
