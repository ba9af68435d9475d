package projections

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetjobs/fleetjobs/domain/job"
)

// JobFilter narrows the job list.
type JobFilter struct {
	// Status keeps only the jobs with this status; empty keeps all. Any
	// other word than a job status is a *PageError on field "status".
	Status job.Status
}

// JobSummary is the number of jobs by status: every pending and running
// job, and the finished ones of the 30-day window.
type JobSummary struct {
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Stopped   int `json:"stopped"`
	Total     int `json:"total"`
}

// jobFields returns the JobKey fields a Job is read from, in this order.
func jobFields() []string {
	return []string{fieldDoc, fieldStatus, fieldReason, fieldCreatedAt, fieldUpdatedAt,
		fieldTotal, fieldSucceeded, fieldFailed, fieldPending}
}

// windowStart is the oldest last-change time a finished job may have to
// be shown: JobRetention before now, by the Queries' clock.
func (q *Queries) windowStart() time.Time { return q.now().Add(-JobRetention) }

// inWindow reports whether j is shown: a pending or running job always
// is, however long ago it last changed (it is not history yet, and the
// projection never retires it); a finished one while its last change is
// within the 30-day window.
func inWindow(j Job, since time.Time) bool {
	return !j.Status.Finished() || !j.UpdatedAt.Before(since)
}

// Job returns job id with its status and counts; ErrNotFound if there is
// no such job, or it finished and its last event is older than the 30-day
// window.
func (q *Queries) Job(ctx context.Context, id string) (Job, error) {
	prefix, err := q.prefix(ctx, JobsProjection)
	if err != nil {
		return Job{}, err
	}
	vals, err := q.rdb.HMGet(ctx, prefix+JobKey(id), jobFields()...).Result()
	if err != nil {
		return Job{}, fmt.Errorf("read job %q: %w", id, err)
	}
	j, ok, err := decodeJob(vals)
	if err != nil {
		return Job{}, fmt.Errorf("decode job %q: %w", id, err)
	}
	if !ok || !inWindow(j, q.windowStart()) {
		return Job{}, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	return j, nil
}

// Jobs lists every pending and running job and the finished jobs whose
// last change is within the 30-day window: running jobs first, then newest first (by creation), ties by ID; with
// filter.Status, only those. The cursor of a page stays valid while jobs
// change status: the next page starts after the last job of this one in
// that order.
func (q *Queries) Jobs(ctx context.Context, filter JobFilter, req PageRequest) (Page[Job], error) {
	limit, after, err := parsePage(req)
	if err != nil {
		return Page[Job]{}, err
	}
	index := jobsKey
	if filter.Status != "" {
		if !validJobStatus(filter.Status) {
			return Page[Job]{}, &PageError{Field: "status", Reason: "must be one of pending, running, completed, failed, stopped"}
		}
		index = JobsByStatusKey(filter.Status)
	}
	prefix, err := q.prefix(ctx, JobsProjection)
	if err != nil {
		return Page[Job]{}, err
	}
	since := q.windowStart()
	items := make([]Job, 0, limit)
	var last []string // the member of each item
	start := "-"
	if after != "" {
		start = "(" + after
	}
	// Finished jobs out of the window (their keys expired, or about to)
	// may still be listed until the projector's log clock passes them:
	// they are skipped, reading on until the page is full.
	for len(items) <= limit {
		want := limit + 1 - len(items)
		members, err := q.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
			Key: prefix + index, Start: start, Stop: "+", ByLex: true, Count: int64(want),
		}).Result()
		if err != nil {
			return Page[Job]{}, fmt.Errorf("list jobs: %w", err)
		}
		if len(members) == 0 {
			break
		}
		cmds := make([]*redis.SliceCmd, len(members))
		_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, m := range members {
				cmds[i] = p.HMGet(ctx, prefix+JobKey(idOfMember(m)), jobFields()...)
			}
			return nil
		})
		if err != nil {
			return Page[Job]{}, fmt.Errorf("list jobs: %w", err)
		}
		for i, m := range members {
			j, ok, err := decodeJob(cmds[i].Val())
			if err != nil {
				return Page[Job]{}, fmt.Errorf("list jobs: decode job %q: %w", idOfMember(m), err)
			}
			if ok && inWindow(j, since) {
				items = append(items, j)
				last = append(last, m)
			}
		}
		if len(members) < want {
			break
		}
		start = "(" + members[len(members)-1]
	}
	var next string
	if len(items) > limit {
		items = items[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(last[limit-1]))
	}
	return Page[Job]{Items: items, Next: next}, nil
}

