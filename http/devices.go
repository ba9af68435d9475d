package http

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// This file holds what the template, device and device-set routes need
// of the rest of the service (DeviceCommands, DeviceQueries: declared here,
// by their consumer, and adapted in cmd to the commands and projections
// packages), the plain structs they exchange, and the thin handlers.

// DeviceCommands records what the device routes ask for. Every method
// returns the consistency token of what it recorded; a command that
// changes nothing (a repeated PUT) succeeds with the current token or "".
// Errors: the domain's *domain.Error passes through as it is (its code
// picks 400, 404 or 409 in errors.go, its fields are named); otherwise wrap
// ErrNotFound or ErrConflict, or return a *ValidationError. ImportDevices
// refuses rows with a CodeInvalid domain error (fields "rows[i]....") or an
// *ImportError, both answered 422, and must then record nothing.
type DeviceCommands interface {
	PublishTemplate(ctx context.Context, cmd PublishTemplate) (CommandResult, error)
	DeleteTemplate(ctx context.Context, cmd DeleteTemplate) (CommandResult, error)
	RegisterDevice(ctx context.Context, cmd RegisterDevice) (CommandResult, error)
	DeleteDevice(ctx context.Context, cmd DeleteDevice) (CommandResult, error)
	DefineDeviceSet(ctx context.Context, cmd DefineDeviceSet) (CommandResult, error)
	DeleteDeviceSet(ctx context.Context, cmd DeleteDeviceSet) (CommandResult, error)
	ImportDevices(ctx context.Context, cmd ImportDevices) (ImportResult, error)
	// IssueDeviceKey gives an existing device a new key (its result's
	// DeviceKey), replacing the old one at once.
	IssueDeviceKey(ctx context.Context, cmd IssueDeviceKey) (CommandResult, error)
}

// DeviceQueries answers the device routes from the read models. Get
// methods return an error wrapping ErrNotFound for an unknown (or
// deleted) id; lists return at most page.Limit items after page.Cursor.
type DeviceQueries interface {
	Template(ctx context.Context, templateID string) (Template, error)
	Templates(ctx context.Context, page Page) (List[Template], error)
	Device(ctx context.Context, deviceID string) (Device, error)
	// Devices lists devices, all of them or those of one template.
	Devices(ctx context.Context, filter DeviceFilter, page Page) (List[Device], error)
	DeviceSet(ctx context.Context, setID string) (DeviceSet, error)
	DeviceSets(ctx context.Context, page Page) (List[DeviceSet], error)
	// SetMembers lists the set's current members (never deleted devices);
	// a broken set has none, and says why.
	SetMembers(ctx context.Context, setID string, page Page) (Members, error)
}

// CommandMeta is who asked, and under which IDs: it becomes every
// recorded event's metadata.
type CommandMeta struct {
	// CommandID is, for a request with a valid Idempotency-Key, the key
	// followed by a digest of the request (keyedCommandID), else a fresh
	// ID: event IDs derive from it, so a retried request with the same key
	// is recognised by the event store, and another request reusing the
	// key is not mistaken for it.
	CommandID string
	// CorrelationID is the X-Correlation-Id header when valid, else the
	// CommandID.
	CorrelationID string
	// Actor names the caller: "apikey:<role>:<digest prefix>", or "local"
	// when no keys are configured. Never the key itself.
	Actor string
}

// CommandResult is what a command recorded.
type CommandResult struct {
	// Token is the consistency token (the position of the append), sent as
	// Fleetjobs-Consistency-Token; "" when nothing was recorded.
	Token string
	// Created says the resource did not exist before: 201 rather than 200.
	Created bool
	// Notes are sentences for the operator about consequences ("2 devices
	// and 1 device set use this template: they become unusable").
	Notes []string
	// DeviceKey is the device key the command issued (registering a new
	// device, issuing a new key): shown in this answer only.
	DeviceKey string
}

// SchemaItem is one setting, property or command of a template.
type SchemaItem struct {
	Name   string `json:"name"`
	Schema string `json:"schema"` // number, string, boolean or object
}

// Schemas lists the valid SchemaItem.Schema values.
func Schemas() []string { return []string{"number", "string", "boolean", "object"} }

