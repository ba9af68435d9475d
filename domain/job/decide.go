package job

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
)

// Limits and defaults of a job's definition.
const (
	// MaxDevicesPerEvent bounds the devices of one DevicesTargeted event,
	// so that each event stays far below the store's 1 MiB append limit.
	MaxDevicesPerEvent = 1000
	// DefaultTimeoutSeconds is a device's time to answer when Create gives
	// none.
	DefaultTimeoutSeconds = 30
	// MaxTimeoutSeconds is one day.
	MaxTimeoutSeconds = 86400
	// DefaultBatchSize is how many devices a dispatch batch holds when
	// Create gives no batch size.
	DefaultBatchSize = 100
	// MaxBatchSize bounds a dispatch batch, and so the devices of one
	// RecordDispatch.
	MaxBatchSize = 10000
	// MaxErrorLen bounds a failure's message (in bytes); a longer one is
	// cut at a character boundary. Devices write these messages, and each
	// is kept in the job's state and events.
	MaxErrorLen = 1024

	maxNameLen        = 200
	maxDescriptionLen = 4000
	maxReasonLen      = 1000
	maxNamedDevices   = 10 // devices named in one refusal before "and N more"
)

// Messages of decisions the API shows as they are.
const (
	// DefaultStopReason is a Stopped event's reason when Stop gives none.
	DefaultStopReason = "stopped by a user"
	// NoErrorMessage stands for a failure reported without a message.
	NoErrorMessage = "the device reported a failure without a message"
)

// Decide decides what a command records on a job, given its state (nil for
// a job never created). It only reads s.
//
//   - Create validates the whole definition, reporting every bad field at
//     once, and records Created followed by one DevicesTargeted event per
//     MaxDevicesPerEvent devices. Creating an existing job again with the
//     same definition decides nothing (PUT is idempotent); with another
//     definition it is a CodeConflict. "The same definition" compares the
//     request's fields, and its DeviceIDs only when it gives them: without
//     them it stands for "all members", whoever they are now.
//   - Start records Started on a pending job; on a running job it decides
//     nothing; on a finished job it is a CodeConflict saying that a
//     finished job cannot be restarted and a new job must be created.
//   - RecordDispatch records the devices not yet dispatched and without a
//     result (nothing if there are none) on a running job; on a pending or
//     finished job it is a CodeConflict: nothing is dispatched after a
//     stop.
//   - RecordSuccess, RecordFailure and RecordResults record device results
//     on a started job. A result that contradicts itself (an unknown
//     status, a success with an error message) is CodeInvalid (see
//     DeviceResult.Check). A device that already has a result keeps it: a
//     repeated or contradicting result decides nothing. A device the job
//     does not target is CodeNotFound, naming it. The result that brings
//     the last device's answer is followed, in the same decision, by
//     Completed (all succeeded) or Failed (some failed); a failure that
//     makes the failed devices reach CancellationThreshold percent of the
//     job's devices is followed by Failed at once. Results on a finished
//     job (late results after a stop, or after an early failure) are
//     recorded, because the device did act, but change no status; a
//     timeout on a finished job is not (LateTimeout): the device did not
//     act, it stays pending, and if it answers after all, that answer is
//     the late result recorded. Results on a job that never started
//     (pending, or stopped while pending) are a CodeConflict, whatever
//     its status now: devices are only sent a job after it started, so
//     such a result is a client's mistake and there is nothing to record.
//   - Stop records Stopped on a pending or running job. On a finished job
//     (stopped included: stopping twice) it is a CodeConflict, as the API
//     answers 409 there; a retried request is recognised by its command ID
//     before deciding.
//
// Every command on a job never created is CodeNotFound, except Create.
func Decide(s *State, cmd Command) ([]Event, error) {
	switch c := cmd.(type) {
	case Create:
		return decideCreate(s, c)
	case Start:
		if err := exists(s, c.JobID); err != nil {
			return nil, err
		}
		switch s.Status {
		case StatusPending:
			if s.Targeted() < s.DeviceCount {
				return nil, domain.Conflict("job %q targets %d of its %d devices so far; it starts once all are targeted", s.JobID, s.Targeted(), s.DeviceCount)
			}
			return []Event{Started{JobID: s.JobID}}, nil
		case StatusRunning:
			return nil, nil
		}
		return nil, finishedConflict(s, "started again", "started again")
	case RecordDispatch:
		return decideDispatch(s, c)
	case RecordSuccess:
		return decideResults(s, c.JobID, []DeviceResult{{DeviceID: c.DeviceID, Status: DeviceSucceeded}}, "deviceId")
	case RecordFailure:
		return decideResults(s, c.JobID, []DeviceResult{{DeviceID: c.DeviceID, Status: DeviceFailed, Error: c.Error}}, "deviceId")
	case RecordResults:
		return decideResults(s, c.JobID, c.Results, "")
	case Stop:
		if err := exists(s, c.JobID); err != nil {
			return nil, err
		}
		if len(c.Reason) > maxReasonLen {
			return nil, domain.Invalid("reason", "is %d bytes long; at most %d are allowed", len(c.Reason), maxReasonLen)
		}
		if s.Status.Finished() {
			return nil, finishedConflict(s, "stopped again", "stopped")
		}
		reason := strings.TrimSpace(c.Reason)
		if reason == "" {
			reason = DefaultStopReason
		}
		return []Event{Stopped{JobID: s.JobID, Reason: reason}}, nil
	}
	return nil, fmt.Errorf("decide job: unknown command %T", cmd)
}

