package commands

import (
	"context"

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

// RegisterDevice registers or changes a device (PUT /devices/{id}). The
// command's Template is filled in here from the template's stream.
func (h *Handler) RegisterDevice(ctx context.Context, meta Meta, cmd device.Register) (Result, error) {
	if err := domain.CheckID("deviceId", cmd.DeviceID); err != nil {
		return Result{}, err
	}
	t, err := h.Template(ctx, cmd.TemplateID)
	if err != nil {
		return Result{}, err
	}
	cmd.Template = t
	return handle(ctx, h, devices(), eventstore.DeviceStream(cmd.DeviceID), device.DeviceCommand(cmd), h.fill(meta))
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
