package eventstore

import (
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
)

// The event catalog of ARCHITECTURE.md: the stored `type` of every fleetjobs
// event. These names are a public contract (auditors and analysts read
// them): never rename one, never derive one from a Go type's name.
const (
	DeviceTemplatePublished = "DeviceTemplatePublished"
	DeviceTemplateDeleted   = "DeviceTemplateDeleted"
	DeviceRegistered        = "DeviceRegistered"
	DevicePropertiesChanged = "DevicePropertiesChanged"
	DeviceKeyIssued         = "DeviceKeyIssued"
	DeviceDeleted           = "DeviceDeleted"
	DeviceSetDefined        = "DeviceSetDefined"
	DeviceSetDeleted        = "DeviceSetDeleted"

	JobCreated               = "JobCreated"
	JobDevicesTargeted       = "JobDevicesTargeted"
	JobStarted               = "JobStarted"
	JobDevicesDispatched     = "JobDevicesDispatched"
	DeviceOperationSucceeded = "DeviceOperationSucceeded"
	DeviceOperationFailed    = "DeviceOperationFailed"
	JobCompleted             = "JobCompleted"
	JobFailed                = "JobFailed"
	JobStopped               = "JobStopped"
)

// The stream name prefixes of the catalog: each aggregate instance has the
// stream prefix + its ID. Projectors filter $all on them.
const (
	TemplateStreamPrefix  = "template-"
	DeviceStreamPrefix    = "device-"
	DeviceSetStreamPrefix = "deviceset-"
	JobStreamPrefix       = "job-"
)

// TemplateStream is the stream of device template id.
func TemplateStream(id string) string { return TemplateStreamPrefix + id }

// DeviceStream is the stream of device id.
func DeviceStream(id string) string { return DeviceStreamPrefix + id }

// DeviceSetStream is the stream of device set id.
func DeviceSetStream(id string) string { return DeviceSetStreamPrefix + id }

// JobStream is the stream of job id.
func JobStream(id string) string { return JobStreamPrefix + id }

// DeviceRegistrations binds the device part of the catalog to the Go types
// of package domain/device.
func DeviceRegistrations() []Registration {
	return []Registration{
		Register[device.TemplatePublished](DeviceTemplatePublished),
		Register[device.TemplateDeleted](DeviceTemplateDeleted),
		Register[device.Registered](DeviceRegistered),
		Register[device.PropertiesChanged](DevicePropertiesChanged),
		Register[device.KeyIssued](DeviceKeyIssued),
		Register[device.Deleted](DeviceDeleted),
		Register[device.SetDefined](DeviceSetDefined),
		Register[device.SetDeleted](DeviceSetDeleted),
	}
}

// JobRegistrations binds the job part of the catalog to the Go types of
// package domain/job.
func JobRegistrations() []Registration {
	return []Registration{
		Register[job.Created](JobCreated),
		Register[job.DevicesTargeted](JobDevicesTargeted),
		Register[job.Started](JobStarted),
		Register[job.DevicesDispatched](JobDevicesDispatched),
		Register[job.OperationSucceeded](DeviceOperationSucceeded),
		Register[job.OperationFailed](DeviceOperationFailed),
		Register[job.Completed](JobCompleted),
		Register[job.Failed](JobFailed),
		Register[job.Stopped](JobStopped),
	}
}

// NewCatalogCodec returns the codec of every event type of the catalog:
// the one codec the service's Client, command handlers and projectors share.
func NewCatalogCodec() *Codec {
	return MustNewCodec(append(DeviceRegistrations(), JobRegistrations()...)...)
}
