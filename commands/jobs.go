package commands

import (
	"context"
	"errors"

	"github.com/google/uuid"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/job"
)

// jobIDSpace is the UUID namespace of the job IDs JobIDFor derives (a fixed
// random UUID: changing it would give a retried POST /jobs another job).
func jobIDSpace() uuid.UUID {
	return uuid.UUID{0x2b, 0x8e, 0x41, 0xd7, 0x0c, 0x95, 0x4f, 0x63, 0x9a, 0x1e, 0x57, 0xc2, 0x84, 0x3b, 0x6d, 0x0f}
}

// JobIDFor is the ID of the job that a request creating a job under a
// generated ID (POST /jobs, a copy) creates from seed (over HTTP: the
// request's Idempotency-Key alone when it has one, else its fresh command
// ID): a version 5 UUID of it, so a retried request finds the job its first
// try created instead of creating a second one.
func JobIDFor(seed string) string {
	return uuid.NewSHA1(jobIDSpace(), []byte(seed)).String()
}

// ErrOtherDefinition is wrapped by the CodeConflict that CreateJob returns
// for a job that already exists with another definition (the error's
// message stays the domain's). A caller that derived the job's ID from
// something other than the definition, such as an Idempotency-Key, tells
// by it that the ID was already used for another job, from the other
// conflicts (a targeting that cannot be finished, a writer that kept
// winning).
var ErrOtherDefinition = errors.New("the job exists with another definition")

// otherDefinition is the domain's refusal of a Create on an existing job,
// marked with ErrOtherDefinition.
type otherDefinition struct{ err error }

func (e otherDefinition) Error() string   { return e.err.Error() }
func (e otherDefinition) Unwrap() []error { return []error{e.err, ErrOtherDefinition} }

// CreateJob creates a job (PUT /jobs/{id}; POST /jobs with the ID from
// JobIDFor). The caller resolves what the decision needs and puts it in
// cmd: the device set's current state, its template's, and the set's
// current members (from the read models), and optionally the chosen
// devices that are not members.
//
// It records JobCreated and one JobDevicesTargeted per 1,000 devices. A
// large job's targeting outweighs the store's 1 MiB per append (a million
// devices are some 50 MiB), so it goes in several appends, JobCreated
// first, each expecting the revision the previous one ended at: they are
// not atomic together. A job whose targeting was cut short (a crash, a
// lost connection) stays Pending, since JobCreated's deviceCount says how
// many devices to expect and Start waits for all of them; the same create
// again (a retried request, with the same command ID or not) finishes the
// targeting where it stopped, with the event IDs the first try would have
// used. If the set's members changed meanwhile so that the rest can no
// longer be targeted, that is a CodeConflict: stop the job and create a
// new one.
//
// Result.Created is true when this call recorded the job (JobCreated, or
// the rest of an interrupted targeting): 201. The same definition again
// records nothing (Events 0, Created false: 200); another definition under
// the same ID is a CodeConflict (409) wrapping ErrOtherDefinition.
func (h *Handler) CreateJob(ctx context.Context, meta Meta, cmd job.Create) (Result, error) {
	if err := domain.CheckID("jobId", cmd.JobID); err != nil {
		return Result{}, err
	}
	meta = h.fill(meta)
	res, err := h.onJob(ctx, cmd.JobID, &jobRequest{meta: meta, do: func(w *jobWorker) (Result, error) {
		return w.command(meta, decideCreate(cmd))
	}})
	if err != nil {
		return Result{}, err
	}
	res.Created = res.Events > 0
	return res, nil
}

