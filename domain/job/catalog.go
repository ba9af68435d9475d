package job

import "github.com/fleetjobs/fleetjobs/domain/device"

// Type is a job's type: which of the template's capabilities its operations
// name.
type Type string

// The job types.
const (
	TypeSetting  Type = "setting"  // operations set settings
	TypeProperty Type = "property" // operations set properties
	TypeCommand  Type = "command"  // operations run commands
)

// Valid reports whether t is one of the three job types.
func (t Type) Valid() bool {
	switch t {
	case TypeSetting, TypeProperty, TypeCommand:
		return true
	}
	return false
}

// Status is a job's status. The words are the API's.
type Status string

// The job statuses: Pending -> Running -> Completed | Failed | Stopped
// (Stopped also straight from Pending).
const (
	StatusPending   Status = "pending"   // created, not yet started on devices
	StatusRunning   Status = "running"   // started: devices are being dispatched and answer
	StatusCompleted Status = "completed" // every device answered and succeeded
	StatusFailed    Status = "failed"    // some device failed, or the cancellation threshold tripped
	StatusStopped   Status = "stopped"   // stopped by a user; never restarted
)

// Finished reports whether s is a terminal status (completed, failed or
// stopped): a finished job never changes status again.
func (s Status) Finished() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusStopped
}

// DeviceStatus is the status of one device in a job. The words are the
// API's.
type DeviceStatus string

// The device statuses in a job.
const (
	DevicePending   DeviceStatus = "pending"   // no result yet (dispatched or not)
	DeviceSucceeded DeviceStatus = "succeeded" // the device applied the operations
	DeviceFailed    DeviceStatus = "failed"    // the device failed, with an error message
)

// Operation is one operation of a job: the name of a setting, property or
// command of the set's template (by the job's Type) and a value of its
// schema.
type Operation struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// TargetedDevice is a device a job runs on, with the name it had when the
// job was created (so the job's history reads well after a rename).
type TargetedDevice struct {
	DeviceID string `json:"deviceId"`
	Name     string `json:"name"`
}

// Command is the closed set of commands on a job.
//
//sumtype:decl
type Command interface{ isCommand() }

// Create creates a job (PUT /jobs/{id}, POST /jobs). Besides the request's
// fields it carries what the handler resolved, so that deciding stays pure:
// the device set, its template, and the set's current members.
type Create struct {
	JobID       string
	Name        string
	Description string
	DeviceSetID string
	Type        Type
	// Operations are one or more operations of Type. Values are JSON values
	// as encoding/json decodes them into an any; Go integers are accepted.
	Operations []Operation
	// DeviceIDs chooses a subset of the set's members; nil targets all of
	// them. A non-nil empty list is refused (it is most likely a mistake).
	DeviceIDs []string
	// TimeoutSeconds is how long a device has to answer; 0 means
	// DefaultTimeoutSeconds.
	TimeoutSeconds int
	// BatchSize is how many devices one dispatch batch holds (one
	// DevicesDispatched each, recorded before it is sent); the dispatcher
	// keeps several batches in flight. 0 means DefaultBatchSize.
	BatchSize int
	// CancellationThreshold is the percentage (1..100) of the job's devices
	// whose failure fails the job at once; 0 means never (the job runs on
	// every device and fails at the end if any failed).
	CancellationThreshold int

	// Set is the current state of the device set DeviceSetID names (the
	// zero Set if there is none), looked up by the handler.
	Set device.Set
	// Template is the current state of the template the set names.
	Template device.Template
	// Members are the set's current members, with their names: the
	// handler reads them from the membership read model. Deleted devices
	// are never members.
	Members []TargetedDevice
	// Chosen optionally holds the current state of chosen devices that are
	// not members, so that a refusal can say why (deleted, unknown);
	// without it the refusal says "not a member".
	Chosen map[string]device.Device
}

// Start starts a pending job on its devices; the dispatcher sends it once
// the job's targeting is recorded.
type Start struct {
	JobID string
}

// RecordDispatch records that devices are about to be sent the job
// (before sending: at-least-once delivery).
type RecordDispatch struct {
	JobID     string
	DeviceIDs []string
}

// RecordSuccess records that a device applied the job's operations.
type RecordSuccess struct {
	JobID    string
	DeviceID string
}

// RecordFailure records that a device failed, and why.
type RecordFailure struct {
	JobID    string
	DeviceID string
	Error    string
}