// exists refuses a command on a job never created.
func exists(s *State, id string) error {
	if err := domain.CheckID("jobId", id); err != nil {
		return err
	}
	if !s.Exists() || s.JobID != id {
		return domain.NotFound("job %q does not exist", id)
	}
	return nil
}

// finishedConflict is the refusal of a command a finished job cannot take
// (what it cannot be: ifStopped for a stopped job, "stopped again", and
// ifFinished for a completed or failed one, "stopped"). It says, in the
// API's words, that a stopped job cannot be restarted and a new job must
// be created, which POST /api/v1/jobs/{id}/copy does from this one.
func finishedConflict(s *State, ifStopped, ifFinished string) error {
	if s.Status == StatusStopped {
		return domain.Conflict("job %q was stopped and cannot be %s: a stopped job cannot be restarted; a new job must be created (POST /api/v1/jobs/%s/copy copies its definition)", s.JobID, ifStopped, s.JobID)
	}
	return domain.Conflict("job %q already %s and cannot be %s: a finished job, like a stopped job, cannot be restarted; a new job must be created (POST /api/v1/jobs/%s/copy copies its definition)", s.JobID, s.Status, ifFinished, s.JobID)
}

func decideDispatch(s *State, c RecordDispatch) ([]Event, error) {
	if err := exists(s, c.JobID); err != nil {
		return nil, err
	}
	switch {
	case s.Status == StatusPending:
		return nil, domain.Conflict("job %q has not started: its devices are dispatched once it is started", s.JobID)
	case s.Status == StatusStopped:
		return nil, domain.Conflict("job %q was stopped: no more devices are dispatched", s.JobID)
	case s.Status.Finished():
		return nil, domain.Conflict("job %q already %s: no more devices are dispatched", s.JobID, s.Status)
	case len(c.DeviceIDs) == 0:
		return nil, domain.Invalid("deviceIds", "is empty: name the devices being dispatched")
	case len(c.DeviceIDs) > MaxBatchSize:
		return nil, domain.Invalid("deviceIds", "names %d devices; at most %d are dispatched at a time", len(c.DeviceIDs), MaxBatchSize)
	}
	var unknown []string
	var ids []string
	var seen map[int32]struct{}
	for _, id := range c.DeviceIDs {
		i, ok := s.devs.index(id)
		if !ok {
			unknown = append(unknown, id)
			continue
		}
		if s.devs.st[i] != 0 { // dispatched, or already answered
			continue
		}
		if _, dup := seen[i]; dup {
			continue
		}
		if seen == nil {
			seen = make(map[int32]struct{}, len(c.DeviceIDs))
		}
		seen[i] = struct{}{}
		ids = append(ids, id)
	}
	if len(unknown) > 0 {
		return nil, notInJob(s, unknown)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return []Event{DevicesDispatched{JobID: s.JobID, DeviceIDs: ids}}, nil
}

// notInJob is the refusal of devices the job does not target.
func notInJob(s *State, ids []string) error {
	if len(ids) == 1 {
		return domain.NotFound("device %q is not in job %q", ids[0], s.JobID)
	}
	return domain.NotFound("devices %s are not in job %q", nameIDs(ids), s.JobID)
}

// nameIDs quotes the first few ids and counts the rest.
func nameIDs(ids []string) string {
	var b strings.Builder
	for i, id := range ids {
		if i == maxNamedDevices {
			fmt.Fprintf(&b, " and %d more", len(ids)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", id)
	}
	return b.String()
}

// LateTimeout reports whether r is a timeout on a job no longer running
// (stopped, completed or failed, maybe earlier in the same batch): the
// dispatcher's verdict that a device did not answer is only the job's to
// bring it to an end. Once the job has ended, a device that did not
// answer did nothing, so it stays pending rather than count as failed,
// and a late answer of its own is still recorded (the first result
// stands, and a timeout recorded first would hide what the device did).
func LateTimeout(r DeviceResult, status Status) bool {
	return r.TimedOut && status != StatusRunning
}

// decideResults decides a batch of results in order, as if each were
// decided and evolved in turn, without changing s: the batch's own effect
// is kept aside (which devices it answered, the counts, the status).
// field names the device's input field for a single result.
func decideResults(s *State, jobID string, results []DeviceResult, field string) ([]Event, error) {
	if err := exists(s, jobID); err != nil {
		return nil, err
	}
	switch {
	case s.Status == StatusPending:
		return nil, domain.Conflict("job %q has not started: a device cannot report a result before the job is started", s.JobID)
	case !s.HasStarted():
		return nil, domain.Conflict("job %q was %s before it started: its devices were never sent it, so none can report a result", s.JobID, s.Status)
	}
	var unknown []string
	var bad []domain.FieldError
	for i, r := range results {
		if fe := checkResult(r); len(fe) > 0 {
			for _, f := range fe {
				if field == "" {
					f.Field = fmt.Sprintf("results[%d].%s", i, f.Field)
				}
				bad = append(bad, f)
			}
			continue
		}
		if _, ok := s.devs.index(r.DeviceID); !ok {
			unknown = append(unknown, r.DeviceID)
		}
	}
	if len(bad) > 0 {
		return nil, domain.InvalidFields(bad)
	}
	if len(unknown) > 0 {
		return nil, notInJob(s, unknown)
	}

	total := s.devs.len()
	succeeded, failed, status := s.succeeded, s.failed, s.Status
	var answered map[int32]struct{} // answered earlier in this batch
	events := make([]Event, 0, len(results)+1)
	for _, r := range results {
		i, _ := s.devs.index(r.DeviceID)
		if s.devs.st[i]&resultMask != 0 {
			continue // duplicate: the first result stands
		}
		if LateTimeout(r, status) {
			continue
		}
		if _, dup := answered[i]; dup {
			continue
		}
		if len(results) > 1 {
			if answered == nil {
				answered = make(map[int32]struct{}, len(results))
			}
			answered[i] = struct{}{}
		}
		if r.Status == DeviceSucceeded {
			events = append(events, OperationSucceeded{JobID: s.JobID, DeviceID: r.DeviceID})
			succeeded++
		} else {
			events = append(events, OperationFailed{JobID: s.JobID, DeviceID: r.DeviceID, Error: errorMessage(r.Error)})
			failed++
		}
		if status != StatusRunning {
			continue // late results are recorded, the status stays
		}
		switch {
		case succeeded+failed == total && failed == 0:
			events = append(events, Completed{JobID: s.JobID, Succeeded: succeeded, Failed: failed})
			status = StatusCompleted
		case succeeded+failed == total:
			reason := fmt.Sprintf("%d of %d devices failed", failed, total)
			events = append(events, Failed{JobID: s.JobID, Reason: reason, Succeeded: succeeded, Failed: failed})
			status = StatusFailed
		case r.Status == DeviceFailed && thresholdReached(s.CancellationThreshold, failed, total):
			reason := fmt.Sprintf("the cancellation threshold was reached: %d of %d devices failed, and the job fails once %d%% of its devices have failed",
				failed, total, s.CancellationThreshold)
			events = append(events, Failed{JobID: s.JobID, Reason: reason, Succeeded: succeeded, Failed: failed})
			status = StatusFailed
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	return events, nil
}

// Check returns the refusal (CodeInvalid, naming "status" or "error") of
// a result that contradicts itself, whatever the job: a status other than
// succeeded or failed, or a success with an error message (only a failure
// has one; OperationSucceeded records none, so it would be lost).
// RecordResults refuses such results the same way, naming them
// "results[i].status" and "results[i].error".
func (r DeviceResult) Check() error {
	if fe := checkResult(r); len(fe) > 0 {
		return domain.InvalidFields(fe)
	}
	return nil
}

// checkResult is Check's list of faults, with the fields named as for one
// result alone.
func checkResult(r DeviceResult) []domain.FieldError {
	switch {
	case r.Status != DeviceSucceeded && r.Status != DeviceFailed:
		return []domain.FieldError{{Field: "status", Message: fmt.Sprintf("unknown result %q: use succeeded or failed", r.Status)}}
	case r.Status == DeviceSucceeded && r.Error != "":
		return []domain.FieldError{{Field: "error", Message: "must be empty when status is succeeded: only a failure has an error message"}}
	}
	return nil
}

// Takes reports whether the job records r without refusing it: the job
// started, targets r's device, and r is a valid result (Check). Deciding
// RecordResults refuses a batch exactly when Takes is false for one of its
// results; the per-job worker asks it to skip refusals' full decision in
// the common case.
func (s *State) Takes(r DeviceResult) bool {
	if !s.HasStarted() || checkResult(r) != nil {
		return false
	}
	_, in := s.devs.index(r.DeviceID)
	return in
}

// thresholdReached is the cancellation rule: with a threshold of t percent
// (1..100), the job fails as soon as failed devices make at least t% of its
// devices. 0 never trips.
func thresholdReached(t, failed, total int) bool {
	return t > 0 && failed*100 >= t*total
}

// errorMessage is the message recorded for a failure: valid UTF-8 (a
// device may send any bytes), trimmed, cut to MaxErrorLen bytes on a
// character boundary, NoErrorMessage if empty.
func errorMessage(msg string) string {
	msg = strings.TrimSpace(strings.ToValidUTF8(msg, "\uFFFD"))
	if msg == "" {
		return NoErrorMessage
	}
	if len(msg) > MaxErrorLen {
		cut := MaxErrorLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return msg
}

// definition is a Create's checked definition, with defaults filled in.
type definition struct {
	created Created
	devices []TargetedDevice
}

func decideCreate(s *State, c Create) ([]Event, error) {
	if err := domain.CheckID("jobId", c.JobID); err != nil {
		return nil, err
	}
	if s.Exists() {
		// A bad field is named whatever the ID: what can be checked on the
		// command alone is checked before comparing it with the job.
		if bad := checkFields(c); len(bad) > 0 {
			return nil, domain.InvalidFields(bad)
		}
		if sameDefinition(s, c) {
			return nil, nil
		}
		return nil, domain.Conflict("job %q already exists with another definition; give the new job another ID", c.JobID)
	}
	def, err := checkCreate(c)
	if err != nil {
		return nil, err
	}
	n := len(def.devices)
	events := make([]Event, 0, 1+(n+MaxDevicesPerEvent-1)/MaxDevicesPerEvent)
	events = append(events, def.created)
	for start := 0; start < n; start += MaxDevicesPerEvent {
		end := min(start+MaxDevicesPerEvent, n)
		events = append(events, DevicesTargeted{JobID: c.JobID, Devices: def.devices[start:end:end]})
	}
	return events, nil
}

// checkCreate validates a Create and returns what it records. Every bad
// field is reported at once.
func checkCreate(c Create) (definition, error) {
	bad := checkFields(c)
	timeout := defaulted(c.TimeoutSeconds, DefaultTimeoutSeconds)
	batch := defaulted(c.BatchSize, DefaultBatchSize)
	setOK := checkSet(&bad, c)
	ops := checkOperations(&bad, c, setOK && c.Type.Valid())
	var targets []TargetedDevice
	if setOK {
		targets = checkDevices(&bad, c)
	}
	if len(bad) > 0 {
		return definition{}, domain.InvalidFields(bad)
	}
	return definition{
		created: Created{
			JobID: c.JobID, Name: c.Name, Description: c.Description, DeviceSetID: c.DeviceSetID, Type: c.Type,
			Operations: ops, DeviceCount: len(targets), TimeoutSeconds: timeout, BatchSize: batch,
			CancellationThreshold: c.CancellationThreshold,
		},
		devices: targets,
	}, nil
}

// checkFields checks what a Create's fields say on their own, without the
// device set, its template or an existing job: name, description, ranges,
// job type, operations given.
// CheckFields returns the refusals of what a Create says on its own (its
// name, description, timeout, batch size, cancellation threshold and job
// type), as Decide gives them, without looking at its set, template,
// operations or devices: for an adapter that refuses some fields itself
// (HTTP refuses a timeout sent as 0, which Create reads as "left out") to
// name every bad field in one answer.
func CheckFields(c Create) []domain.FieldError { return checkFields(c) }

func checkFields(c Create) []domain.FieldError {
	var bad []domain.FieldError
	add := func(field, format string, args ...any) {
		bad = append(bad, domain.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case strings.TrimSpace(c.Name) == "":
		add("name", "is required")
	case len(c.Name) > maxNameLen:
		add("name", "is %d bytes long; at most %d are allowed", len(c.Name), maxNameLen)
	default:
		if p := domain.NameProblem(c.Name); p != "" {
			add("name", "%s", p)
		}
	}
	if len(c.Description) > maxDescriptionLen {
		add("description", "is %d bytes long; at most %d are allowed", len(c.Description), maxDescriptionLen)
	}
	timeout := defaulted(c.TimeoutSeconds, DefaultTimeoutSeconds)
	if timeout < 1 || timeout > MaxTimeoutSeconds {
		add("timeoutSeconds", "must be between 1 and %d seconds (or left out for %d), got %d", MaxTimeoutSeconds, DefaultTimeoutSeconds, c.TimeoutSeconds)
	}
	batch := defaulted(c.BatchSize, DefaultBatchSize)
	if batch < 1 || batch > MaxBatchSize {
		add("batchSize", "must be between 1 and %d (or left out for %d), got %d", MaxBatchSize, DefaultBatchSize, c.BatchSize)
	}
	if c.CancellationThreshold < 0 || c.CancellationThreshold > 100 {
		add("cancellationThreshold", "must be a percentage between 1 and 100, or 0 for never, got %d", c.CancellationThreshold)
	}

	if !c.Type.Valid() {
		add("jobType", "unknown job type %q: use one of setting, property, command", c.Type)
	}
	return bad
}

func defaulted(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// checkSet checks the device set: it exists, is the one named, and is not
// broken. It reports whether the set can be used.
func checkSet(bad *[]domain.FieldError, c Create) bool {
	n := len(*bad)
	if e, ok := domain.AsError(domain.CheckID("deviceSetId", c.DeviceSetID)); ok {
		*bad = append(*bad, e.Fields...)
		return false
	}
	switch {
	case !c.Set.Defined || c.Set.ID != c.DeviceSetID:
		*bad = append(*bad, domain.FieldError{Field: "deviceSetId", Message: fmt.Sprintf("device set %q does not exist", c.DeviceSetID)})
	case c.Set.Deleted:
		*bad = append(*bad, domain.FieldError{Field: "deviceSetId", Message: fmt.Sprintf("device set %q was deleted", c.DeviceSetID)})
	default:
		if reason, broken := device.BrokenReason(c.Set, c.Template); broken {
			*bad = append(*bad, domain.FieldError{Field: "deviceSetId", Message: fmt.Sprintf("device set %q is broken and cannot be used for a job: %s", c.DeviceSetID, reason)})
		}
	}
	return len(*bad) == n
}

// checkOperations checks the operations against the set's template (when
// the set and type are usable) and returns them with normalized values.
func checkOperations(bad *[]domain.FieldError, c Create, withTemplate bool) []Operation {
	if len(c.Operations) == 0 {
		*bad = append(*bad, domain.FieldError{Field: "operations", Message: "at least one operation is required"})
		return nil
	}
	ops := make([]Operation, len(c.Operations))
	first := make(map[string]int, len(c.Operations))
	for i, op := range c.Operations {
		field := fmt.Sprintf("operations[%d]", i)
		ops[i] = op
		if op.Name == "" {
			*bad = append(*bad, domain.FieldError{Field: field + ".name", Message: "is required"})
			continue
		}
		if j, dup := first[op.Name]; dup {
			*bad = append(*bad, domain.FieldError{Field: field + ".name", Message: fmt.Sprintf("%q is already set by operations[%d]; each may appear once", op.Name, j)})
			continue
		}
		first[op.Name] = i
		if !withTemplate {
			continue
		}
		capability, ok := capabilityOf(c.Template, c.Type, op.Name)
		if !ok {
			*bad = append(*bad, domain.FieldError{Field: field + ".name", Message: fmt.Sprintf("template %q declares no %s %q", c.Template.ID, c.Type, op.Name)})
			continue
		}
		v, msg := checkValue(capability.Schema, op.Value)
		if msg != "" {
			*bad = append(*bad, domain.FieldError{Field: field + ".value", Message: msg})
			continue
		}
		ops[i].Value = v
	}
	return ops
}

func capabilityOf(t device.Template, jt Type, name string) (device.Capability, bool) {
	switch jt {
	case TypeSetting:
		return t.Setting(name)
	case TypeProperty:
		return t.Property(name)
	case TypeCommand:
		return t.Command(name)
	}
	return device.Capability{}, false
}

// checkDevices resolves the devices the job targets: all members, or the
// chosen ones, each of which must be a member.
func checkDevices(bad *[]domain.FieldError, c Create) []TargetedDevice {
	// Members are deduplicated: a device twice would be targeted twice.
	byID := make(map[string]int, len(c.Members))
	members := make([]TargetedDevice, 0, len(c.Members))
	for _, m := range c.Members {
		if _, dup := byID[m.DeviceID]; dup || m.DeviceID == "" {
			continue
		}
		byID[m.DeviceID] = len(members)
		members = append(members, m)
	}
	if c.DeviceIDs == nil {
		if len(members) == 0 {
			*bad = append(*bad, domain.FieldError{Field: "deviceSetId", Message: fmt.Sprintf("device set %q has no devices; a job needs at least one", c.DeviceSetID)})
		}
		return members
	}
	if len(c.DeviceIDs) == 0 {
		*bad = append(*bad, domain.FieldError{Field: "deviceIds", Message: "is empty: choose at least one device, or leave deviceIds out to run the job on every device of the set"})
		return nil
	}
	targets := make([]TargetedDevice, 0, len(c.DeviceIDs))
	chosen := make(map[string]int, len(c.DeviceIDs))
	refused := 0
	for i, id := range c.DeviceIDs {
		field := fmt.Sprintf("deviceIds[%d]", i)
		msg := ""
		if j, dup := chosen[id]; dup {
			msg = fmt.Sprintf("device %q is already chosen by deviceIds[%d]", id, j)
		} else if k, ok := byID[id]; ok {
			chosen[id] = i
			targets = append(targets, members[k])
			continue
		} else {
			msg = notMember(c, id)
		}
		refused++
		if refused <= maxNamedDevices {
			*bad = append(*bad, domain.FieldError{Field: field, Message: msg})
		}
	}
	if refused > maxNamedDevices {
		*bad = append(*bad, domain.FieldError{Field: "deviceIds", Message: fmt.Sprintf("%d more chosen devices are refused", refused-maxNamedDevices)})
	}
	return targets
}

// notMember says why a chosen device is not a member of the set.
func notMember(c Create, id string) string {
	if d, ok := c.Chosen[id]; ok {
		switch {
		case d.Deleted:
			return fmt.Sprintf("device %q was deleted and cannot be chosen", id)
		case !d.Registered:
			return fmt.Sprintf("device %q does not exist", id)
		}
	}
	return fmt.Sprintf("device %q is not a member of device set %q", id, c.DeviceSetID)
}

// sameDefinition reports whether c asks for the job s already is.
func sameDefinition(s *State, c Create) bool {
	if c.Name != s.Name || c.Description != s.Description || c.DeviceSetID != s.DeviceSetID || c.Type != s.Type ||
		defaulted(c.TimeoutSeconds, DefaultTimeoutSeconds) != s.TimeoutSeconds ||
		defaulted(c.BatchSize, DefaultBatchSize) != s.BatchSize ||
		c.CancellationThreshold != s.CancellationThreshold || len(c.Operations) != len(s.Operations) {
		return false
	}
	for i, op := range c.Operations {
		was := s.Operations[i]
		if op.Name != was.Name {
			return false
		}
		// Compare in the recorded value's schema: the template may have
		// changed since, and values arrive as json.Number or int.
		v, msg := checkValue(schemaOf(was.Value), op.Value)
		if msg != "" || !reflect.DeepEqual(v, was.Value) {
			return false
		}
	}
	if c.DeviceIDs == nil {
		return true
	}
	if len(c.DeviceIDs) != s.devs.len() {
		return false
	}
	seen := make([]uint64, (s.devs.len()+63)/64)
	for _, id := range c.DeviceIDs {
		i, ok := s.devs.index(id)
		if !ok || seen[i/64]&(1<<(i%64)) != 0 {
			return false
		}
		seen[i/64] |= 1 << (i % 64)
	}
	return true
}
