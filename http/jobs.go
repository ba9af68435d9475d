package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/domain/job"
)

// This file holds what the job routes need of the rest of the service
// (JobCommands, JobQueries, JobHistory: declared here, by their consumer,
// and adapted in cmd to the commands and projections packages and to the
// event log), the plain structs they exchange, and the thin handlers.

// JobCommands records what the job routes ask for. Every method returns the
// consistency token of what it recorded; those that create or stop a job
// also return the job as the command left it (JobResult). The job rules are the domain's:
// its *domain.Error passes through as it is (CodeInvalid 400 naming the
// fields, such as "operations[0].value" or "deviceIds[3]"; CodeNotFound 404;
// CodeConflict 409, e.g. stopping a finished job). An unknown job is an
// error wrapping ErrNotFound.
type JobCommands interface {
	// CreateJob creates job cmd.JobID from the definition, resolving the
	// device set, its template and its current members. The same
	// definition again records nothing (Created false); another one under
	// the same ID is a conflict.
	CreateJob(ctx context.Context, cmd CreateJob) (JobResult, error)
	// NewJobID is the ID of the job that POST /jobs or a copy creates
	// from seed: the request's Idempotency-Key, or its fresh command ID
	// without one (newJobID). The same seed gives the same job, so a
	// retried request finds the job its first try created.
	NewJobID(seed string) string
	// StopJob stops a pending or running job.
	StopJob(ctx context.Context, cmd StopJob) (JobResult, error)
	// CopyJob creates job cmd.NewJobID with the definition of an existing
	// one. Its notes say what the copy runs on and which devices of the
	// old job it leaves out.
	CopyJob(ctx context.Context, cmd CopyJob) (JobResult, error)
	// RecordResult records one device's result; a repeated result records
	// nothing and succeeds.
	RecordResult(ctx context.Context, cmd RecordResult) (CommandResult, error)
}

// JobQueries answers the job routes from the read models. Job and
// JobDevices return an error wrapping ErrNotFound for an unknown job (or a
// finished one that left the 30-day window); a filter word that is no status is a
// *ValidationError naming "status".
type JobQueries interface {
	Job(ctx context.Context, jobID string) (Job, error)
	// Jobs lists every pending and running job and the finished jobs of
	// the last 30 days: running first, then newest first; with status,
	// only those.
	Jobs(ctx context.Context, status string, page Page) (List[Job], error)
	// JobDevices lists a job's devices by ID with their status in the
	// job; with status, only those.
	JobDevices(ctx context.Context, jobID, status string, page Page) (List[JobDevice], error)
	Summary(ctx context.Context) (JobSummary, error)
}

// RenderedJobLists is what a JobQueries may also implement to answer the
// job lists already rendered: the exact body of the answer, List[Job] or
// List[JobDevice] as JSON (its operations never null), which the handlers
// send as it is. The read side can then keep rendered pages and splice
// stored JSON instead of decoding and encoding every row of every request.
// Errors are those of the JobQueries methods of the same names.
type RenderedJobLists interface {
	JobsJSON(ctx context.Context, status string, page Page) ([]byte, error)
	JobDevicesJSON(ctx context.Context, jobID, status string, page Page) ([]byte, error)
}

// JobHistory reads a job's stream from the event log itself (never from
// the read models): what auditors see.
type JobHistory interface {
	// ReadJobHistory calls fn with the events of job jobID from revision
	// from onwards, oldest first, one at a time (memory stays bounded),
	// until the end of the stream or fn's first error, which it returns
	// as is. A job never created is an error wrapping ErrNotFound.
	ReadJobHistory(ctx context.Context, jobID string, from uint64, fn func(HistoryEvent) error) error
}

// Operation is one operation of a job: a setting, property or command of
// the set's template (by the job's type) and a value of its schema.
type Operation struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// CreateJob creates a job (PUT /jobs/{jobId}, POST /jobs).
type CreateJob struct {
	Meta        CommandMeta
	JobID       string
	Name        string
	Description string
	DeviceSetID string
	JobType     string
	Operations  []Operation
	// DeviceIDs chooses a subset of the set's members; nil means all of
	// them.
	DeviceIDs             []string
	TimeoutSeconds        int
	BatchSize             int
	CancellationThreshold int
}