// Summary counts the jobs by status as Jobs lists them: every pending and
// running job (ZCARD), and the finished jobs whose last change is within
// the 30-day window (ZCOUNT from its start); one round trip.
func (q *Queries) Summary(ctx context.Context) (JobSummary, error) {
	prefix, err := q.prefix(ctx, JobsProjection)
	if err != nil {
		return JobSummary{}, err
	}
	since := strconv.FormatInt(q.windowStart().UnixMilli(), 10)
	var cmds [5]*redis.IntCmd
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range jobStatuses() {
			if s.Finished() {
				cmds[i] = p.ZCount(ctx, prefix+JobsUpdatedKey(s), since, "+inf")
			} else {
				cmds[i] = p.ZCard(ctx, prefix+JobsUpdatedKey(s))
			}
		}
		return nil
	})
	if err != nil {
		return JobSummary{}, fmt.Errorf("job summary: %w", err)
	}
	n := func(i int) int { return int(cmds[i].Val()) }
	s := JobSummary{Pending: n(0), Running: n(1), Completed: n(2), Failed: n(3), Stopped: n(4)}
	s.Total = s.Pending + s.Running + s.Completed + s.Failed + s.Stopped
	return s, nil
}

// JobDevices lists the devices of job id by device ID, with their status
// in the job; with status, only those (pending, succeeded or failed; any
// other word is a *PageError on field "status"). A device deleted since
// the job targeted it is listed with Deleted set. ErrNotFound if Job would
// say so. A page costs two round trips to Redis whatever the job's size.
func (q *Queries) JobDevices(ctx context.Context, id string, status job.DeviceStatus, req PageRequest) (Page[JobDevice], error) {
	p, _, err := q.jobDevices(ctx, id, status, req)
	return p, err
}

