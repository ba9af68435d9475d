package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// DevicesProjection is the name of the projection holding templates,
// devices, device sets and set membership: one projection, because
// membership is computed from all three and must be rebuilt with them.
const DevicesProjection = "devices"

// The keys of the devices projection, relative to its version's prefix.
// Every sorted set has score 0 for every member, so that it is ordered by
// ID and pages with ZRANGE BYLEX.
const (
	templatesKey = "templates" // sorted set of template IDs
	devicesKey   = "devices"   // sorted set of device IDs (deleted ones removed)
	setsKey      = "sets"      // sorted set of device set IDs
)

// TemplateKey is the key of a template's document (JSON Template).
func TemplateKey(id string) string { return "template:" + id }

// TemplateDevicesKey is the sorted set of the devices using template id.
func TemplateDevicesKey(id string) string { return "template:" + id + ":devices" }

// DeviceKey is the key of a device's document (JSON Device).
func DeviceKey(id string) string { return "device:" + id }

// SetKey is the key of a device set's document (JSON DeviceSet).
func SetKey(id string) string { return "set:" + id }

// SetMembersKey is the sorted set of a device set's members.
func SetMembersKey(id string) string { return "set:" + id + ":members" }

// Template is the read model of a device template.
type Template struct {
	ID         string              `json:"id"`
	Name       string              `json:"name"`
	Settings   []device.Capability `json:"settings"`
	Properties []device.Capability `json:"properties"`
	Commands   []device.Capability `json:"commands"`
	UpdatedAt  time.Time           `json:"updatedAt"` // when it was last published
}

// Device is the read model of a device.
type Device struct {
	ID         string         `json:"id"`
	Name       string         `json:"name"`
	TemplateID string         `json:"templateId"`
	Properties map[string]any `json:"properties"`
	UpdatedAt  time.Time      `json:"updatedAt"` // when it was last registered or changed
}

// DeviceSet is the read model of a device set: its definition and whether
// it is broken (see device.BrokenReason), which changes when its template
// does.
type DeviceSet struct {
	ID           string             `json:"id"`
	Name         string             `json:"name"`
	TemplateID   string             `json:"templateId"`
	Conditions   []device.Condition `json:"conditions"`
	Broken       bool               `json:"broken"`
	BrokenReason string             `json:"brokenReason,omitempty"`
	UpdatedAt    time.Time          `json:"updatedAt"` // when it was last defined
}

func (t Template) domain() device.Template {
	return device.Template{ID: t.ID, Name: t.Name, Settings: t.Settings, Properties: t.Properties,
		Commands: t.Commands, Published: true}
}

func (s DeviceSet) domain() device.Set {
	return device.Set{ID: s.ID, Name: s.Name, TemplateID: s.TemplateID, Conditions: s.Conditions, Defined: true}
}

func (d Device) domain() device.Device {
	return device.Device{ID: d.ID, Name: d.Name, TemplateID: d.TemplateID, Properties: d.Properties, Registered: true}
}

// DeviceState is what the devices projector knows when it applies an event.
// ApplyDeviceEvent updates it to the state after the event.
type DeviceState struct {
	Templates map[string]Template  // every existing template
	Sets      map[string]DeviceSet // every existing set
	// Devices holds the existing devices an event may touch: the device of
	// a device event and, for an event that recomputes the members of a
	// template's sets, every device of that template unless Stored is
	// set. A device missing from it (and from Stored) does not exist.
	Devices map[string]Device
	// Stored, when set, calls fn with every device of template tid as the
	// read models hold it (before the changes being applied): an event
	// that recomputes the members of a template's sets then checks the
	// devices in Devices, and those of Stored that Devices does not hold
	// and that were not deleted meanwhile, so that a template of a
	// million devices is never held in memory at once. It reports a read
	// error on its own (DevicesProjector.Apply returns it).
	Stored func(tid string, fn func(Device))

	byTemplate map[string][]string // set IDs by template, sorted; nil: to rebuild
	deleted    map[string]bool     // devices deleted since Stored's state
}