// StopJob stops a job.
type StopJob struct {
	Meta   CommandMeta
	JobID  string
	Reason string
}

// CopyJob creates a new job from an old one's definition.
type CopyJob struct {
	Meta     CommandMeta
	JobID    string // the job copied
	NewJobID string // the copy's ID (newJobID)
	// Name and Description, when not nil, replace the old job's in the
	// copy; everything else is copied.
	Name        *string
	Description *string
}

// JobResult is what a job command recorded and the job as the command
// left it, built from what was decided (the definition as recorded, with
// the command's time) rather than read back from the read models, which
// may not have applied it yet. A created job is pending with every device
// pending; a stopped one is stopped with its reason. Its counts are those
// at creation: only the read models know the results recorded since.
type JobResult struct {
	CommandResult
	Job Job
	// CreatedBy is the command ID under which the job's creation was
	// recorded (answers to a create or a copy): a request under an
	// Idempotency-Key that met an existing job tells by it whether the job
	// is its own (jobKeyReused).
	CreatedBy string
}

// RecordResult records one device's result in a job.
type RecordResult struct {
	Meta     CommandMeta
	JobID    string
	DeviceID string
	Status   string // succeeded or failed
	Error    string
}

// JobCounts are a job's device counts: Pending + Succeeded + Failed ==
// Total.
type JobCounts struct {
	Total     int `json:"total"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Pending   int `json:"pending"`
}

// Job is a job as the API shows it: in lists and, with the same fields,
// on its own.
type Job struct {
	ID                    string      `json:"id"`
	Name                  string      `json:"name"`
	Description           string      `json:"description"`
	Status                string      `json:"status"`
	Reason                string      `json:"reason,omitempty"`
	DeviceSetID           string      `json:"deviceSetId"`
	JobType               string      `json:"jobType"`
	Operations            []Operation `json:"operations"`
	TimeoutSeconds        int         `json:"timeoutSeconds"`
	BatchSize             int         `json:"batchSize"`
	CancellationThreshold int         `json:"cancellationThreshold"`
	CreatedAt             time.Time   `json:"createdAt"`
	UpdatedAt             time.Time   `json:"updatedAt"`
	Counts                JobCounts   `json:"counts"`
}

// JobDevice is one device's status in a job.
type JobDevice struct {
	DeviceID  string    `json:"deviceId"`
	Name      string    `json:"name"`
	Status    string    `json:"status"`
	Error     string    `json:"error,omitempty"`
	Deleted   bool      `json:"deleted"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// JobSummary counts the jobs by status as Jobs lists them: every pending
// and running job, and the finished jobs of the 30-day window.
type JobSummary struct {
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Stopped   int `json:"stopped"`
	Total     int `json:"total"`
}

// HistoryEvent is one recorded event of a job's stream, as the event log
// holds it: data and metadata verbatim.
type HistoryEvent struct {
	Revision   uint64          `json:"revision"`
	Position   string          `json:"position"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	Metadata   json.RawMessage `json:"metadata"`
	RecordedAt time.Time       `json:"recordedAt"`
}

// JobAnswer answers a job command (create, copy, stop): the job, in the
// shape of GET /jobs/{jobId}, whether the command created it, and what the
// command says about it.
type JobAnswer struct {
	Job
	Created bool     `json:"created"`
	Notes   []string `json:"notes,omitempty"`
}

// maxJobAnswerWait bounds how long a job command's answer waits for the
// read models to apply the command, when it answers from them (a repeated
// create, a stop): a command answer should not hang on a lagging
// projector, and what was decided is a good answer too.
const maxJobAnswerWait = time.Second

// notCurrentNote is the note of an answer built from what was decided
// because the read models did not show the job in time.
const notCurrentNote = "The read models have not applied this job yet: its status and counts are as the command decided them, not the results recorded since; GET the Location with the consistency token for its current state."

// ResultAnswer answers a device result: 202, recorded or already known.
type ResultAnswer struct {
	JobID    string `json:"jobId"`
	DeviceID string `json:"deviceId"`
	Status   string `json:"status"`
	// Recorded is false when the device already had a result, which
	// stands (a duplicate changes nothing).
	Recorded bool `json:"recorded"`
}

// jobBody is the body of PUT /jobs/{jobId} and POST /jobs.
type jobBody struct {
	Name                  string      `json:"name"`
	Description           string      `json:"description"`
	DeviceSetID           string      `json:"deviceSetId"`
	JobType               string      `json:"jobType"`
	Operations            []Operation `json:"operations"`
	DeviceIDs             []string    `json:"deviceIds"`
	TimeoutSeconds        *int        `json:"timeoutSeconds"` // nil: left out, the default
	BatchSize             *int        `json:"batchSize"`
	CancellationThreshold int         `json:"cancellationThreshold"`
}

// maxCancellationThreshold is the largest cancellationThreshold, a
// percentage (job.Decide refuses more).
const maxCancellationThreshold = 100

// wholeRange gives the binder the domain's range of each whole-number
// field of a job (job.Decide checks them), for the message of a value that
// is no whole number.
func (jobBody) wholeRange(field string) (lo, hi int64, ok bool) {
	switch field {
	case "timeoutSeconds":
		return 1, job.MaxTimeoutSeconds, true
	case "batchSize":
		return 1, job.MaxBatchSize, true
	case "cancellationThreshold":
		return 0, maxCancellationThreshold, true
	}
	return 0, 0, false
}

// copyBody is the optional body of POST /jobs/{jobId}/copy: what the copy
// changes of the old job's definition. Its fields are left out when nil,
// so that no body, {} and {"name":null} are digested alike (keyedCommandID).
type copyBody struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

type stopBody struct {
	Reason string `json:"reason"`
}

type resultBody struct {
	Status string `json:"status"`
	Error  string `json:"error"`
}

// Device statuses a result may report.
const (
	resultSucceeded = "succeeded"
	resultFailed    = "failed"
)

// putJob is PUT /jobs/{jobId}: create, idempotently.
func (s *Server) putJob(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if err != nil {
		return err
	}
	return s.createJob(c, func(CommandMeta) string { return id }, false)
}

// postJob is POST /jobs: create under a generated ID, the same for the
// same Idempotency-Key, which no other request may use (newJobID).
func (s *Server) postJob(c echo.Context) error {
	return s.createJob(c, func(m CommandMeta) string { return s.newJobID(c, m) }, true)
}

// createJob creates the job of the request's body under idFor's ID: the
// path's (PUT), or a generated one, in which case a request that did not
// create the job it meets is refused (jobKeyReused).
func (s *Server) createJob(c echo.Context, idFor func(CommandMeta) string, generated bool) error {
	var b jobBody
	if err := s.bindJSON(c, &b); err != nil {
		return err
	}
	// The chosen devices' IDs are checked here (they are looked up
	// before deciding); every job rule is the domain's, which names its
	// fields, all of them at once.
	var fe fieldErrors
	for i, d := range b.DeviceIDs {
		checkID(&fe, "deviceIds["+itoa(i)+"]", d)
	}
	// The domain takes 0 for "left out"; a 0 sent is a mistake, not a
	// request for the default.
	if b.TimeoutSeconds != nil && *b.TimeoutSeconds == 0 {
		fe.add("timeoutSeconds", fmt.Sprintf("must be between 1 and %d seconds (or left out for %d), got 0", job.MaxTimeoutSeconds, job.DefaultTimeoutSeconds))
	}
	if b.BatchSize != nil && *b.BatchSize == 0 {
		fe.add("batchSize", fmt.Sprintf("must be between 1 and %d (or left out for %d), got 0", job.MaxBatchSize, job.DefaultBatchSize))
	}
	if len(fe.list) > 0 {
		// Nothing is decided, so the domain's checks of the body's other
		// fields join them: one answer names every bad field. (A 0 sent
		// is "left out" to the domain: no second message for it.)
		for _, f := range job.CheckFields(job.Create{Name: b.Name, Description: b.Description, Type: job.Type(b.JobType),
			TimeoutSeconds: orZero(b.TimeoutSeconds), BatchSize: orZero(b.BatchSize), CancellationThreshold: b.CancellationThreshold}) {
			fe.add(f.Field, f.Message)
		}
	}
	if err := fe.err(); err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	id := idFor(meta)
	res, err := s.jobCommands.CreateJob(c.Request().Context(), CreateJob{
		Meta: meta, JobID: id, Name: b.Name, Description: b.Description, DeviceSetID: b.DeviceSetID,
		JobType: b.JobType, Operations: orEmpty(b.Operations), DeviceIDs: b.DeviceIDs,
		TimeoutSeconds: orZero(b.TimeoutSeconds), BatchSize: orZero(b.BatchSize), CancellationThreshold: b.CancellationThreshold,
	})
	if generated {
		err = jobKeyReused(c, meta, id, res, err)
	}
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, APIBase+"/jobs/"+id)
	return s.jobAnswer(c, res, !res.Created)
}

// jobAnswer answers a job command with the job. A new job is answered from
// what was decided, at once (its read model holds nothing more). When the
// command met an existing job (current), whose results may have moved on,
// the answer is the read model's job once the read models have applied the
// command's own consistency token, waiting a bounded time; failing that,
// what was decided, with a note saying so.
func (s *Server) jobAnswer(c echo.Context, res JobResult, current bool) error {
	ans := JobAnswer{Job: res.Job, Created: res.Created, Notes: res.Notes}
	if current {
		if j, ok := s.currentJob(c.Request().Context(), res.Job.ID, res.Token); ok {
			ans.Job = j
		} else {
			ans.Notes = append(ans.Notes, notCurrentNote)
		}
	}
	ans.Operations = orEmpty(ans.Operations)
	return commandAnswer(c, res.CommandResult, ans)
}

// currentJob reads job id from the read models once they have applied
// token; false if they have not within maxJobAnswerWait, or do not hold
// the job (yet).
func (s *Server) currentJob(parent context.Context, id, token string) (Job, bool) {
	if s.jobQueries == nil {
		return Job{}, false
	}
	ctx, cancel := context.WithTimeout(parent, min(s.consistencyWait, maxJobAnswerWait))
	defer cancel()
	if s.waiter != nil && token != "" {
		if err := s.waiter.WaitFor(ctx, token); err != nil {
			s.logger.Debug("job answer: read models behind the command", zap.String("job", id), zap.String("token", token), zap.Error(err))
			return Job{}, false
		}
	}
	j, err := s.jobQueries.Job(ctx, id)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.logger.Warn("job answer: reading the job back failed", zap.String("job", id), zap.Error(err))
		}
		return Job{}, false
	}
	return j, true
}

// stopJob is POST /jobs/{jobId}/stop. The body ({reason}) is optional.
func (s *Server) stopJob(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if err != nil {
		return err
	}
	var b stopBody
	if c.Request().ContentLength != 0 {
		if err := s.bindJSON(c, &b); err != nil {
			return err
		}
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.jobCommands.StopJob(c.Request().Context(), StopJob{Meta: meta, JobID: id, Reason: b.Reason})
	if err != nil {
		return err
	}
	// What was decided knows the job's definition, not when it stopped:
	// this clock, read just after the stop was recorded, stands for the
	// stop's time until the read models answer. They are asked first
	// anyway, as results may have come in since the job was created.
	res.Job.UpdatedAt = s.now().UTC()
	return s.jobAnswer(c, res, true)
}

// copyJob is POST /jobs/{jobId}/copy: a new job with the old one's
// definition (its name and description replaced by the body's, if it
// gives them), the answer to "a stopped job cannot be restarted".
func (s *Server) copyJob(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if err != nil {
		return err
	}
	var b copyBody
	if _, err := s.bindOptionalJSON(c, &b); err != nil {
		return err
	}
	noteBody(c, nil, b) // the request as bound: no body is {}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	newID := s.newJobID(c, meta)
	res, err := s.jobCommands.CopyJob(c.Request().Context(), CopyJob{Meta: meta, JobID: id, NewJobID: newID, Name: b.Name, Description: b.Description})
	if err = jobKeyReused(c, meta, newID, res, err); err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderLocation, APIBase+"/jobs/"+res.Job.ID)
	return s.jobAnswer(c, res, !res.Created)
}

// postResult is POST /jobs/{jobId}/devices/{deviceId}/result: a device's
// answer, for gateways that report over HTTP. 202: the result is recorded,
// the job's read models follow.
func (s *Server) postResult(c echo.Context) error {
	ids, err := pathIDs(c, "jobId", "deviceId")
	if err != nil {
		return err
	}
	var b resultBody
	if err := s.bindJSON(c, &b); err != nil {
		return err
	}
	// The body's shape: a status of the enum, an error within the
	// domain's bound. A success with an error message is the domain's
	// refusal (job.DeviceResult.Check), a 400 naming "error" all the same.
	var fe fieldErrors
	if b.Status != resultSucceeded && b.Status != resultFailed {
		fe.add("status", "must be succeeded or failed")
	}
	if len(b.Error) > job.MaxErrorLen {
		// The domain cuts a longer message (a device answering over MQTT
		// cannot be refused); a gateway reporting over HTTP can be told,
		// and nothing is recorded.
		fe.add("error", fmt.Sprintf("is %d bytes long; at most %d are allowed", len(b.Error), job.MaxErrorLen))
	}
	if err := fe.err(); err != nil {
		return err
	}
	meta, err := s.meta(c)
	if err != nil {
		return err
	}
	res, err := s.jobCommands.RecordResult(c.Request().Context(), RecordResult{
		Meta: meta, JobID: ids[0], DeviceID: ids[1], Status: b.Status, Error: b.Error,
	})
	if err != nil {
		return err
	}
	setConsistencyToken(c, res.Token)
	return c.JSON(http.StatusAccepted, ResultAnswer{JobID: ids[0], DeviceID: ids[1], Status: b.Status, Recorded: res.Created})
}

// getJob is GET /jobs/{jobId}.
func (s *Server) getJob(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if err != nil {
		return err
	}
	j, err := s.jobQueries.Job(c.Request().Context(), id)
	if err != nil {
		return err
	}
	j.Operations = orEmpty(j.Operations)
	return c.JSON(http.StatusOK, j)
}

// listJobs is GET /jobs[?status=].
func (s *Server) listJobs(c echo.Context) error {
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	if r, ok := s.jobQueries.(RenderedJobLists); ok {
		b, err := r.JobsJSON(c.Request().Context(), c.QueryParam("status"), page)
		if err != nil {
			return err
		}
		return sendJSON(c, b)
	}
	l, err := s.jobQueries.Jobs(c.Request().Context(), c.QueryParam("status"), page)
	if err != nil {
		return err
	}
	for i := range l.Items {
		l.Items[i].Operations = orEmpty(l.Items[i].Operations)
	}
	return c.JSON(http.StatusOK, nonNil(l))
}

// listJobDevices is GET /jobs/{jobId}/devices[?status=].
func (s *Server) listJobDevices(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if err != nil {
		return err
	}
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	if r, ok := s.jobQueries.(RenderedJobLists); ok {
		b, err := r.JobDevicesJSON(c.Request().Context(), id, c.QueryParam("status"), page)
		if err != nil {
			return err
		}
		return sendJSON(c, b)
	}
	l, err := s.jobQueries.JobDevices(c.Request().Context(), id, c.QueryParam("status"), page)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, nonNil(l))
}

// sendJSON answers 200 with body, JSON rendered already. Its length is
// known, so it goes out with a Content-Length rather than chunked: a page
// of tens of KiB then leaves in a couple of writes instead of one per
// chunk, and the client reads it without chunk parsing.
func sendJSON(c echo.Context, body []byte) error {
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	return c.JSONBlob(http.StatusOK, body)
}

// summary is GET /summary.
func (s *Server) summary(c echo.Context) error {
	sum, err := s.jobQueries.Summary(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sum)
}

// errPageFull ends a history read once a page holds what it may.
var errPageFull = errors.New("page full")

// ndjsonFlushEvery is how many history lines are written between flushes:
// often enough that a client sees progress, seldom enough not to cost a
// syscall per event.
const ndjsonFlushEvery = 256

// jobHistory is GET /jobs/{jobId}/history: the job's events from the event
// log, oldest first. Paged (?limit=, ?cursor= the next revision) as JSON;
// the whole history, from the cursor on, as NDJSON when the client accepts
// application/x-ndjson.
func (s *Server) jobHistory(c echo.Context) error {
	id, err := pathID(c, "jobId")
	if err != nil {
		return err
	}
	page, err := pageOf(c)
	if err != nil {
		return err
	}
	var from uint64
	if page.Cursor != "" {
		if from, err = strconv.ParseUint(page.Cursor, 10, 64); err != nil {
			return &ValidationError{Fields: []FieldError{{Field: "cursor", Message: "is not a cursor this API returned"}}}
		}
	}
	if acceptsNDJSON(c.Request()) {
		return s.streamHistory(c, id, from)
	}
	out := List[HistoryEvent]{Items: make([]HistoryEvent, 0, min(page.Limit, 64))}
	err = s.history.ReadJobHistory(c.Request().Context(), id, from, func(e HistoryEvent) error {
		if len(out.Items) == page.Limit {
			out.Next = strconv.FormatUint(e.Revision, 10)
			return errPageFull
		}
		out.Items = append(out.Items, e)
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// streamHistory writes the history as NDJSON as it reads it. The status
// line goes out with the first event, so an unknown job is still a 404; a
// failure after that can only cut the stream short (logged), which the
// client sees as a missing final newline or a short read.
func (s *Server) streamHistory(c echo.Context, id string, from uint64) error {
	w := c.Response()
	enc := json.NewEncoder(w)
	n := 0
	start := func() {
		w.Header().Set(echo.HeaderContentType, MIMENDJSON)
		w.WriteHeader(http.StatusOK)
	}
	err := s.history.ReadJobHistory(c.Request().Context(), id, from, func(e HistoryEvent) error {
		if n == 0 {
			start()
		}
		n++
		if err := enc.Encode(e); err != nil {
			return err
		}
		if n%ndjsonFlushEvery == 0 {
			w.Flush()
		}
		return nil
	})
	switch {
	case err != nil && n == 0:
		return err
	case err != nil:
		s.logger.Warn("job history stream cut short", zap.String("job", id), zap.Int("events", n), zap.Error(err))
		return nil
	case n == 0:
		start()
	}
	w.Flush()
	return nil
}

// acceptsNDJSON reports whether the request prefers NDJSON: its Accept
// gives application/x-ndjson a quality above 0 and at least that of
// application/json (or of a wildcard that covers it, when JSON is not
// named), so "application/x-ndjson;q=0.5, application/json" is JSON.
func acceptsNDJSON(r *http.Request) bool {
	ndjson, json, wild := -1.0, -1.0, -1.0
	for _, part := range strings.Split(r.Header.Get(echo.HeaderAccept), ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch mt = strings.ToLower(strings.TrimSpace(mt)); mt {
		case MIMENDJSON:
			ndjson = max(ndjson, q)
		case MIMEJSON:
			json = max(json, q)
		case "application/*", "*/*":
			wild = max(wild, q)
		}
	}
	if json < 0 {
		json = wild
	}
	return ndjson > 0 && ndjson >= json
}

// orZero is *p, or 0 (the domain's "left out") for nil.
func orZero(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}
