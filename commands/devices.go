package commands

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// templates, devices and sets are the Deciders of package device as the
// command path sees them.
func templates() aggregate[device.Template, device.TemplateCommand, device.TemplateEvent] {
	return aggregate[device.Template, device.TemplateCommand, device.TemplateEvent]{kind: "template", decide: device.DecideTemplate, evolve: device.EvolveTemplate}
}

func devices() aggregate[device.Device, device.DeviceCommand, device.DeviceEvent] {
	return aggregate[device.Device, device.DeviceCommand, device.DeviceEvent]{kind: "device", decide: device.DecideDevice, evolve: device.EvolveDevice}
}

func sets() aggregate[device.Set, device.SetCommand, device.SetEvent] {
	return aggregate[device.Set, device.SetCommand, device.SetEvent]{kind: "device set", decide: device.DecideSet, evolve: device.EvolveSet}
}

// PublishTemplate publishes a device template (PUT /device-templates/{id}).
func (h *Handler) PublishTemplate(ctx context.Context, meta Meta, cmd device.PublishTemplate) (Result, error) {
	if err := domain.CheckID("templateId", cmd.TemplateID); err != nil {
		return Result{}, err
	}
	return handle(ctx, h, templates(), eventstore.TemplateStream(cmd.TemplateID), device.TemplateCommand(cmd), h.fill(meta))
}

// DeleteTemplate deletes a device template (DELETE /device-templates/{id}).
// The devices and sets that use it stay; the sets become broken.
func (h *Handler) DeleteTemplate(ctx context.Context, meta Meta, cmd device.DeleteTemplate) (Result, error) {
	if err := domain.CheckID("templateId", cmd.TemplateID); err != nil {
		return Result{}, err
	}
	return handle(ctx, h, templates(), eventstore.TemplateStream(cmd.TemplateID), device.TemplateCommand(cmd), h.fill(meta))
}

// KeyDrawer draws a device key: the key, shown once to whoever registered
// the device, and its stored form (a hash), which is all the log keeps.
// In the service it is dispatch/mqtt's NewKey over crypto/rand and HashKey.
type KeyDrawer func() (key, hash string, err error)

// WithDeviceKeys makes the Handler give every new device a key (and enables
// IssueDeviceKey). Without it devices are registered without keys.
func WithDeviceKeys(draw KeyDrawer) Option {
	return func(h *Handler) { h.drawKey = draw }
}

// Device keys and retries. A key is random, so a retried command draws
// another one; only the hash is recorded, and only the answer of the call
// whose append recorded it may show a key. Two things keep a retry from
// showing a key that is not the device's:
//   - a retry whose command ID the stream already holds is answered from
//     the stream (Result.Events is 0): no key;
//   - the ID of a DeviceKeyIssued event derives from its hash as well as
//     from the command ID (eventID), so a retry that decided on a stale
//     state, after an append that landed but whose answer was lost, does
//     not pass for the original append (which the store would recognise
//     by the event IDs, and answer as a success without storing the new
//     hash): the store reports a conflict, the handler catches up, finds
//     the command recorded and answers without a key.

// eventID is EventID, with a DeviceKeyIssued's hash mixed into the stream
// part (see above).
func eventID(commandID, stream string, index int, ev any) uuid.UUID {
	if k, ok := ev.(device.KeyIssued); ok {
		return EventID(commandID, stream+"\x00"+k.KeyHash, index)
	}
	return EventID(commandID, stream, index)
}

// newKey draws a device key, or none without WithDeviceKeys.
func (h *Handler) newKey() (key, hash string, err error) {
	if h.drawKey == nil {
		return "", "", nil
	}
	key, hash, err = h.drawKey()
	if err != nil {
		return "", "", fmt.Errorf("draw a device key: %w", err)
	}
	return key, hash, nil
}

// RegisterDevice registers or changes a device (PUT /devices/{id}). The
// command's Template is filled in here from the template's stream, and its
// KeyHash from a key drawn here: the Result carries the key (DeviceKey)
// when this call registered the device, and only then.
func (h *Handler) RegisterDevice(ctx context.Context, meta Meta, cmd device.Register) (Result, error) {
	if err := domain.CheckID("deviceId", cmd.DeviceID); err != nil {
		return Result{}, err
	}
	t, err := h.Template(ctx, cmd.TemplateID)
	if err != nil {
		return Result{}, err
	}
	cmd.Template = t
	key, hash, err := h.newKey()
	if err != nil {
		return Result{}, err
	}
	cmd.KeyHash = hash
	res, err := handle(ctx, h, devices(), eventstore.DeviceStream(cmd.DeviceID), device.DeviceCommand(cmd), h.fill(meta))
	if err == nil && issuedOnRegister(res, hash) {
		res.DeviceKey = key
	}
	return res, err
}

