package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// This file adapts the job commands, the jobs read models and the event log
// to the HTTP layer's JobCommands, JobQueries and JobHistory. Creating a
// job is where the command side meets the read side: the decision needs
// the device set (read model: definition and broken state), its template
// (the event log, through the command path's cache) and every current
// member of the set (read model), which are resolved here into job.Create.

// maxChosenLookups bounds how many chosen devices that are not members a
// creation looks up in the event log to say why each is refused (deleted,
// unknown...): past it, the refusal says "not a member", which is true too.
const maxChosenLookups = 100

// jobCommands is fjhttp.JobCommands over the command handler.
type jobCommands struct {
	h      *commands.Handler
	q      *projections.Queries
	events *eventstore.Client
	codec  *eventstore.Codec
}

var _ fjhttp.JobCommands = (*jobCommands)(nil)

func domainOperations(ops []fjhttp.Operation) []job.Operation {
	out := make([]job.Operation, len(ops))
	for i, op := range ops {
		out[i] = job.Operation{Name: op.Name, Value: op.Value}
	}
	return out
}

func apiOperations(ops []job.Operation) []fjhttp.Operation {
	out := make([]fjhttp.Operation, len(ops))
	for i, op := range ops {
		out[i] = fjhttp.Operation{Name: op.Name, Value: op.Value}
	}
	return out
}

// resolved is what a job's creation needs of the rest of the system.
type resolved struct {
	set      device.Set
	template device.Template
	broken   bool
	members  []job.TargetedDevice
	chosen   map[string]device.Device
}

// resolve looks up device set setID, its template and its current members,
// and the chosen devices that are not members. An unknown set resolves to
// the zero Set, which the decision refuses with a sentence of its own.
func (a *jobCommands) resolve(ctx context.Context, setID string, chosen []string) (resolved, error) {
	var r resolved
	if domain.CheckID("deviceSetId", setID) != nil {
		return r, nil
	}
	ds, err := a.q.DeviceSet(ctx, setID)
	switch {
	case errors.Is(err, projections.ErrNotFound):
		return r, nil
	case err != nil:
		return r, fmt.Errorf("device set %s: %w", setID, err)
	}
	r.set = device.Set{ID: ds.ID, Name: ds.Name, TemplateID: ds.TemplateID, Conditions: ds.Conditions, Defined: true}
	if r.template, err = a.h.Template(ctx, ds.TemplateID); err != nil {
		return r, fmt.Errorf("template %s of device set %s: %w", ds.TemplateID, setID, err)
	}
	r.broken = ds.Broken
	if !ds.Broken {
		err = a.q.EachSetMember(ctx, setID, func(page []projections.Member) error {
			for _, d := range page {
				r.members = append(r.members, job.TargetedDevice{DeviceID: d.ID, Name: d.Name})
			}
			return nil
		})
		if err != nil && !errors.Is(err, projections.ErrNotFound) {
			return r, fmt.Errorf("members of device set %s: %w", setID, err)
		}
	}
	if chosen == nil {
		return r, nil
	}
	isMember := make(map[string]bool, len(r.members))
	for _, m := range r.members {
		isMember[m.DeviceID] = true
	}
	for _, id := range chosen {
		if isMember[id] || len(r.chosen) >= maxChosenLookups || domain.CheckID("deviceId", id) != nil {
			continue
		}
		if r.chosen == nil {
			r.chosen = make(map[string]device.Device)
		}
		if r.chosen[id], err = a.device(ctx, id); err != nil {
			return r, err
		}
	}
	return r, nil
}

// device folds device id's stream: the read models drop deleted devices,
// the event log says they were deleted.
func (a *jobCommands) device(ctx context.Context, id string) (device.Device, error) {
	var d device.Device
	err := a.events.ReadStream(ctx, eventstore.DeviceStream(id), 0, func(r eventstore.Recorded) error {
		v, err := r.Decode(a.codec)
		if err != nil {
			return err
		}
		if ev, ok := v.(device.DeviceEvent); ok {
			d = device.EvolveDevice(d, ev)
		}
		return nil
	})
	if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
		return d, fmt.Errorf("read device %s: %w", id, err)
	}
	return d, nil
}