// PublishTemplate creates or replaces a device template.
type PublishTemplate struct {
	Meta       CommandMeta
	TemplateID string
	Name       string
	Settings   []SchemaItem
	Properties []SchemaItem
	Commands   []SchemaItem
}

// DeleteTemplate deletes a device template; the devices and sets using it
// become unusable (said in the result's Notes).
type DeleteTemplate struct {
	Meta       CommandMeta
	TemplateID string
}

// RegisterDevice creates or replaces a device.
type RegisterDevice struct {
	Meta       CommandMeta
	DeviceID   string
	Name       string
	TemplateID string
	// Properties are the device's property values, as JSON decodes them
	// (float64, string, bool, map[string]any...).
	Properties map[string]any
}

// IssueDeviceKey gives a device a new key.
type IssueDeviceKey struct {
	Meta     CommandMeta
	DeviceID string
}

// DeleteDevice deletes a device.
type DeleteDevice struct {
	Meta     CommandMeta
	DeviceID string
}

// Condition is one filter of a device set: property op value.
type Condition struct {
	Property string `json:"property"`
	Op       string `json:"op"` // eq ne lt le gt ge contains
	Value    any    `json:"value"`
}

// Ops lists the valid Condition.Op values.
func Ops() []string { return []string{"eq", "ne", "lt", "le", "gt", "ge", "contains"} }

// DefineDeviceSet creates or replaces a device set.
type DefineDeviceSet struct {
	Meta       CommandMeta
	SetID      string
	Name       string
	TemplateID string
	Conditions []Condition
}

// DeleteDeviceSet deletes a device set.
type DeleteDeviceSet struct {
	Meta  CommandMeta
	SetID string
}

// ImportDevices registers many devices at once: all of them, or (any row
// refused) none.
type ImportDevices struct {
	Meta CommandMeta
	// Rows are the parsed rows, in the order sent; every row not in
	// Refused has passed the shape checks (IDs, name, no duplicate
	// deviceId).
	Rows []ImportRow
	// Refused holds the rows the HTTP layer refused (by index), if any.
	// Then nothing is recorded: the other rows are only checked, and the
	// answer is their problems (an error as for an import), nil if none,
	// so that one answer lists every problem of the import.
	Refused map[int]bool
}

// ImportRow is one device of an import.
type ImportRow struct {
	DeviceID   string
	Name       string
	TemplateID string
	Properties map[string]any
}

// ImportResult counts what an import recorded.
type ImportResult struct {
	Token      string // consistency token of the last append; "" if nothing was recorded
	Registered int    // devices that did not exist
	Updated    int    // devices that existed and changed
	Unchanged  int    // devices already exactly so
	// Keys are the keys of the devices this import registered: shown in
	// its answer only.
	Keys []DeviceKey
}

// DeviceKey is a device's key, in the answer of the command that issued
// it (and nowhere else: the service keeps only its hash).
type DeviceKey struct {
	DeviceID  string `json:"deviceId"`
	DeviceKey string `json:"deviceKey"`
}

// DeviceFilter narrows GET /devices.
type DeviceFilter struct {
	TemplateID string // "" means every template
}

// Template is a device template as the API shows it.
type Template struct {
	ID         string       `json:"id"`
	Name       string       `json:"name"`
	Settings   []SchemaItem `json:"settings"`
	Properties []SchemaItem `json:"properties"`
	Commands   []SchemaItem `json:"commands"`
	Notes      []string     `json:"notes,omitempty"` // on command answers only
}

// Device is a device as the API shows it.
type Device struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	TemplateID string         `json:"templateId"`
	Properties map[string]any `json:"properties"`
	// Unusable is set when the device's template was deleted: it cannot be
	// targeted by jobs; UnusableReason says why in a sentence.
	Unusable       bool     `json:"unusable,omitempty"`
	UnusableReason string   `json:"unusableReason,omitempty"`
	Notes          []string `json:"notes,omitempty"` // on command answers only
}

// DeviceSet is a device set as the API shows it.
type DeviceSet struct {
	ID         string      `json:"id"`
	Name       string      `json:"name"`
	TemplateID string      `json:"templateId"`
	Conditions []Condition `json:"conditions"`
	// Broken is set when the set's template is deleted or a condition
	// names a property the template lacks; BrokenReason says which.
	Broken       bool     `json:"broken"`
	BrokenReason string   `json:"brokenReason,omitempty"`
	Notes        []string `json:"notes,omitempty"` // on command answers only
}