// issuedOnRegister reports whether a Register that succeeded with res
// recorded its key: it created the device's stream, and a new device's
// decision records DeviceKeyIssued with DeviceRegistered.
func issuedOnRegister(res Result, hash string) bool {
	return hash != "" && res.Created && res.Events > 0
}

// IssueDeviceKey gives an existing device a new key (POST
// /devices/{id}:issueKey); its old key stops working at once. The Result
// carries the new key. A retry of a call that already issued its key
// (same command ID) is refused as a CodeConflict: that key was shown only
// in the first answer, and this call cannot show it; a new command issues
// a new key.
func (h *Handler) IssueDeviceKey(ctx context.Context, meta Meta, deviceID string) (Result, error) {
	if err := domain.CheckID("deviceId", deviceID); err != nil {
		return Result{}, err
	}
	if h.drawKey == nil {
		return Result{}, fmt.Errorf("device %s: no device keys are configured (WithDeviceKeys)", deviceID)
	}
	key, hash, err := h.newKey()
	if err != nil {
		return Result{}, err
	}
	meta = h.fill(meta)
	res, err := handle(ctx, h, devices(), eventstore.DeviceStream(deviceID), device.DeviceCommand(device.IssueKey{DeviceID: deviceID, KeyHash: hash}), meta)
	if err != nil {
		return Result{}, err
	}
	if res.Events == 0 {
		return Result{}, domain.Conflict("command %s already issued a key to device %q, shown only in its first answer; issue a new key with another command ID (Idempotency-Key)", meta.CommandID, deviceID)
	}
	res.DeviceKey = key
	return res, nil
}

// Device returns the current state of device id, read through the command
// path's cache and caught up with its stream (the zero Device if it was
// never registered): the broker checks device keys against it, so a device
// registered a moment ago can connect at once and a deleted one or an old
// key cannot.
func (h *Handler) Device(ctx context.Context, id string) (device.Device, error) {
	if domain.CheckID("deviceId", id) != nil {
		return device.Device{}, nil
	}
	s, err := load(ctx, h, devices(), eventstore.DeviceStream(id))
	if err != nil {
		return device.Device{}, err
	}
	return s.state.(device.Device), nil
}

// DeleteDevice deletes a device (DELETE /devices/{id}).
func (h *Handler) DeleteDevice(ctx context.Context, meta Meta, cmd device.Delete) (Result, error) {
	if err := domain.CheckID("deviceId", cmd.DeviceID); err != nil {
		return Result{}, err
	}
	return handle(ctx, h, devices(), eventstore.DeviceStream(cmd.DeviceID), device.DeviceCommand(cmd), h.fill(meta))
}

// DefineDeviceSet defines or redefines a device set (PUT
// /device-sets/{id}). The command's Template is filled in here.
func (h *Handler) DefineDeviceSet(ctx context.Context, meta Meta, cmd device.DefineSet) (Result, error) {
	if err := domain.CheckID("setId", cmd.SetID); err != nil {
		return Result{}, err
	}
	t, err := h.Template(ctx, cmd.TemplateID)
	if err != nil {
		return Result{}, err
	}
	cmd.Template = t
	return handle(ctx, h, sets(), eventstore.DeviceSetStream(cmd.SetID), device.SetCommand(cmd), h.fill(meta))
}

// DeleteDeviceSet deletes a device set (DELETE /device-sets/{id}).
func (h *Handler) DeleteDeviceSet(ctx context.Context, meta Meta, cmd device.DeleteSet) (Result, error) {
	if err := domain.CheckID("setId", cmd.SetID); err != nil {
		return Result{}, err
	}
	return handle(ctx, h, sets(), eventstore.DeviceSetStream(cmd.SetID), device.SetCommand(cmd), h.fill(meta))
}

// Template returns the current state of template id, read through the
// command path's cache and caught up with its stream: the view device and
// set commands decide against (the zero Template if it was never published
// or id is not a valid ID, which the decision then refuses).
func (h *Handler) Template(ctx context.Context, id string) (device.Template, error) {
	if domain.CheckID("templateId", id) != nil {
		return device.Template{}, nil
	}
	s, err := load(ctx, h, templates(), eventstore.TemplateStream(id))
	if err != nil {
		return device.Template{}, err
	}
	return s.state.(device.Template), nil
}

// load returns the current snapshot of stream: the cached one caught up
// with the stream, or the stream read from the start.
func load[S, C, E any](ctx context.Context, h *Handler, agg aggregate[S, C, E], stream string) (*snapshot, error) {
	snap := h.cache.get(stream)
	if snap == nil {
		snap = &snapshot{state: *new(S)}
	}
	snap, err := catchUp(ctx, h, agg, stream, snap)
	if err != nil {
		return nil, err
	}
	h.cache.put(stream, snap)
	return snap, nil
}