func (a *jobCommands) create(ctx context.Context, meta fjhttp.CommandMeta, c job.Create) (fjhttp.JobResult, error) {
	r, err := a.resolve(ctx, c.DeviceSetID, c.DeviceIDs)
	if err != nil {
		return fjhttp.JobResult{}, err
	}
	c.Set, c.Template, c.Members, c.Chosen = r.set, r.template, r.members, r.chosen
	res, err := a.h.CreateJob(ctx, commandMeta(meta), c)
	if err != nil {
		return fjhttp.JobResult{}, err
	}
	j, by, err := a.decided(ctx, c.JobID)
	return fjhttp.JobResult{CommandResult: commandResult(res), Job: j, CreatedBy: by}, err
}

// errHaveDefinition ends a job stream's read at its first event.
var errHaveDefinition = errors.New("job definition read")

// decided is job id as its creation decided it: the definition its
// JobCreated recorded (the domain's defaults applied), at the time the
// command recorded it, pending on every device it announced; and that
// command's ID. Only the stream's first event is read, whatever the job's
// size.
func (a *jobCommands) decided(ctx context.Context, id string) (fjhttp.Job, string, error) {
	var j fjhttp.Job
	var by string
	err := a.events.ReadStream(ctx, eventstore.JobStream(id), 0, func(r eventstore.Recorded) error {
		v, err := r.Decode(a.codec)
		if err != nil {
			return err
		}
		c, ok := v.(job.Created)
		if !ok {
			return fmt.Errorf("its first event is %s, not %s", r.Type, eventstore.JobCreated)
		}
		at := r.Metadata.OccurredAt.UTC()
		j = fjhttp.Job{
			ID: c.JobID, Name: c.Name, Description: c.Description, Status: string(job.StatusPending),
			DeviceSetID: c.DeviceSetID, JobType: string(c.Type), Operations: apiOperations(c.Operations),
			TimeoutSeconds: c.TimeoutSeconds, BatchSize: c.BatchSize, CancellationThreshold: c.CancellationThreshold,
			CreatedAt: at, UpdatedAt: at, Counts: fjhttp.JobCounts{Total: c.DeviceCount, Pending: c.DeviceCount},
		}
		by = r.Metadata.CommandID
		return errHaveDefinition
	})
	switch {
	case errors.Is(err, errHaveDefinition):
		return j, by, nil
	case err == nil || errors.Is(err, eventstore.ErrStreamNotFound):
		return j, "", fmt.Errorf("job %q does not exist: %w", id, fjhttp.ErrNotFound)
	default:
		return j, "", fmt.Errorf("read the definition of job %s: %w", id, err)
	}
}

func (a *jobCommands) CreateJob(ctx context.Context, c fjhttp.CreateJob) (fjhttp.JobResult, error) {
	return a.create(ctx, c.Meta, job.Create{
		JobID: c.JobID, Name: c.Name, Description: c.Description, DeviceSetID: c.DeviceSetID,
		Type: job.Type(c.JobType), Operations: domainOperations(c.Operations), DeviceIDs: c.DeviceIDs,
		TimeoutSeconds: c.TimeoutSeconds, BatchSize: c.BatchSize, CancellationThreshold: c.CancellationThreshold,
	})
}

// NewJobID is commands.JobIDFor: the same seed, the same job.
func (a *jobCommands) NewJobID(seed string) string { return commands.JobIDFor(seed) }

// StopJob stops the job and answers its definition, stopped with the
// reason the decision records. Its counts are those at creation: the HTTP
// layer prefers the read models' job, which knows the results since.
func (a *jobCommands) StopJob(ctx context.Context, c fjhttp.StopJob) (fjhttp.JobResult, error) {
	r, err := a.h.StopJob(ctx, commandMeta(c.Meta), job.Stop{JobID: c.JobID, Reason: c.Reason})
	if err != nil {
		return fjhttp.JobResult{}, err
	}
	j, _, err := a.decided(ctx, c.JobID)
	j.Status, j.Reason = string(job.StatusStopped), r.Reason
	return fjhttp.JobResult{CommandResult: commandResult(r), Job: j}, err
}

func (a *jobCommands) RecordResult(ctx context.Context, c fjhttp.RecordResult) (fjhttp.CommandResult, error) {
	r, err := a.h.RecordResult(ctx, commandMeta(c.Meta), c.JobID, job.DeviceResult{
		DeviceID: c.DeviceID, Status: job.DeviceStatus(c.Status), Error: c.Error,
	})
	// Created tells the handler whether this result was recorded or the
	// device already had one.
	return fjhttp.CommandResult{Token: token(r.Position), Created: r.Events > 0}, err
}