// List is one page of a list answer: {items, next}; next is "" on the
// last page.
type List[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next"`
}

// Members is one page of a set's members, with the set's broken state (a
// broken set lists no devices, and says why).
type Members struct {
	Items        []Device `json:"items"`
	Next         string   `json:"next"`
	Broken       bool     `json:"broken"`
	BrokenReason string   `json:"brokenReason,omitempty"`
}

// Deleted answers a DELETE.
type Deleted struct {
	ID      string   `json:"id"`
	Deleted bool     `json:"deleted"`
	Notes   []string `json:"notes,omitempty"`
}

// registeredDevice is the answer to a PUT of a device: the device, and the
// key of a device this PUT registered (shown once; a later PUT, or a retry
// of this one, answers without it).
type registeredDevice struct {
	Device
	DeviceKey string `json:"deviceKey,omitempty"`
}

// Request bodies. They are the API's JSON, kept apart from the command
// structs so that the wire format and the commands can change separately.

type templateBody struct {
	Name       string       `json:"name"`
	Settings   []SchemaItem `json:"settings"`
	Properties []SchemaItem `json:"properties"`
	Commands   []SchemaItem `json:"commands"`
}

type deviceBody struct {
	Name       string         `json:"name"`
	TemplateID string         `json:"templateId"`
	Properties map[string]any `json:"properties"`
}

type deviceSetBody struct {
	Name       string      `json:"name"`
	TemplateID string      `json:"templateId"`
	Conditions []Condition `json:"conditions"`
}

// maxNameLength bounds display names.
const maxNameLength = 200

func checkName(fe *fieldErrors, field, name string) {
	switch {
	case strings.TrimSpace(name) == "":
		fe.add(field, "is required")
	case len(name) > maxNameLength:
		fe.add(field, "must be at most 200 bytes")
	}
}

func checkSchemaItems(fe *fieldErrors, field string, items []SchemaItem) {
	seen := make(map[string]int, len(items))
	for i, it := range items {
		path := field + "[" + itoa(i) + "]"
		checkName(fe, path+".name", it.Name)
		if j, dup := seen[it.Name]; dup && it.Name != "" {
			fe.add(path+".name", "duplicates "+field+"["+itoa(j)+"].name")
		}
		seen[it.Name] = i
		if !slices.Contains(Schemas(), it.Schema) {
			fe.add(path+".schema", "must be one of number, string, boolean, object")
		}
	}
}

func checkProperties(fe *fieldErrors, field string, props map[string]any) {
	for _, k := range sortedKeys(props) {
		if strings.TrimSpace(k) == "" || len(k) > maxNameLength {
			fe.add(field, "property names must be 1 to 200 bytes, not blank")
		}
	}
}

// meta builds a command's metadata from the request.
func (s *Server) meta(c echo.Context) (CommandMeta, error) {
	var fe fieldErrors
	m := CommandMeta{Actor: actorOf(c)}
	if key := c.Request().Header.Get(IdempotencyKeyHeader); key != "" {
		checkID(&fe, IdempotencyKeyHeader, key)
		m.CommandID = keyedCommandID(c, key)
	} else {
		m.CommandID = s.newID()
	}
	m.CorrelationID = m.CommandID
	if corr := c.Request().Header.Get("X-Correlation-Id"); corr != "" {
		checkID(&fe, "X-Correlation-Id", corr)
		m.CorrelationID = corr
	}
	return m, fe.err()
}

// commandAnswer renders a command's result: the token header, 201 or 200.
func commandAnswer(c echo.Context, res CommandResult, body any) error {
	setConsistencyToken(c, res.Token)
	code := http.StatusOK
	if res.Created {
		code = http.StatusCreated
	}
	return c.JSON(code, body)
}

func deletedAnswer(c echo.Context, id string, res CommandResult) error {
	setConsistencyToken(c, res.Token)
	return c.JSON(http.StatusOK, Deleted{ID: id, Deleted: true, Notes: res.Notes})
}