// decideCreate decides a Create, finishing the targeting of a job whose
// creation was interrupted: the same definition on such a job decides the
// JobDevicesTargeted events not yet recorded, numbered as the complete
// decision numbers them.
func decideCreate(cmd job.Create) decideFunc[*job.State, job.Event] {
	return func(s *job.State) ([]job.Event, int, error) {
		events, err := job.Decide(s, cmd)
		if err != nil && s.Exists() && domain.ErrorCode(err) == domain.CodeConflict {
			// On an existing job, Decide refuses only another definition.
			return nil, 0, otherDefinition{err}
		}
		if err != nil || len(events) > 0 || !s.Exists() || s.Targeted() >= s.DeviceCount {
			return events, 0, err
		}
		all, err := job.Decide(nil, cmd)
		if err != nil {
			return nil, 0, domain.Conflict("job %q targets %d of its %d devices, and its targeting cannot be finished: %v; stop it and create a new job",
				s.JobID, s.Targeted(), s.DeviceCount, err)
		}
		var rest []job.TargetedDevice
		for _, ev := range all[1:] {
			for _, d := range ev.(job.DevicesTargeted).Devices {
				if _, done := s.Device(d.DeviceID); !done {
					rest = append(rest, d)
				}
			}
		}
		if missing := s.DeviceCount - s.Targeted(); len(rest) != missing {
			return nil, 0, domain.Conflict("job %q targets %d of its %d devices, and the set's members changed since it was created (%d devices left to target, %d expected); stop it and create a new job",
				s.JobID, s.Targeted(), s.DeviceCount, len(rest), missing)
		}
		// The first try recorded whole events of MaxDevicesPerEvent, so
		// the rest starts at the next event of the complete decision.
		first := 1 + (s.Targeted()+job.MaxDevicesPerEvent-1)/job.MaxDevicesPerEvent
		events = make([]job.Event, 0, (len(rest)+job.MaxDevicesPerEvent-1)/job.MaxDevicesPerEvent)
		for lo := 0; lo < len(rest); lo += job.MaxDevicesPerEvent {
			hi := min(lo+job.MaxDevicesPerEvent, len(rest))
			events = append(events, job.DevicesTargeted{JobID: s.JobID, Devices: rest[lo:hi:hi]})
		}
		return events, first, nil
	}
}

// StartJob starts a pending job whose targeting is complete (the
// dispatcher sends it); on a running job it records nothing.
func (h *Handler) StartJob(ctx context.Context, meta Meta, cmd job.Start) (Result, error) {
	return h.jobCommand(ctx, meta, cmd.JobID, cmd, nil)
}

// RecordDispatch records that devices are about to be sent a running job
// (the dispatcher, before it sends them: at-least-once delivery).
func (h *Handler) RecordDispatch(ctx context.Context, meta Meta, cmd job.RecordDispatch) (Result, error) {
	return h.jobCommand(ctx, meta, cmd.JobID, cmd, nil)
}

// RecordDispatches records several batches as dispatched in one append,
// each batch its own JobDevicesDispatched event (the dispatcher's entry
// point: one round trip for many batches). Every command must name the
// same job; each is decided as RecordDispatch decides it, and a device
// named by an earlier batch of the call is left out of the later ones. On
// a job that is not running the whole call is a CodeConflict. Keep a
// call's device IDs well under the store's append limit
// (DefaultMaxAppendBytes): a call split over several appends is not
// atomic, and its retry would record only what the first try did not.
func (h *Handler) RecordDispatches(ctx context.Context, meta Meta, cmds []job.RecordDispatch) (Result, error) {
	if len(cmds) == 0 {
		return Result{}, nil
	}
	id := cmds[0].JobID
	for _, c := range cmds[1:] {
		if c.JobID != id {
			return Result{}, domain.Invalid("jobId", "one call records batches of one job: %q and %q", id, c.JobID)
		}
	}
	if err := domain.CheckID("jobId", id); err != nil {
		return Result{}, err
	}
	meta = h.fill(meta)
	return h.onJob(ctx, id, &jobRequest{meta: meta, do: func(w *jobWorker) (Result, error) {
		return w.command(meta, func(s *job.State) ([]job.Event, int, error) {
			return decideDispatches(s, cmds)
		})
	}})
}