// CopyJob creates a new job from an old one's definition, read from the
// event log so that any job can be copied, however old, with the name and
// description the request gives, if any. It runs on the
// devices the old job targeted that are still members of the set: a copy
// never widens what was run, and never targets a device that left the set
// or was deleted (those are counted in a note).
func (a *jobCommands) CopyJob(ctx context.Context, c fjhttp.CopyJob) (fjhttp.JobResult, error) {
	old, err := a.job(ctx, c.JobID)
	if err != nil {
		return fjhttp.JobResult{}, err
	}
	r, err := a.resolve(ctx, old.DeviceSetID, nil)
	if err != nil {
		return fjhttp.JobResult{}, err
	}
	still := make(map[string]bool, len(r.members))
	for _, m := range r.members {
		still[m.DeviceID] = true
	}
	chosen := make([]string, 0, old.Targeted())
	for id := range old.Devices() {
		if still[id] {
			chosen = append(chosen, id)
		}
	}
	dropped := old.Targeted() - len(chosen)
	switch {
	case len(chosen) > 0:
	case !r.set.Exists() || r.broken:
		// The decision says what is wrong with the set.
		chosen = nil
	default:
		return fjhttp.JobResult{}, domain.Conflict("none of the %d devices job %q ran on is still a member of device set %q: create a new job (PUT /jobs/{jobId}) on its current members instead",
			old.Targeted(), c.JobID, old.DeviceSetID)
	}
	id := c.NewJobID
	name, description := old.Name, old.Description
	if c.Name != nil {
		name = *c.Name
	}
	if c.Description != nil {
		description = *c.Description
	}
	create := job.Create{
		JobID: id, Name: name, Description: description, DeviceSetID: old.DeviceSetID, Type: old.Type,
		Operations: old.Operations, DeviceIDs: chosen, TimeoutSeconds: old.TimeoutSeconds, BatchSize: old.BatchSize,
		CancellationThreshold: old.CancellationThreshold,
		Set:                   r.set, Template: r.template, Members: r.members,
	}
	res, err := a.h.CreateJob(ctx, commandMeta(c.Meta), create)
	if err != nil {
		return fjhttp.JobResult{}, fmt.Errorf("copy of job %s: %w", c.JobID, err)
	}
	j, by, err := a.decided(ctx, id)
	if err != nil {
		return fjhttp.JobResult{}, fmt.Errorf("copy of job %s: %w", c.JobID, err)
	}
	out := fjhttp.JobResult{CommandResult: commandResult(res), Job: j, CreatedBy: by}
	out.Notes = []string{fmt.Sprintf("Job %q is a copy of job %q, on %s.", id, c.JobID, plural(len(chosen), "device", "devices"))}
	if dropped > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("%s of job %q left device set %q or were deleted since, and are not in the copy.",
			plural(dropped, "device", "devices"), c.JobID, old.DeviceSetID))
	}
	return out, nil
}

// job folds job id's stream from the event log.
func (a *jobCommands) job(ctx context.Context, id string) (*job.State, error) {
	var s *job.State
	err := a.events.ReadStream(ctx, eventstore.JobStream(id), 0, func(r eventstore.Recorded) error {
		v, err := r.Decode(a.codec)
		if err != nil {
			return err
		}
		if ev, ok := v.(job.Event); ok {
			s = job.Evolve(s, ev)
		}
		return nil
	})
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound) || (err == nil && !s.Exists()):
		return nil, fmt.Errorf("job %q does not exist: %w", id, fjhttp.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	return s, nil
}

// jobQueries is fjhttp.JobQueries over the jobs read models.
type jobQueries struct {
	q *projections.Queries
}

var (
	_ fjhttp.JobQueries       = (*jobQueries)(nil)
	_ fjhttp.RenderedJobLists = (*jobQueries)(nil)
)

func apiJob(j projections.Job) fjhttp.Job {
	return fjhttp.Job{
		ID: j.ID, Name: j.Name, Description: j.Description, Status: string(j.Status), Reason: j.Reason,
		DeviceSetID: j.DeviceSetID, JobType: string(j.JobType), Operations: apiOperations(j.Operations),
		TimeoutSeconds: j.TimeoutSeconds, BatchSize: j.BatchSize, CancellationThreshold: j.CancellationThreshold,
		CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt,
		Counts: fjhttp.JobCounts{Total: j.Counts.Total, Succeeded: j.Counts.Succeeded, Failed: j.Counts.Failed, Pending: j.Counts.Pending},
	}
}

