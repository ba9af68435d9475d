package projections

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// JobsProjection is the name of the projection holding the job list, job
// details, status summaries and the per-device status of every job.
const JobsProjection = "jobs"

// JobRetention is how long a finished job stays in the read models after
// its last event (ARCHITECTURE.md, "Job rules": the 30-day window).
const JobRetention = 30 * 24 * time.Hour

// The keys of the jobs projection, relative to its version's prefix.
const (
	// jobsKey is the job list: a sorted set with score 0 whose members,
	// "{tier}{inverted createdAt}:{id}", sort running jobs first (tier 0)
	// and then every job newest first, ties by ID, so a page is one
	// ZRANGE BYLEX.
	jobsKey = "jobs"
	// jobStateKey is a hash of job ID to "{status} {createdAt} {updatedAt}"
	// (Unix nanoseconds) of every job in the list: what the projector keeps
	// in memory, and loads from here. It never expires, unlike the jobs'
	// own keys, so that the projector's state after any history does not
	// depend on when Redis expired something.
	jobStateKey = "jobstate"
	// clockKey holds the log clock (Unix nanoseconds): the latest event
	// time the projector has seen, which decides when a finished job leaves
	// the list.
	clockKey = "clock"
)

// JobsByStatusKey is the job list filtered by status: members
// "{inverted createdAt}:{id}", score 0, newest first.
func JobsByStatusKey(s job.Status) string { return "jobs:" + string(s) }

// JobsUpdatedKey is the sorted set of the IDs of the jobs with status s,
// scored by the time of their last event in Unix milliseconds: the status
// summary counts a window of it with ZCOUNT.
func JobsUpdatedKey(s job.Status) string { return "jobs:" + string(s) + ":updated" }

// JobKey is the hash of a job: its definition ("doc", JSON), "status",
// "reason", "createdAt", "updatedAt" and the counts "total", "succeeded",
// "failed" and "pending", which device results move with HINCRBY.
func JobKey(id string) string { return "job:" + id }

// JobDevicesKey is the sorted set of the IDs of a job's devices (score 0,
// by ID); with a status, the devices with that status.
func JobDevicesKey(id string, s job.DeviceStatus) string {
	if s == "" {
		return "job:" + id + ":devices"
	}
	return "job:" + id + ":devices:" + string(s)
}

// JobDeviceNamesKey is the hash of a job's device IDs to the names they had
// when the job targeted them.
func JobDeviceNamesKey(id string) string { return "job:" + id + ":names" }

// JobResultsKey is the hash of a job's device IDs to their result (JSON
// {status, error, updatedAt}); a device without one is pending.
func JobResultsKey(id string) string { return "job:" + id + ":results" }

// jobKeys are every key of job id, which expire together.
func jobKeys(id string) []string {
	return []string{JobKey(id), JobDevicesKey(id, ""), JobDevicesKey(id, job.DevicePending),
		JobDevicesKey(id, job.DeviceSucceeded), JobDevicesKey(id, job.DeviceFailed),
		JobDeviceNamesKey(id), JobResultsKey(id)}
}

// The fields of a JobKey hash.
const (
	fieldDoc       = "doc"
	fieldStatus    = "status"
	fieldReason    = "reason"
	fieldCreatedAt = "createdAt"
	fieldUpdatedAt = "updatedAt"
	fieldTotal     = "total"
	fieldSucceeded = "succeeded"
	fieldFailed    = "failed"
	fieldPending   = "pending"
)

// jobStatuses returns the job statuses, in the order summaries list them.
func jobStatuses() [5]job.Status {
	return [5]job.Status{job.StatusPending, job.StatusRunning, job.StatusCompleted, job.StatusFailed, job.StatusStopped}
}