// setsOf returns the IDs of the sets of template tid, sorted.
func (s *DeviceState) setsOf(tid string) []string {
	if s.byTemplate == nil {
		s.byTemplate = make(map[string][]string)
		for id, set := range s.Sets {
			s.byTemplate[set.TemplateID] = append(s.byTemplate[set.TemplateID], id)
		}
		for _, ids := range s.byTemplate {
			slices.Sort(ids)
		}
	}
	return s.byTemplate[tid]
}

func (s *DeviceState) matches(setID string, d Device) bool {
	set := s.Sets[setID]
	return device.Matches(set.domain(), s.template(set.TemplateID), d.domain())
}

// template returns the domain state of template id: the zero Template when
// it does not exist, which BrokenReason and Matches read as deleted.
func (s *DeviceState) template(id string) device.Template {
	t, ok := s.Templates[id]
	if !ok {
		return device.Template{}
	}
	return t.domain()
}

// ApplyDeviceEvent is the devices projector: given the state and one event
// of a template-, device- or deviceset- stream, it updates s and appends the
// changes to the read models to ops. It does no I/O. Events of other types
// change nothing.
func ApplyDeviceEvent(s *DeviceState, e Event, ops []Op) []Op {
	at := e.Metadata.OccurredAt.UTC()
	switch ev := e.Data.(type) {
	case device.TemplatePublished:
		t := Template{ID: ev.TemplateID, Name: ev.Name, Settings: ev.Settings, Properties: ev.Properties,
			Commands: ev.Commands, UpdatedAt: at}
		s.Templates[t.ID] = t
		ops = append(ops, Set(TemplateKey(t.ID), mustJSON(t)), ZAdd(templatesKey, 0, t.ID))
		return s.recomputeSets(s.setsOf(t.ID), false, ops)
	case device.TemplateDeleted:
		if _, ok := s.Templates[ev.TemplateID]; !ok {
			return ops
		}
		delete(s.Templates, ev.TemplateID)
		// The devices keep their template ID (they are unusable until it is
		// published again) and stay listed under it.
		ops = append(ops, Del(TemplateKey(ev.TemplateID)), ZRem(templatesKey, ev.TemplateID))
		return s.recomputeSets(s.setsOf(ev.TemplateID), false, ops)
	case device.Registered:
		old, had := s.Devices[ev.DeviceID]
		d := Device{ID: ev.DeviceID, Name: ev.Name, TemplateID: ev.TemplateID, Properties: ev.Properties, UpdatedAt: at}
		if d.Properties == nil {
			d.Properties = map[string]any{}
		}
		return s.putDevice(old, had, d, ops)
	case device.PropertiesChanged:
		old, had := s.Devices[ev.DeviceID]
		if !had {
			return ops // the domain refuses changes to a device that does not exist
		}
		d := old
		d.Properties, d.UpdatedAt = ev.Properties, at
		if d.Properties == nil {
			d.Properties = map[string]any{}
		}
		return s.putDevice(old, had, d, ops)
	case device.Deleted:
		old, had := s.Devices[ev.DeviceID]
		if !had {
			return ops
		}
		delete(s.Devices, ev.DeviceID)
		if s.Stored != nil {
			if s.deleted == nil {
				s.deleted = make(map[string]bool)
			}
			s.deleted[ev.DeviceID] = true
		}
		ops = append(ops, Del(DeviceKey(old.ID)), ZRem(devicesKey, old.ID), ZRem(TemplateDevicesKey(old.TemplateID), old.ID))
		for _, sid := range s.setsOf(old.TemplateID) {
			if s.matches(sid, old) {
				ops = append(ops, ZRem(SetMembersKey(sid), old.ID))
			}
		}
		return ops
	case device.SetDefined:
		set := DeviceSet{ID: ev.SetID, Name: ev.Name, TemplateID: ev.TemplateID, Conditions: ev.Conditions, UpdatedAt: at}
		if set.Conditions == nil {
			set.Conditions = []device.Condition{}
		}
		s.Sets[set.ID] = set
		s.byTemplate = nil
		ops = append(ops, ZAdd(setsKey, 0, set.ID))
		return s.recomputeSets([]string{set.ID}, true, ops)
	case device.SetDeleted:
		if _, ok := s.Sets[ev.SetID]; !ok {
			return ops
		}
		delete(s.Sets, ev.SetID)
		s.byTemplate = nil
		return append(ops, Del(SetKey(ev.SetID)), Del(SetMembersKey(ev.SetID)), ZRem(setsKey, ev.SetID))
	}
	return ops
}

