package dispatch

import (
	"context"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
)

// Meta says which command the Manager sends and why; the adapter turns it
// into the command path's metadata. The Manager's Actor is "dispatcher",
// its CorrelationID the job ID.
type Meta struct {
	CommandID     string
	CorrelationID string
	CausationID   string
	Actor         string
}

// Outcomes is the command side as the Manager needs it: what it reports is
// decided and recorded there, never appended here. commands.Handler
// satisfies it through an adapter that converts Meta and drops the Result.
//
// Errors that wrap a *domain.Error are refusals: the Manager logs them and
// moves on. Any other error is taken as transient and retried with the same
// command ID, so a retried append is recognised by the store.
type Outcomes interface {
	// StartJob records JobStarted on a pending job whose targeting is
	// complete (nothing on a running job).
	StartJob(ctx context.Context, meta Meta, cmd job.Start) error
	// RecordDispatches records JobDevicesDispatched, one event per batch
	// (every command names the same job), in one append: called before the
	// devices are sent the job. A refusal (the job is no longer running)
	// means the batches are not sent.
	RecordDispatches(ctx context.Context, meta Meta, cmds []job.RecordDispatch) error
	// RecordResults records a batch of device results (answers or timeouts)
	// of one job; it returns once they are durable.
	RecordResults(ctx context.Context, meta Meta, jobID string, results []job.DeviceResult) error
}

// Subscriber is what the Manager reads of the event log. *eventstore.Client
// satisfies it.
type Subscriber interface {
	SubscribeAll(ctx context.Context, from eventstore.Position, filter eventstore.Filter, h eventstore.Handler) error
}

// Checkpoints keeps the Manager's low-water mark between runs (see the
// package documentation). A Redis key is enough; it must not be the event
// log.
type Checkpoints interface {
	// Load returns the saved position, or the zero Position if none was
	// saved.
	Load(ctx context.Context) (eventstore.Position, error)
	// Save replaces the saved position.
	Save(ctx context.Context, p eventstore.Position) error
}

// Operation is one operation of a delivered job: a setting, property or
// command name and its value (a JSON value as encoding/json decodes it).
type Operation struct {
	Name  string
	Value any
}

// Delivery is one device's copy of a job. JobID is also the operation ID:
// a device that already applied it drops a duplicate (deliveries are at
// least once) but still answers.
type Delivery struct {
	JobID    string
	DeviceID string
	// JobType is "setting", "property" or "command".
	JobType string
	// Operations are shared by every delivery of a batch: read only.
	Operations []Operation
	// Deadline is when the dispatcher stops waiting for the answer and
	// records the device as timed out.
	Deadline time.Time
	// Targeted is the log position of the job's last JobDevicesTargeted
	// event the dispatcher had read: the device was registered before it,
	// so a read model that has applied the log up to Targeted and does not
	// know the device has seen it deleted (a transport that looks devices
	// up there must not call it unknown before). Zero when not known.
	Targeted eventstore.Position
}

// Answer is a device's answer to a Delivery.
type Answer struct {
	JobID    string
	DeviceID string
	// Succeeded is true when the device applied the operations.
	Succeeded bool
	// Error is the device's message when it failed.
	Error string
}

// Transport carries deliveries to devices. Answers come back on the channel
// given to the transport's constructor, which the Manager reads (Config.Answers).
type Transport interface {
	// Send hands a batch of deliveries to the devices. It returns once they
	// are on their way (not answered). An error means some may not have
	// left: the Manager retries the batch a few times, and the devices it
	// does not reach time out.
	Send(ctx context.Context, deliveries []Delivery) error
}