// JobCounts are a job's device counts: Pending + Succeeded + Failed ==
// Total.
type JobCounts struct {
	Total     int `json:"total"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Pending   int `json:"pending"`
}

// Job is the read model of a job: its definition, status and counts.
type Job struct {
	ID                    string          `json:"id"`
	Name                  string          `json:"name"`
	Description           string          `json:"description"`
	Status                job.Status      `json:"status"`
	Reason                string          `json:"reason,omitempty"` // why it failed or was stopped
	DeviceSetID           string          `json:"deviceSetId"`
	JobType               job.Type        `json:"jobType"`
	Operations            []job.Operation `json:"operations"`
	TimeoutSeconds        int             `json:"timeoutSeconds"`
	BatchSize             int             `json:"batchSize"`
	CancellationThreshold int             `json:"cancellationThreshold"`
	CreatedAt             time.Time       `json:"createdAt"`
	UpdatedAt             time.Time       `json:"updatedAt"` // its last event's time
	Counts                JobCounts       `json:"counts"`
}

// JobDevice is the status of one device in a job.
type JobDevice struct {
	DeviceID string           `json:"deviceId"`
	Name     string           `json:"name"` // as it was when the job targeted it
	Status   job.DeviceStatus `json:"status"`
	Error    string           `json:"error,omitempty"`
	// Deleted is true when the device was deleted after the job targeted
	// it (resolved against the devices projection when read).
	Deleted   bool      `json:"deleted"`
	UpdatedAt time.Time `json:"updatedAt"` // its result's time; the job's creation while pending
}

// jobDef is the definition part of a Job, stored once in the "doc" field.
type jobDef struct {
	ID                    string          `json:"id"`
	Name                  string          `json:"name"`
	Description           string          `json:"description"`
	DeviceSetID           string          `json:"deviceSetId"`
	JobType               job.Type        `json:"jobType"`
	Operations            []job.Operation `json:"operations"`
	TimeoutSeconds        int             `json:"timeoutSeconds"`
	BatchSize             int             `json:"batchSize"`
	CancellationThreshold int             `json:"cancellationThreshold"`
}

// jobResult is the stored result of one device (JobResultsKey).
type jobResult struct {
	Status    job.DeviceStatus `json:"status"`
	Error     string           `json:"error,omitempty"`
	UpdatedAt time.Time        `json:"updatedAt"`
}

// JobEntry is what the jobs projector knows of one job in the list.
type JobEntry struct {
	Status    job.Status
	CreatedAt time.Time
	UpdatedAt time.Time // the latest event time of the job
}

func (e JobEntry) expiresAt() time.Time { return e.UpdatedAt.Add(JobRetention) }

// listMember is the job's member of jobsKey.
func (e JobEntry) listMember(id string) string {
	tier := "1"
	if e.Status == job.StatusRunning {
		tier = "0"
	}
	return tier + e.statusMember(id)
}

// statusMember is the job's member of JobsByStatusKey: newest first.
func (e JobEntry) statusMember(id string) string {
	inv := int64(math.MaxInt64)
	if n := e.CreatedAt.UnixNano(); n > 0 {
		inv -= n
	}
	return fmt.Sprintf("%019d:%s", inv, id)
}

// idOfMember returns the job ID of a member of jobsKey (list) or of a
// JobsByStatusKey.
func idOfMember(m string) string {
	if i := strings.IndexByte(m, ':'); i >= 0 {
		return m[i+1:]
	}
	return m
}

func (e JobEntry) encode() string {
	return string(e.Status) + " " + strconv.FormatInt(e.CreatedAt.UnixNano(), 10) + " " + strconv.FormatInt(e.UpdatedAt.UnixNano(), 10)
}

func decodeJobEntry(s string) (JobEntry, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return JobEntry{}, fmt.Errorf("job state %q: want 3 fields", s)
	}
	c, err1 := strconv.ParseInt(f[1], 10, 64)
	u, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return JobEntry{}, fmt.Errorf("job state %q: %w", s, err)
	}
	return JobEntry{Status: job.Status(f[0]), CreatedAt: time.Unix(0, c).UTC(), UpdatedAt: time.Unix(0, u).UTC()}, nil
}

// JobState is what the jobs projector knows when it applies an event: every
// job in the list and the log clock. ApplyJobEvent updates it. Make one with
// NewJobState.
type JobState struct {
	Jobs map[string]JobEntry
	// Clock is the latest event time seen: a finished job whose last event
	// is JobRetention older leaves the list. It is computed from event
	// times only, never from the time the projector runs, so a rebuild
	// ends with the same list.
	Clock time.Time

	expiries expiryHeap      // finished jobs by expiry; entries may be stale
	touched  map[string]bool // jobs changed since the last Flush
	keys     resultKeys      // of the last job a result was recorded for
}

// NewJobState returns a state holding jobs (which it keeps) at clock.
func NewJobState(jobs map[string]JobEntry, clock time.Time) *JobState {
	if jobs == nil {
		jobs = make(map[string]JobEntry)
	}
	s := &JobState{Jobs: jobs, Clock: clock, touched: make(map[string]bool)}
	for id, e := range jobs {
		if e.Status.Finished() {
			s.expiries = append(s.expiries, expiry{at: e.expiresAt(), id: id})
		}
	}
	heap.Init(&s.expiries)
	return s
}

// ApplyJobEvent is the jobs projector: given the state and one event of a
// job- stream, it updates s and appends the changes to the read models to
// ops. It does no I/O. A device result costs a handful of ops (no read):
// its device moves between per-status sets and the counts move by HINCRBY.
// What every event of a job changes alike (its last-change time, and for a
// finished job the expiry of its keys) is written once per job by
// FlushJobState, which the projector calls after the batch's last event.
//
// Before the event, finished jobs whose last event is JobRetention older
// than the log clock leave the list; events of a job not in the list
// (never created, or gone) change nothing.
func ApplyJobEvent(s *JobState, e Event, ops []Op) []Op {
	at := e.Metadata.OccurredAt.UTC()
	if at.After(s.Clock) {
		s.Clock = at
	}
	ops = s.prune(ops)
	id, ok := jobIDOf(e.Data)
	if !ok {
		return ops
	}
	cur, exists := s.Jobs[id]
	if c, isCreate := e.Data.(job.Created); isCreate {
		if exists {
			return ops // the domain never creates a job twice
		}
		cur = JobEntry{Status: job.StatusPending, CreatedAt: at, UpdatedAt: at}
		s.Jobs[id] = cur
		s.touched[id] = true
		def := jobDef{ID: c.JobID, Name: c.Name, Description: c.Description, DeviceSetID: c.DeviceSetID,
			JobType: c.Type, Operations: c.Operations, TimeoutSeconds: c.TimeoutSeconds, BatchSize: c.BatchSize,
			CancellationThreshold: c.CancellationThreshold}
		if def.Operations == nil {
			def.Operations = []job.Operation{}
		}
		k := JobKey(id)
		return append(ops,
			HSet(k, fieldDoc, mustJSON(def)), HSet(k, fieldStatus, string(cur.Status)),
			HSet(k, fieldCreatedAt, at.Format(time.RFC3339Nano)),
			HSet(k, fieldTotal, "0"), HSet(k, fieldSucceeded, "0"), HSet(k, fieldFailed, "0"), HSet(k, fieldPending, "0"),
			ZAdd(jobsKey, 0, cur.listMember(id)), ZAdd(JobsByStatusKey(cur.Status), 0, cur.statusMember(id)))
	}
	if !exists {
		return ops
	}
	if at.After(cur.UpdatedAt) {
		cur.UpdatedAt = at
		s.Jobs[id] = cur
	}
	s.touched[id] = true
	switch ev := e.Data.(type) {
	case job.DevicesTargeted:
		all, pending, names := JobDevicesKey(id, ""), JobDevicesKey(id, job.DevicePending), JobDeviceNamesKey(id)
		for _, d := range ev.Devices {
			ops = append(ops, ZAdd(all, 0, d.DeviceID), ZAdd(pending, 0, d.DeviceID), HSet(names, d.DeviceID, d.Name))
		}
		n := int64(len(ev.Devices))
		ops = append(ops, HIncrBy(JobKey(id), fieldTotal, n), HIncrBy(JobKey(id), fieldPending, n))
	case job.Started:
		ops = s.setStatus(id, job.StatusRunning, "", ops)
	case job.OperationSucceeded:
		ops = s.result(id, ev.DeviceID, jobResult{Status: job.DeviceSucceeded, UpdatedAt: at}, fieldSucceeded, ops)
	case job.OperationFailed:
		ops = s.result(id, ev.DeviceID, jobResult{Status: job.DeviceFailed, Error: ev.Error, UpdatedAt: at}, fieldFailed, ops)
	case job.Completed:
		ops = s.setStatus(id, job.StatusCompleted, "", ops)
	case job.Failed:
		ops = s.setStatus(id, job.StatusFailed, ev.Reason, ops)
	case job.Stopped:
		ops = s.setStatus(id, job.StatusStopped, ev.Reason, ops)
	case job.DevicesDispatched:
		// Only the job's last-change time moves.
	}
	return ops
}

// result records a device's first result: the domain records at most one
// per device (a repeated one decides nothing), so the device is pending
// until now and the counts move by one without reading anything.
func (s *JobState) result(id, deviceID string, r jobResult, counter string, ops []Op) []Op {
	k := s.resultKeysOf(id)
	done := k.succeeded
	if r.Status == job.DeviceFailed {
		done = k.failed
	}
	return append(ops,
		ZRem(k.pending, deviceID), ZAdd(done, 0, deviceID),
		HSet(k.results, deviceID, r.json()),
		HIncrBy(k.job, counter, 1), HIncrBy(k.job, fieldPending, -1))
}

// resultKeys are the keys the results of job id write, kept from one
// result to the next: a batch's results are mostly one job's.
type resultKeys struct{ id, pending, succeeded, failed, results, job string }

func (s *JobState) resultKeysOf(id string) *resultKeys {
	if s.keys.job == "" || s.keys.id != id {
		s.keys = resultKeys{id: id, pending: JobDevicesKey(id, job.DevicePending), succeeded: JobDevicesKey(id, job.DeviceSucceeded),
			failed: JobDevicesKey(id, job.DeviceFailed), results: JobResultsKey(id), job: JobKey(id)}
	}
	return &s.keys
}

// json is the result's document, as encoding/json writes it, written
// without reflection (one per device result).
func (r jobResult) json() string {
	if y := r.UpdatedAt.Year(); y < 0 || y > 9999 {
		return mustJSON(r) // encoding/json refuses such times: keep its behaviour
	}
	b := make([]byte, 0, 64+len(r.Error))
	b = append(b, `{"status":`...)
	b = appendJSONString(b, string(r.Status))
	if r.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
	}
	b = append(b, `,"updatedAt":"`...)
	b = r.UpdatedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return string(b)
}

// setStatus moves job id to status to. A finished job never changes status
// (the domain's rule; events that would are ignored, as Evolve does).
func (s *JobState) setStatus(id string, to job.Status, reason string, ops []Op) []Op {
	cur := s.Jobs[id]
	if cur.Status.Finished() || cur.Status == to {
		return ops
	}
	next := cur
	next.Status = to
	s.Jobs[id] = next
	ops = append(ops,
		ZRem(jobsKey, cur.listMember(id)), ZAdd(jobsKey, 0, next.listMember(id)),
		ZRem(JobsByStatusKey(cur.Status), cur.statusMember(id)), ZAdd(JobsByStatusKey(to), 0, next.statusMember(id)),
		ZRem(JobsUpdatedKey(cur.Status), id),
		HSet(JobKey(id), fieldStatus, string(to)))
	if reason != "" {
		ops = append(ops, HSet(JobKey(id), fieldReason, reason))
	}
	if to.Finished() {
		heap.Push(&s.expiries, expiry{at: next.expiresAt(), id: id})
	}
	return ops
}

// prune removes from the list the finished jobs whose last event is
// JobRetention older than the log clock. Their keys expire by themselves
// (their expiry is set again here, after whatever this batch wrote to them).
func (s *JobState) prune(ops []Op) []Op {
	for len(s.expiries) > 0 && !s.expiries[0].at.After(s.Clock) {
		x := heap.Pop(&s.expiries).(expiry)
		cur, ok := s.Jobs[x.id]
		if !ok || !cur.Status.Finished() {
			continue
		}
		if at := cur.expiresAt(); at.After(s.Clock) {
			heap.Push(&s.expiries, expiry{at: at, id: x.id}) // a later event moved it
			continue
		}
		delete(s.Jobs, x.id)
		delete(s.touched, x.id)
		ops = append(ops, ZRem(jobsKey, cur.listMember(x.id)), ZRem(JobsByStatusKey(cur.Status), cur.statusMember(x.id)),
			ZRem(JobsUpdatedKey(cur.Status), x.id), HDel(jobStateKey, x.id))
		for _, k := range jobKeys(x.id) {
			ops = append(ops, ExpireAt(k, cur.expiresAt()))
		}
	}
	return ops
}

// FlushJobState appends what the events applied since the last flush
// changed alike for each job: its last-change time and state, and, for a
// finished job, the expiry of its keys, JobRetention after its last event,
// set after everything the events wrote to them (see ExpireAt). A job
// whose expiry has passed is written all the same and its keys expire at
// once: a rebuild of an old job ends as live projection did.
func FlushJobState(s *JobState, ops []Op) []Op {
	for id := range s.touched {
		cur, ok := s.Jobs[id]
		if !ok {
			continue
		}
		ops = append(ops,
			HSet(JobKey(id), fieldUpdatedAt, cur.UpdatedAt.Format(time.RFC3339Nano)),
			HSet(jobStateKey, id, cur.encode()),
			ZAdd(JobsUpdatedKey(cur.Status), float64(cur.UpdatedAt.UnixMilli()), id))
		if cur.Status.Finished() {
			for _, k := range jobKeys(id) {
				ops = append(ops, ExpireAt(k, cur.expiresAt()))
			}
		}
	}
	clear(s.touched)
	return ops
}

func jobIDOf(data any) (string, bool) {
	ev, ok := data.(job.Event)
	if !ok {
		return "", false
	}
	return ev.Job(), true
}

type expiry struct {
	at time.Time
	id string
}

// expiryHeap orders finished jobs by expiry, then ID (so pruning is in one
// order whatever the map order was when it was loaded).
type expiryHeap []expiry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// JobsProjector keeps the jobs projection: the job list (running first,
// then newest first; by status), job details with their counts, status
// summaries and the per-device status of each job. It keeps every listed
// job's status and times in memory (a few dozen bytes each: the list holds
// the last 30 days), so applying an event reads nothing from Redis.
type JobsProjector struct {
	state *JobState
}

// NewJobsProjector returns the jobs projector.
func NewJobsProjector() *JobsProjector { return &JobsProjector{} }

// Name returns JobsProjection.
func (p *JobsProjector) Name() string { return JobsProjection }

// StreamPrefixes returns the job stream prefix. Deleted devices are
// resolved when a job's devices are read, against the devices projection,
// so device events need not be read here.
func (p *JobsProjector) StreamPrefixes() []string { return []string{eventstore.JobStreamPrefix} }

// Load reads the listed jobs' state and the log clock.
func (p *JobsProjector) Load(ctx context.Context, r Reader) error {
	clock := time.Time{}
	s, err := r.Redis().Get(ctx, r.Key(clockKey)).Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return fmt.Errorf("read %s: %w", r.Key(clockKey), err)
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("read %s: %w", r.Key(clockKey), err)
		}
		clock = time.Unix(0, n).UTC()
	}
	raw, err := r.Redis().HGetAll(ctx, r.Key(jobStateKey)).Result()
	if err != nil {
		return fmt.Errorf("read %s: %w", r.Key(jobStateKey), err)
	}
	jobs := make(map[string]JobEntry, len(raw))
	for id, v := range raw {
		e, err := decodeJobEntry(v)
		if err != nil {
			return fmt.Errorf("read %s: %w", r.Key(jobStateKey), err)
		}
		jobs[id] = e
	}
	p.state = NewJobState(jobs, clock)
	return nil
}

// Apply applies the events with ApplyJobEvent, then FlushJobState. It
// reads nothing: the state it needs is in memory.
func (p *JobsProjector) Apply(_ context.Context, _ Reader, events []Event, ops []Op) ([]Op, error) {
	if p.state == nil {
		return ops, errors.New("jobs projector: not loaded")
	}
	before := p.state.Clock
	for _, e := range events {
		ops = ApplyJobEvent(p.state, e, ops)
	}
	ops = FlushJobState(p.state, ops)
	if !p.state.Clock.Equal(before) {
		ops = append(ops, Set(clockKey, strconv.FormatInt(p.state.Clock.UnixNano(), 10)))
	}
	return ops, nil
}