// DeviceResult is one device's result in a RecordResults batch.
type DeviceResult struct {
	DeviceID string
	// Status is DeviceSucceeded or DeviceFailed.
	Status DeviceStatus
	// Error is the failure's message (DeviceFailed only).
	Error string
	// TimedOut marks the dispatcher's verdict that the device did not
	// answer within the job's timeout (a DeviceFailed whose Error says
	// so), which is not an answer: see RecordResults.
	TimedOut bool
}

// RecordResults records many devices' results in one decision: the
// per-job worker of the command path decides a batch of results and
// appends their events in one append. It decides exactly what recording
// the results one by one would, in order.
type RecordResults struct {
	JobID   string
	Results []DeviceResult
}

// Stop stops a pending or running job: no more devices are dispatched.
type Stop struct {
	JobID  string
	Reason string
}

func (Create) isCommand()         {}
func (Start) isCommand()          {}
func (RecordDispatch) isCommand() {}
func (RecordSuccess) isCommand()  {}
func (RecordFailure) isCommand()  {}
func (RecordResults) isCommand()  {}
func (Stop) isCommand()           {}

// Event is the closed set of events of a job-{id} stream: the job part of
// the event catalog. Projectors and the dispatcher switch over it.
//
//sumtype:decl
type Event interface {
	isEvent()
	// Job is the ID of the job the event belongs to: every job event
	// names its job.
	Job() string
}

// Created is the catalog's JobCreated: the job's definition. Its devices
// follow in DevicesTargeted events.
type Created struct {
	JobID                 string      `json:"jobId"`
	Name                  string      `json:"name"`
	Description           string      `json:"description"`
	DeviceSetID           string      `json:"deviceSetId"`
	Type                  Type        `json:"jobType"`
	Operations            []Operation `json:"operations"`
	DeviceCount           int         `json:"deviceCount"`
	TimeoutSeconds        int         `json:"timeoutSeconds"`
	BatchSize             int         `json:"batchSize"`
	CancellationThreshold int         `json:"cancellationThreshold"`
}

// DevicesTargeted is the catalog's JobDevicesTargeted: at most
// MaxDevicesPerEvent of the job's devices; the devices over all of a job's
// DevicesTargeted events add up to Created.DeviceCount.
type DevicesTargeted struct {
	JobID   string           `json:"jobId"`
	Devices []TargetedDevice `json:"devices"`
}

// Started is the catalog's JobStarted.
type Started struct {
	JobID string `json:"jobId"`
}

// DevicesDispatched is the catalog's JobDevicesDispatched, recorded before
// the devices are sent the job.
type DevicesDispatched struct {
	JobID     string   `json:"jobId"`
	DeviceIDs []string `json:"deviceIds"`
}

// OperationSucceeded is the catalog's DeviceOperationSucceeded: a device
// applied the job's operations.
type OperationSucceeded struct {
	JobID    string `json:"jobId"`
	DeviceID string `json:"deviceId"`
}

// OperationFailed is the catalog's DeviceOperationFailed: a device failed
// (or timed out), with the error it gave.
type OperationFailed struct {
	JobID    string `json:"jobId"`
	DeviceID string `json:"deviceId"`
	Error    string `json:"error"`
}

// Completed is the catalog's JobCompleted: every device succeeded.
type Completed struct {
	JobID     string `json:"jobId"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
}

// Failed is the catalog's JobFailed: every device answered and some
// failed, or the cancellation threshold tripped.
type Failed struct {
	JobID     string `json:"jobId"`
	Reason    string `json:"reason"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
}

// Stopped is the catalog's JobStopped.
type Stopped struct {
	JobID  string `json:"jobId"`
	Reason string `json:"reason"`
}

func (Created) isEvent()            {}
func (DevicesTargeted) isEvent()    {}
func (Started) isEvent()            {}
func (DevicesDispatched) isEvent()  {}
func (OperationSucceeded) isEvent() {}
func (OperationFailed) isEvent()    {}
func (Completed) isEvent()          {}
func (Failed) isEvent()             {}
func (Stopped) isEvent()            {}

func (e Created) Job() string            { return e.JobID }
func (e DevicesTargeted) Job() string    { return e.JobID }
func (e Started) Job() string            { return e.JobID }
func (e DevicesDispatched) Job() string  { return e.JobID }
func (e OperationSucceeded) Job() string { return e.JobID }
func (e OperationFailed) Job() string    { return e.JobID }
func (e Completed) Job() string          { return e.JobID }
func (e Failed) Job() string             { return e.JobID }
func (e Stopped) Job() string            { return e.JobID }