// decideDispatches decides each command on s (which Decide only reads)
// and leaves out of each event the devices an earlier one named.
func decideDispatches(s *job.State, cmds []job.RecordDispatch) ([]job.Event, int, error) {
	out := make([]job.Event, 0, len(cmds))
	var seen map[string]struct{}
	if len(cmds) > 1 {
		seen = make(map[string]struct{})
	}
	for _, c := range cmds {
		events, err := job.Decide(s, c)
		if err != nil {
			return nil, 0, err
		}
		for _, ev := range events {
			d, ok := ev.(job.DevicesDispatched)
			if !ok || seen == nil {
				out = append(out, ev)
				continue
			}
			ids := d.DeviceIDs[:0:0]
			for _, dev := range d.DeviceIDs {
				if _, dup := seen[dev]; !dup {
					seen[dev] = struct{}{}
					ids = append(ids, dev)
				}
			}
			if len(ids) > 0 {
				d.DeviceIDs = ids
				out = append(out, d)
			}
		}
	}
	return out, 0, nil
}

// StopJob stops a pending or running job (POST /jobs/{id}/stop). A finished
// job, stopped ones included, is a CodeConflict that says to create a new
// job: a stopped job is never restarted. A retried stop with the same
// command ID answers with its original position. Result.Reason is the
// stop's reason as recorded, read from the job's state once stopped.
func (h *Handler) StopJob(ctx context.Context, meta Meta, cmd job.Stop) (Result, error) {
	return h.jobCommand(ctx, meta, cmd.JobID, cmd, func(s *job.State, r *Result) {
		if s.Exists() && s.Status == job.StatusStopped {
			r.Reason = s.Reason
		}
	})
}

// jobCommand runs a command on job id through its worker and the one
// command path; then, if not nil, reads what the command's answer needs
// from the job's state after it (when it succeeded).
func (h *Handler) jobCommand(ctx context.Context, meta Meta, id string, cmd job.Command, then func(*job.State, *Result)) (Result, error) {
	if err := domain.CheckID("jobId", id); err != nil {
		return Result{}, err
	}
	meta = h.fill(meta)
	return h.onJob(ctx, id, &jobRequest{meta: meta, do: func(w *jobWorker) (Result, error) {
		res, err := w.command(meta, func(s *job.State) ([]job.Event, int, error) {
			events, err := job.Decide(s, cmd)
			return events, 0, err
		})
		if err == nil && then != nil {
			then(w.state(), &res)
		}
		return res, err
	}})
}

// RecordResult records one device's result (POST
// /jobs/{id}/devices/{deviceId}/result, or one MQTT answer). It returns
// once the result is durably recorded, with the position of the append
// that holds it; meanwhile the job's worker has decided it together with
// every other result queued for the job, and appended them together.
//
// A device that already has a result keeps it: a repeated or contradicting
// result records nothing (Events 0). A device the job does not target is a
// CodeNotFound, a job not started a CodeConflict: only this caller fails.
// The result that brings the last device's answer also records the job's
// JobCompleted or JobFailed, in the same append. Give each result its own
// command ID (the transport's delivery ID): its event IDs derive from it.
func (h *Handler) RecordResult(ctx context.Context, meta Meta, jobID string, result job.DeviceResult) (Result, error) {
	if err := domain.CheckID("jobId", jobID); err != nil {
		return Result{}, err
	}
	if result.Status != job.DeviceSucceeded && result.Status != job.DeviceFailed {
		return Result{}, domain.Invalid("status", "unknown result %q: use succeeded or failed", result.Status)
	}
	r := &jobRequest{meta: h.fill(meta), single: true}
	r.one[0] = result
	r.results = r.one[:]
	return h.onJob(ctx, jobID, r)
}

// RecordResults records many devices' results as one command, the
// dispatcher's entry point (a batch of answers, or of timeouts). It is
// recorded with the other results queued for the job, in as few appends
// as the store's limit allows, and returns once all of them are durable,
// with the position of the last append that held them; Events counts the
// events recorded (duplicates record none).
//
// The batch is accepted or refused as a whole: a device the job does not
// target, or an unknown status, refuses it (and only it). Every result's
// events take their IDs from meta's command ID and the result's index, so
// a retried batch is recognised. results must not change until it returns.
func (h *Handler) RecordResults(ctx context.Context, meta Meta, jobID string, results []job.DeviceResult) (Result, error) {
	if err := domain.CheckID("jobId", jobID); err != nil {
		return Result{}, err
	}
	return h.onJob(ctx, jobID, &jobRequest{meta: h.fill(meta), results: results})
}