// jobDevices is JobDevices; until is when the job leaves the 30-day
// window (zero while it is not finished), which ends the page without an
// event.
func (q *Queries) jobDevices(ctx context.Context, id string, status job.DeviceStatus, req PageRequest) (_ Page[JobDevice], until time.Time, _ error) {
	limit, after, err := parsePage(req)
	if err != nil {
		return Page[JobDevice]{}, until, err
	}
	switch status {
	case "", job.DevicePending, job.DeviceSucceeded, job.DeviceFailed:
	default:
		return Page[JobDevice]{}, until, &PageError{Field: "status", Reason: "must be one of pending, succeeded, failed"}
	}
	prefix, err := q.prefix(ctx, JobsProjection)
	if err != nil {
		return Page[JobDevice]{}, until, err
	}
	devPrefix, err := q.prefix(ctx, DevicesProjection)
	if err != nil {
		return Page[JobDevice]{}, until, err
	}
	start := "-"
	if after != "" {
		start = "(" + after
	}
	var head *redis.SliceCmd
	var idsCmd *redis.StringSliceCmd
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		head = p.HMGet(ctx, prefix+JobKey(id), fieldStatus, fieldCreatedAt, fieldUpdatedAt)
		idsCmd = p.ZRangeArgs(ctx, redis.ZRangeArgs{Key: prefix + JobDevicesKey(id, status), Start: start, Stop: "+",
			ByLex: true, Count: int64(limit) + 1})
		return nil
	})
	if err != nil {
		return Page[JobDevice]{}, until, fmt.Errorf("list devices of job %q: %w", id, err)
	}
	hv := head.Val()
	st, _ := hv[0].(string)
	created, _ := hv[1].(string)
	updated, _ := hv[2].(string)
	createdAt, err1 := time.Parse(time.RFC3339Nano, created)
	updatedAt, err2 := time.Parse(time.RFC3339Nano, updated)
	if st == "" || err1 != nil || err2 != nil ||
		(job.Status(st).Finished() && updatedAt.Before(q.windowStart())) {
		return Page[JobDevice]{}, until, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if job.Status(st).Finished() {
		until = updatedAt.Add(JobRetention)
	}
	ids := idsCmd.Val()
	var next string
	if len(ids) > limit {
		ids = ids[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(ids[limit-1]))
	}
	if len(ids) == 0 {
		return Page[JobDevice]{Items: []JobDevice{}}, until, nil
	}
	var names, results *redis.SliceCmd
	var exists *redis.Cmd
	_, err = q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		names = p.HMGet(ctx, prefix+JobDeviceNamesKey(id), ids...)
		results = p.HMGet(ctx, prefix+JobResultsKey(id), ids...)
		// One ZMSCORE for the page: a device not in the devices index
		// (nil score) was deleted. go-redis's ZMScore reads nil as 0,
		// every member's score here, so the raw reply is read instead.
		args := make([]any, 0, 2+len(ids))
		args = append(args, "zmscore", devPrefix+devicesKey)
		for _, d := range ids {
			args = append(args, d)
		}
		exists = p.Do(ctx, args...)
		return nil
	})
	if err != nil {
		return Page[JobDevice]{}, until, fmt.Errorf("list devices of job %q: %w", id, err)
	}
	present, _ := exists.Val().([]any)
	if len(present) != len(ids) {
		return Page[JobDevice]{}, until, fmt.Errorf("list devices of job %q: %d existence answers for %d devices", id, len(present), len(ids))
	}
	items := make([]JobDevice, len(ids))
	for i, d := range ids {
		it := JobDevice{DeviceID: d, Status: job.DevicePending, UpdatedAt: createdAt, Deleted: present[i] == nil}
		it.Name, _ = names.Val()[i].(string)
		if s, ok := results.Val()[i].(string); ok {
			var r jobResult
			if err := json.Unmarshal([]byte(s), &r); err != nil {
				return Page[JobDevice]{}, until, fmt.Errorf("decode result of device %q in job %q: %w", d, id, err)
			}
			it.Status, it.Error, it.UpdatedAt = r.Status, r.Error, r.UpdatedAt
		}
		items[i] = it
	}
	return Page[JobDevice]{Items: items, Next: next}, until, nil
}

func validJobStatus(s job.Status) bool {
	for _, v := range jobStatuses() {
		if s == v {
			return true
		}
	}
	return false
}

// decodeJob decodes the jobFields of a JobKey hash; ok is false when the
// job has no document (never created, or its keys expired).
func decodeJob(vals []any) (Job, bool, error) {
	str := func(i int) string { s, _ := vals[i].(string); return s }
	if len(vals) != len(jobFields()) || str(0) == "" {
		return Job{}, false, nil
	}
	var def jobDef
	if err := json.Unmarshal([]byte(str(0)), &def); err != nil {
		return Job{}, false, err
	}
	j := Job{ID: def.ID, Name: def.Name, Description: def.Description, Status: job.Status(str(1)), Reason: str(2),
		DeviceSetID: def.DeviceSetID, JobType: def.JobType, Operations: def.Operations, TimeoutSeconds: def.TimeoutSeconds,
		BatchSize: def.BatchSize, CancellationThreshold: def.CancellationThreshold}
	var err error
	if j.CreatedAt, err = time.Parse(time.RFC3339Nano, str(3)); err != nil {
		return Job{}, false, fmt.Errorf("createdAt: %w", err)
	}
	if j.UpdatedAt, err = time.Parse(time.RFC3339Nano, str(4)); err != nil {
		return Job{}, false, fmt.Errorf("updatedAt: %w", err)
	}
	counts := [4]*int{&j.Counts.Total, &j.Counts.Succeeded, &j.Counts.Failed, &j.Counts.Pending}
	for i, c := range counts {
		if s := str(5 + i); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return Job{}, false, fmt.Errorf("%s: %w", jobFields()[5+i], err)
			}
			*c = n
		}
	}
	return j, true, nil
}