// putDevice records d (which replaces old, if had) and moves it between
// template lists and set memberships.
func (s *DeviceState) putDevice(old Device, had bool, d Device, ops []Op) []Op {
	s.Devices[d.ID] = d
	ops = append(ops, Set(DeviceKey(d.ID), deviceJSON(d)))
	if !had {
		ops = append(ops, ZAdd(devicesKey, 0, d.ID))
	}
	if !had || old.TemplateID != d.TemplateID {
		if had {
			ops = append(ops, ZRem(TemplateDevicesKey(old.TemplateID), d.ID))
		}
		ops = append(ops, ZAdd(TemplateDevicesKey(d.TemplateID), 0, d.ID))
	}
	sets := s.setsOf(d.TemplateID)
	if had && old.TemplateID != d.TemplateID {
		sets = append(slices.Clip(s.setsOf(old.TemplateID)), sets...)
	}
	for _, sid := range sets {
		was := had && s.matches(sid, old)
		is := s.matches(sid, d)
		switch {
		case is && !was:
			ops = append(ops, ZAdd(SetMembersKey(sid), 0, d.ID))
		case was && !is:
			ops = append(ops, ZRem(SetMembersKey(sid), d.ID))
		}
	}
	return ops
}

// recomputeSets brings the documents (broken state) and the members of the
// sets ids up to date with their templates: every device of each set's
// template is checked, so s.Devices must hold them all. The document is
// rewritten when it changed, or always if write.
func (s *DeviceState) recomputeSets(ids []string, write bool, ops []Op) []Op {
	for _, sid := range ids {
		set := s.Sets[sid]
		reason, broken := device.BrokenReason(set.domain(), s.template(set.TemplateID))
		if write || broken != set.Broken || reason != set.BrokenReason {
			set.Broken, set.BrokenReason = broken, reason
			s.Sets[sid] = set
			ops = append(ops, Set(SetKey(sid), mustJSON(set)))
		}
		ops = append(ops, Del(SetMembersKey(sid)))
		if broken {
			continue
		}
		members := make([]string, 0)
		for id, d := range s.Devices {
			if d.TemplateID == set.TemplateID && s.matches(sid, d) {
				members = append(members, id)
			}
		}
		if s.Stored != nil {
			s.Stored(set.TemplateID, func(d Device) {
				if _, held := s.Devices[d.ID]; !held && !s.deleted[d.ID] && s.matches(sid, d) {
					members = append(members, d.ID)
				}
			})
		}
		slices.Sort(members)
		key := SetMembersKey(sid)
		for _, id := range members {
			ops = append(ops, ZAdd(key, 0, id))
		}
	}
	return ops
}

// mustJSON encodes a read-model document. The documents are plain structs
// of strings, numbers, JSON values decoded from events and times, which
// always encode.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("projections: encode %T: %v", v, err))
	}
	return string(b)
}

// DevicesProjector keeps the devices projection: templates, devices (all,
// and by template), device sets with their broken state, and set
// membership. Templates and set definitions, being few, stay in memory;
// devices are read from Redis for each batch.
type DevicesProjector struct {
	templates map[string]Template
	sets      map[string]DeviceSet
	// cache holds the devices recent batches touched, as this projector
	// left them (a device missing from it is read from Redis). It is
	// exact: the Writer commits a batch only if nobody else wrote since
	// this projector's last batch (the WATCHed checkpoint), and after any
	// failure Load empties it. It saves reading and decoding the documents
	// of devices that change often.
	cache     map[string]Device
	cacheSize int
}

// DefaultDeviceCacheSize is how many devices the devices projector keeps
// in memory between batches (a few hundred bytes each).
const DefaultDeviceCacheSize = 100_000

// NewDevicesProjector returns the devices projector, keeping about
// cacheSize devices in memory between batches (0: DefaultDeviceCacheSize;
// negative: none beyond one batch).
func NewDevicesProjector(cacheSize int) *DevicesProjector {
	if cacheSize == 0 {
		cacheSize = DefaultDeviceCacheSize
	}
	return &DevicesProjector{cacheSize: max(cacheSize, 0)}
}