// putTemplate is PUT /device-templates/{templateId}.
func (s *Server) putTemplate(c echo.Context) error {
	id, err := pathID(c, "templateId")
	if err != nil {
		return err
	}
	var b templateBody
	if err := s.bindJSON(c, &b); err != nil {
		return err
	}
	var fe fieldErrors
	checkName(&fe, "name", b.Name)
	checkSchemaItems(&fe, "settings", b.Settings)
	checkSchemaItems(&fe, "properties", b.Properties)
	checkSchemaItems(&fe, "commands", b.Commands)
	if err := fe.err(); err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.devices.PublishTemplate(c.Request().Context(), PublishTemplate{
		Meta: meta, TemplateID: id, Name: b.Name,
		Settings: orEmpty(b.Settings), Properties: orEmpty(b.Properties), Commands: orEmpty(b.Commands),
	})
	if err != nil {
		return err
	}
	return commandAnswer(c, res, Template{ID: id, Name: b.Name,
		Settings: orEmpty(b.Settings), Properties: orEmpty(b.Properties), Commands: orEmpty(b.Commands), Notes: res.Notes})
}

// deleteTemplate is DELETE /device-templates/{templateId}.
func (s *Server) deleteTemplate(c echo.Context) error {
	id, err := pathID(c, "templateId")
	if err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.devices.DeleteTemplate(c.Request().Context(), DeleteTemplate{Meta: meta, TemplateID: id})
	if err != nil {
		return err
	}
	return deletedAnswer(c, id, res)
}

// getTemplate is GET /device-templates/{templateId}.
func (s *Server) getTemplate(c echo.Context) error {
	id, err := pathID(c, "templateId")
	if err != nil {
		return err
	}
	t, err := s.queries.Template(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, t)
}

// listTemplates is GET /device-templates.
func (s *Server) listTemplates(c echo.Context) error {
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	l, err := s.queries.Templates(c.Request().Context(), page)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, nonNil(l))
}

// putDevice is PUT /devices/{deviceId}.
func (s *Server) putDevice(c echo.Context) error {
	id, err := pathID(c, "deviceId")
	if err != nil {
		return err
	}
	var b deviceBody
	if err := s.bindJSON(c, &b); err != nil {
		return err
	}
	var fe fieldErrors
	checkName(&fe, "name", b.Name)
	checkID(&fe, "templateId", b.TemplateID)
	checkProperties(&fe, "properties", b.Properties)
	if err := fe.err(); err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	props := orEmptyMap(b.Properties)
	res, err := s.devices.RegisterDevice(c.Request().Context(), RegisterDevice{
		Meta: meta, DeviceID: id, Name: b.Name, TemplateID: b.TemplateID, Properties: props,
	})
	if err != nil {
		return err
	}
	return commandAnswer(c, res, registeredDevice{
		Device:    Device{ID: id, Name: b.Name, TemplateID: b.TemplateID, Properties: props, Notes: res.Notes},
		DeviceKey: res.DeviceKey,
	})
}

// issueKeySuffix ends the path of POST /devices/{deviceId}:issueKey.
const issueKeySuffix = ":issueKey"

// issueDeviceKey is POST /devices/{deviceId}:issueKey: a new key for a
// device that lost its own (or whose key leaked); the old key stops working
// at once. Echo cannot route a parameter followed by a literal, so the
// route is POST /devices/{deviceId} and the suffix is checked here (device
// IDs may hold ':', so only the last ":issueKey" is the verb).
func (s *Server) issueDeviceKey(c echo.Context) error {
	raw, ok := strings.CutSuffix(c.Param("deviceId"), issueKeySuffix)
	if !ok {
		// The route is POST /devices/{deviceId} for Echo, so a 405 on
		// that path lists POST in Allow; the one POST there is the
		// :issueKey action, which the detail names.
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no route for POST %s; a device takes one action: POST %s/devices/{deviceId}%s", c.Request().URL.Path, APIBase, issueKeySuffix))
	}
	var fe fieldErrors
	checkID(&fe, "deviceId", raw)
	if err := fe.err(); err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.devices.IssueDeviceKey(c.Request().Context(), IssueDeviceKey{Meta: meta, DeviceID: raw})
	if err != nil {
		return err
	}
	setConsistencyToken(c, res.Token)
	return c.JSON(http.StatusOK, DeviceKey{DeviceID: raw, DeviceKey: res.DeviceKey})
}