func (a *jobQueries) Job(ctx context.Context, id string) (fjhttp.Job, error) {
	j, err := a.q.Job(ctx, id)
	if err != nil {
		return fjhttp.Job{}, queryError("job", id, err)
	}
	return apiJob(j), nil
}

func (a *jobQueries) Jobs(ctx context.Context, status string, page fjhttp.Page) (fjhttp.List[fjhttp.Job], error) {
	p, err := a.q.Jobs(ctx, projections.JobFilter{Status: job.Status(status)}, pageRequest(page))
	if err != nil {
		return fjhttp.List[fjhttp.Job]{}, queryError("", "", err)
	}
	out := fjhttp.List[fjhttp.Job]{Items: make([]fjhttp.Job, len(p.Items)), Next: p.Next}
	for i, j := range p.Items {
		out.Items[i] = apiJob(j)
	}
	return out, nil
}

func (a *jobQueries) JobDevices(ctx context.Context, id, status string, page fjhttp.Page) (fjhttp.List[fjhttp.JobDevice], error) {
	p, err := a.q.JobDevices(ctx, id, job.DeviceStatus(status), pageRequest(page))
	if err != nil {
		return fjhttp.List[fjhttp.JobDevice]{}, queryError("job", id, err)
	}
	out := fjhttp.List[fjhttp.JobDevice]{Items: make([]fjhttp.JobDevice, len(p.Items)), Next: p.Next}
	for i, d := range p.Items {
		out.Items[i] = fjhttp.JobDevice{DeviceID: d.DeviceID, Name: d.Name, Status: string(d.Status), Error: d.Error, Deleted: d.Deleted, UpdatedAt: d.UpdatedAt}
	}
	return out, nil
}

// JobsJSON is Jobs as the projections render it: their Job has the API's
// JSON shape, field for field (the job route tests decode it as the API's
// List[Job]).
func (a *jobQueries) JobsJSON(ctx context.Context, status string, page fjhttp.Page) ([]byte, error) {
	b, err := a.q.JobsJSON(ctx, projections.JobFilter{Status: job.Status(status)}, pageRequest(page))
	if err != nil {
		return nil, queryError("", "", err)
	}
	return b, nil
}

// JobDevicesJSON is JobDevices as the projections render it, as JobsJSON.
func (a *jobQueries) JobDevicesJSON(ctx context.Context, id, status string, page fjhttp.Page) ([]byte, error) {
	b, err := a.q.JobDevicesJSON(ctx, id, job.DeviceStatus(status), pageRequest(page))
	if err != nil {
		return nil, queryError("job", id, err)
	}
	return b, nil
}

func (a *jobQueries) Summary(ctx context.Context) (fjhttp.JobSummary, error) {
	s, err := a.q.Summary(ctx)
	if err != nil {
		return fjhttp.JobSummary{}, err // it names the job summary
	}
	return fjhttp.JobSummary{Pending: s.Pending, Running: s.Running, Completed: s.Completed, Failed: s.Failed, Stopped: s.Stopped, Total: s.Total}, nil
}

// jobHistory is fjhttp.JobHistory over the event log: a job's stream as
// recorded, data and metadata verbatim.
type jobHistory struct {
	events *eventstore.Client
}

var _ fjhttp.JobHistory = (*jobHistory)(nil)

func (a *jobHistory) ReadJobHistory(ctx context.Context, id string, from uint64, fn func(fjhttp.HistoryEvent) error) error {
	err := a.events.ReadStream(ctx, eventstore.JobStream(id), from, func(r eventstore.Recorded) error {
		e := fjhttp.HistoryEvent{Revision: r.Revision, Position: r.Position.String(), Type: r.Type,
			Data: r.Data, Metadata: r.RawMetadata, RecordedAt: r.RecordedAt}
		// Data or metadata stored empty is shown as {}, so that every
		// history line stays valid JSON.
		if len(e.Data) == 0 {
			e.Data = json.RawMessage(`{}`)
		}
		if len(e.Metadata) == 0 {
			e.Metadata = json.RawMessage(`{}`)
		}
		return fn(e)
	})
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return fmt.Errorf("job %q does not exist: %w", id, fjhttp.ErrNotFound)
	}
	return err
}