// Name returns DevicesProjection.
func (p *DevicesProjector) Name() string { return DevicesProjection }

// StreamPrefixes returns the template, device and device-set stream
// prefixes.
func (p *DevicesProjector) StreamPrefixes() []string {
	return []string{eventstore.TemplateStreamPrefix, eventstore.DeviceStreamPrefix, eventstore.DeviceSetStreamPrefix}
}

// Load reads every template and set definition, and forgets the cached
// devices.
func (p *DevicesProjector) Load(ctx context.Context, r Reader) error {
	p.cache = make(map[string]Device)
	var err error
	if p.templates, err = loadAll[Template](ctx, r, templatesKey, TemplateKey); err != nil {
		return err
	}
	p.sets, err = loadAll[DeviceSet](ctx, r, setsKey, SetKey)
	return err
}

func loadAll[T any](ctx context.Context, r Reader, index string, key func(string) string) (map[string]T, error) {
	ids, err := r.Members(ctx, index)
	if err != nil {
		return nil, err
	}
	docs, err := readDocs[T](ctx, r, ids, key)
	if err != nil {
		return nil, err
	}
	return docs, nil
}

// readDocs reads the JSON documents of ids; missing ones are left out.
func readDocs[T any](ctx context.Context, r Reader, ids []string, key func(string) string) (map[string]T, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = key(id)
	}
	vals, err := r.MGet(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(vals))
	for i, id := range ids {
		s, ok := vals[keys[i]]
		if !ok {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", r.Key(keys[i]), err)
		}
		out[id] = v
	}
	return out, nil
}

// Apply reads the devices the events touch (and every device of a template
// whose sets an event recomputes), then applies the events one by one with
// ApplyDeviceEvent, so that each sees the ones before it.
func (p *DevicesProjector) Apply(ctx context.Context, r Reader, events []Event, ops []Op) ([]Op, error) {
	if p.templates == nil {
		return ops, fmt.Errorf("devices projector: not loaded")
	}
	if len(p.cache) > p.cacheSize {
		clear(p.cache) // crude but cheap: the next batches refill it
	}
	// The cache is the batch's overlay: devices are read into it, and
	// ApplyDeviceEvent updates it in place, so it holds every device's
	// state after the batch.
	var ids []string // to read from Redis
	queued := make(map[string]bool)
	addID := func(id string) {
		if _, ok := p.cache[id]; !ok && !queued[id] {
			queued[id] = true
			ids = append(ids, id)
		}
	}
	for _, e := range events {
		switch ev := e.Data.(type) {
		case device.Registered:
			addID(ev.DeviceID)
		case device.PropertiesChanged:
			addID(ev.DeviceID)
		case device.Deleted:
			addID(ev.DeviceID)
		}
	}
	read, err := readDocs[Device](ctx, r, ids, DeviceKey)
	if err != nil {
		return ops, err
	}
	for id, d := range read {
		p.cache[id] = d
	}
	// The devices of a template whose sets an event recomputes are read
	// from Redis a chunk at a time, not into the cache.
	var storedErr error
	stored := func(tid string, fn func(Device)) {
		if storedErr == nil {
			storedErr = eachStoredDevice(ctx, r, tid, fn)
		}
	}
	s := DeviceState{Templates: p.templates, Sets: p.sets, Devices: p.cache, Stored: stored}
	for _, e := range events {
		ops = ApplyDeviceEvent(&s, e, ops)
	}
	if storedErr != nil {
		return ops, fmt.Errorf("read the devices of a template: %w", storedErr)
	}
	return ops, nil
}

// eachStoredDevice calls fn with every device listed under template tid
// in the read models, a chunk at a time.
func eachStoredDevice(ctx context.Context, r Reader, tid string, fn func(Device)) error {
	return walkDocs(ctx, r, TemplateDevicesKey(tid), DeviceKey, func(ids []string, docs map[string]string) error {
		for _, id := range ids {
			doc, ok := docs[id]
			if !ok {
				continue
			}
			var d Device
			if err := json.Unmarshal([]byte(doc), &d); err != nil {
				return fmt.Errorf("decode %s: %w", r.Key(DeviceKey(id)), err)
			}
			fn(d)
		}
		return nil
	})
}