// deleteDevice is DELETE /devices/{deviceId}.
func (s *Server) deleteDevice(c echo.Context) error {
	id, err := pathID(c, "deviceId")
	if err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.devices.DeleteDevice(c.Request().Context(), DeleteDevice{Meta: meta, DeviceID: id})
	if err != nil {
		return err
	}
	return deletedAnswer(c, id, res)
}

// getDevice is GET /devices/{deviceId}.
func (s *Server) getDevice(c echo.Context) error {
	id, err := pathID(c, "deviceId")
	if err != nil {
		return err
	}
	d, err := s.queries.Device(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}

// listDevices is GET /devices[?templateId=].
func (s *Server) listDevices(c echo.Context) error {
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	f := DeviceFilter{TemplateID: c.QueryParam("templateId")}
	if f.TemplateID != "" && !validID(f.TemplateID) {
		return &ValidationError{Fields: []FieldError{{Field: "templateId", Message: idMessage}}}
	}
	l, err := s.queries.Devices(c.Request().Context(), f, page)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, nonNil(l))
}

// putDeviceSet is PUT /device-sets/{setId}.
func (s *Server) putDeviceSet(c echo.Context) error {
	id, err := pathID(c, "setId")
	if err != nil {
		return err
	}
	var b deviceSetBody
	if err := s.bindJSON(c, &b); err != nil {
		return err
	}
	var fe fieldErrors
	checkName(&fe, "name", b.Name)
	checkID(&fe, "templateId", b.TemplateID)
	for i, cond := range b.Conditions {
		path := "conditions[" + itoa(i) + "]"
		checkName(&fe, path+".property", cond.Property)
		if !slices.Contains(Ops(), cond.Op) {
			fe.add(path+".op", "must be one of eq, ne, lt, le, gt, ge, contains")
		}
		if cond.Value == nil {
			fe.add(path+".value", "is required")
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	conds := orEmpty(b.Conditions)
	res, err := s.devices.DefineDeviceSet(c.Request().Context(), DefineDeviceSet{
		Meta: meta, SetID: id, Name: b.Name, TemplateID: b.TemplateID, Conditions: conds,
	})
	if err != nil {
		return err
	}
	return commandAnswer(c, res, DeviceSet{ID: id, Name: b.Name, TemplateID: b.TemplateID, Conditions: conds, Notes: res.Notes})
}

// deleteDeviceSet is DELETE /device-sets/{setId}.
func (s *Server) deleteDeviceSet(c echo.Context) error {
	id, err := pathID(c, "setId")
	if err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.devices.DeleteDeviceSet(c.Request().Context(), DeleteDeviceSet{Meta: meta, SetID: id})
	if err != nil {
		return err
	}
	return deletedAnswer(c, id, res)
}

// getDeviceSet is GET /device-sets/{setId}.
func (s *Server) getDeviceSet(c echo.Context) error {
	id, err := pathID(c, "setId")
	if err != nil {
		return err
	}
	d, err := s.queries.DeviceSet(c.Request().Context(), id)
	if err != nil {
		return err
	}
	d.Conditions = orEmpty(d.Conditions)
	return c.JSON(http.StatusOK, d)
}

// listDeviceSets is GET /device-sets.
func (s *Server) listDeviceSets(c echo.Context) error {
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	l, err := s.queries.DeviceSets(c.Request().Context(), page)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, nonNil(l))
}

// listSetMembers is GET /device-sets/{setId}/devices.
func (s *Server) listSetMembers(c echo.Context) error {
	id, err := pathID(c, "setId")
	if err != nil {
		return err
	}
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	m, err := s.queries.SetMembers(c.Request().Context(), id, page)
	if err != nil {
		return err
	}
	m.Items = orEmpty(m.Items)
	return c.JSON(http.StatusOK, m)
}

// orEmpty makes a nil slice an empty one: lists are [] in answers, never
// null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func nonNil[T any](l List[T]) List[T] {
	l.Items = orEmpty(l.Items)
	return l
}
