package job_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/domaintest"
	"github.com/fleetjobs/fleetjobs/domain/job"
)

const jobID = "j1"

func vending() device.Template {
	return device.FoldTemplate([]device.TemplateEvent{device.TemplatePublished{
		TemplateID: "vending-v2", Name: "Vending v2",
		Settings:   []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}, {Name: "mode", Schema: device.SchemaString}},
		Properties: []device.Capability{{Name: "city", Schema: device.SchemaString}},
		Commands:   []device.Capability{{Name: "reboot", Schema: device.SchemaObject}},
	}})
}

func seattle() device.Set {
	return device.FoldSet([]device.SetEvent{device.SetDefined{SetID: "seattle", Name: "Seattle", TemplateID: "vending-v2",
		Conditions: []device.Condition{{Property: "city", Op: device.OpEq, Value: "Seattle"}}}})
}

// members returns devices d1..dn with their names.
func members(n int) []job.TargetedDevice {
	out := make([]job.TargetedDevice, n)
	for i := range out {
		out[i] = job.TargetedDevice{DeviceID: fmt.Sprintf("d%d", i+1), Name: fmt.Sprintf("Machine %d", i+1)}
	}
	return out
}

// create is a valid Create on n members; change it with opts.
func create(n int, opts ...func(*job.Create)) job.Create {
	c := job.Create{
		JobID: jobID, Name: "Fan speed", Description: "slower fans", DeviceSetID: "seattle", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 1200}},
		Set:        seattle(), Template: vending(), Members: members(n),
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// created is what create(n) records, with the given devices targeted.
func created(devices []job.TargetedDevice, opts ...func(*job.Created)) []job.Event {
	c := job.Created{
		JobID: jobID, Name: "Fan speed", Description: "slower fans", DeviceSetID: "seattle", Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: 1200.0}}, DeviceCount: len(devices),
		TimeoutSeconds: 30, BatchSize: 100,
	}
	for _, o := range opts {
		o(&c)
	}
	events := []job.Event{c}
	for start := 0; start < len(devices); start += job.MaxDevicesPerEvent {
		end := min(start+job.MaxDevicesPerEvent, len(devices))
		events = append(events, job.DevicesTargeted{JobID: jobID, Devices: devices[start:end]})
	}
	return events
}

// running is a started job on devices d1..dn, with threshold t.
func running(n, t int, more ...job.Event) []job.Event {
	events := created(members(n), func(c *job.Created) { c.CancellationThreshold = t })
	events = append(events, job.Started{JobID: jobID})
	return append(events, more...)
}

func ok(id string) job.Event { return job.OperationSucceeded{JobID: jobID, DeviceID: id} }
func failed(id, msg string) job.Event {
	return job.OperationFailed{JobID: jobID, DeviceID: id, Error: msg}
}
func success(id string) job.Command { return job.RecordSuccess{JobID: jobID, DeviceID: id} }
func failure(id, msg string) job.Command {
	return job.RecordFailure{JobID: jobID, DeviceID: id, Error: msg}
}

type decideCase struct {
	name  string
	given []job.Event
	when  job.Command
	then  []job.Event
	err   *domaintest.Refusal
}

func runDecide(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := job.Decide(job.Fold(c.given), c.when)
			domaintest.CheckRefusal(t, err, c.err)
			if diff := cmp.Diff(c.then, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecideCreate(t *testing.T) {
	deletedTemplate := device.EvolveTemplate(vending(), device.TemplateDeleted{TemplateID: "vending-v2"})
	noCity := device.FoldTemplate([]device.TemplateEvent{device.TemplatePublished{TemplateID: "vending-v2", Name: "Vending v2",
		Settings: []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}}}})
	runDecide(t, []decideCase{
		{name: "creating a job records its definition, then targets every member",
			when: create(3),
			then: created(members(3))},
		{name: "targeting is split into events of at most 1,000 devices",
			when: create(2500),
			then: created(members(2500))},
		{name: "a chosen subset of the members is targeted, in the order chosen",
			when: create(5, func(c *job.Create) { c.DeviceIDs = []string{"d4", "d2"} }),
			then: created([]job.TargetedDevice{members(5)[3], members(5)[1]})},
		{name: "timeout, batch size, threshold and values are recorded normalized",
			when: create(1, func(c *job.Create) {
				c.TimeoutSeconds, c.BatchSize, c.CancellationThreshold = 600, 5000, 25
				c.Type = job.TypeCommand
				c.Operations = []job.Operation{{Name: "reboot", Value: map[string]any{"delay": json.Number("5")}}}
			}),
			then: created(members(1), func(c *job.Created) {
				c.TimeoutSeconds, c.BatchSize, c.CancellationThreshold = 600, 5000, 25
				c.Type = job.TypeCommand
				c.Operations = []job.Operation{{Name: "reboot", Value: map[string]any{"delay": 5.0}}}
			})},
		{name: "duplicate members are targeted once",
			when: create(2, func(c *job.Create) { c.Members = append(c.Members, c.Members[0]) }),
			then: created(members(2))},
		{name: "a device not a member is refused with its id named",
			when: create(3, func(c *job.Create) { c.DeviceIDs = []string{"d1", "d9"} }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceIds[1]"}, Says: `device "d9" is not a member of device set "seattle"`}},
		{name: "a deleted device cannot be chosen",
			when: create(3, func(c *job.Create) {
				c.DeviceIDs = []string{"gone"}
				c.Chosen = map[string]device.Device{"gone": {ID: "gone", Registered: true, Deleted: true}}
			}),
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceIds[0]"}, Says: `device "gone" was deleted and cannot be chosen`}},
		{name: "an unknown device cannot be chosen",
			when: create(3, func(c *job.Create) {
				c.DeviceIDs = []string{"nope"}
				c.Chosen = map[string]device.Device{"nope": {}}
			}),
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceIds[0]"}, Says: `device "nope" does not exist`}},
		{name: "a device chosen twice is refused",
			when: create(3, func(c *job.Create) { c.DeviceIDs = []string{"d1", "d2", "d1"} }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceIds[2]"}, Says: "already chosen by deviceIds[0]"}},
		{name: "many refused devices are named up to ten, then counted",
			when: create(3, func(c *job.Create) {
				for i := range 15 {
					c.DeviceIDs = append(c.DeviceIDs, fmt.Sprintf("x%d", i))
				}
			}),
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Says: "5 more chosen devices are refused",
				Fields: []string{"deviceIds[0]", "deviceIds[1]", "deviceIds[2]", "deviceIds[3]", "deviceIds[4]", "deviceIds[5]", "deviceIds[6]", "deviceIds[7]", "deviceIds[8]", "deviceIds[9]", "deviceIds"}}},
		{name: "an empty choice of devices is refused",
			when: create(3, func(c *job.Create) { c.DeviceIDs = []string{} }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceIds"}, Says: "choose at least one device"}},
		{name: "a broken set cannot be used",
			when: create(3, func(c *job.Create) { c.Template = deletedTemplate }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceSetId"}, Says: `device set "seattle" is broken and cannot be used for a job: Template 'vending-v2' was deleted`}},
		{name: "a set whose condition names a property the template lacks is broken",
			when: create(3, func(c *job.Create) { c.Template = noCity }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceSetId"}, Says: "has no property 'city' any more"}},
		{name: "an unknown device set is refused",
			when: create(3, func(c *job.Create) { c.DeviceSetID = "portland" }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceSetId"}, Says: `device set "portland" does not exist`}},
		{name: "a deleted device set is refused",
			when: create(3, func(c *job.Create) { c.Set = device.EvolveSet(c.Set, device.SetDeleted{SetID: "seattle"}) }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceSetId"}, Says: "was deleted"}},
		{name: "a set without members cannot be used",
			when: create(0),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceSetId"}, Says: "has no devices; a job needs at least one"}},
		{name: "a job needs a name, a known job type and an operation",
			when: create(3, func(c *job.Create) { c.Name, c.Type, c.Operations = " ", "firmware", nil }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"name", "jobType", "operations"}, Says: `unknown job type "firmware"`}},
		{name: "a job's name is one line of text",
			when: create(3, func(c *job.Create) { c.Name = "Fans\nup" }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"name"}, Says: "control character U+000A"}},
		{name: "an operation names a capability of the job's type",
			when: create(3, func(c *job.Create) { c.Operations = []job.Operation{{Name: "city", Value: "Tacoma"}} }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"operations[0].name"}, Says: `template "vending-v2" declares no setting "city"`}},
		{name: "an operation's value has its capability's schema",
			when: create(3, func(c *job.Create) {
				c.Operations = []job.Operation{{Name: "fanSpeed", Value: "fast"}, {Name: "mode", Value: 3}, {Name: "", Value: 1}}
			}),
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"operations[0].value", "operations[1].value", "operations[2].name"}, Says: `must be a number, got a string ("fast")`}},
		{name: "an operation appears once",
			when: create(3, func(c *job.Create) { c.Operations = append(c.Operations, job.Operation{Name: "fanSpeed", Value: 1}) }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"operations[1].name"}, Says: "already set by operations[0]"}},
		{name: "timeout, batch size and threshold out of bounds are refused",
			when: create(3, func(c *job.Create) { c.TimeoutSeconds, c.BatchSize, c.CancellationThreshold = 86401, -1, 101 }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"timeoutSeconds", "batchSize", "cancellationThreshold"}, Says: "between 1 and 86400 seconds"}},
		{name: "a job ID with a slash is refused",
			when: create(3, func(c *job.Create) { c.JobID = "a/b" }),
			err:  &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"jobId"}, Says: `contains '/'`}},
		{name: "creating the same job again records nothing",
			given: created(members(3)),
			when:  create(4, func(c *job.Create) { c.Operations = []job.Operation{{Name: "fanSpeed", Value: json.Number("1200")}} })},
		{name: "the same chosen devices again record nothing, in any order",
			given: created([]job.TargetedDevice{members(3)[0], members(3)[2]}),
			when:  create(3, func(c *job.Create) { c.DeviceIDs = []string{"d3", "d1"} })},
		{name: "the same job again is no conflict after its set broke",
			given: created(members(3)),
			when:  create(3, func(c *job.Create) { c.Template = deletedTemplate })},
		{name: "another definition under the same id is a conflict",
			given: created(members(3)),
			when:  create(3, func(c *job.Create) { c.Operations = []job.Operation{{Name: "fanSpeed", Value: 900}} }),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: `job "j1" already exists with another definition`}},
		{name: "other chosen devices under the same id is a conflict",
			given: created(members(3)),
			when:  create(3, func(c *job.Create) { c.DeviceIDs = []string{"d1", "d2", "d2"} }),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "another definition"}},
		{name: "a bad field under an existing id is refused naming it, before any comparison",
			given: created(members(3)),
			when:  create(3, func(c *job.Create) { c.BatchSize, c.Name, c.Type = 20000, "", "firmware" }),
			err:   &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"name", "batchSize", "jobType"}, Says: "between 1 and 10000"}},
	})
}

func TestDecideStartAndStop(t *testing.T) {
	stopped := job.Stopped{JobID: jobID, Reason: "wrong speed"}
	runDecide(t, []decideCase{
		{name: "starting a pending job records it",
			given: created(members(2)),
			when:  job.Start{JobID: jobID},
			then:  []job.Event{job.Started{JobID: jobID}}},
		{name: "starting a running job again records nothing",
			given: running(2, 0),
			when:  job.Start{JobID: jobID}},
		{name: "a stopped job cannot be restarted",
			given: running(2, 0, stopped),
			when:  job.Start{JobID: jobID},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "a stopped job cannot be restarted; a new job must be created (POST /api/v1/jobs/j1/copy"}},
		{name: "a job stopped while pending cannot be started",
			given: append(created(members(2)), stopped),
			when:  job.Start{JobID: jobID},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was stopped and cannot be started again"}},
		{name: "a completed job cannot be started again",
			given: running(1, 0, ok("d1"), job.Completed{JobID: jobID, Succeeded: 1}),
			when:  job.Start{JobID: jobID},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "already completed and cannot be started again: a finished job, like a stopped job, cannot be restarted; a new job must be created"}},
		{name: "a job whose targeting is incomplete does not start",
			given: created(members(2))[:1],
			when:  job.Start{JobID: jobID},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "targets 0 of its 2 devices"}},
		{name: "starting a job never created is not found",
			when: job.Start{JobID: jobID},
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: `job "j1" does not exist`}},
		{name: "stopping a pending job records it",
			given: created(members(2)),
			when:  job.Stop{JobID: jobID},
			then:  []job.Event{job.Stopped{JobID: jobID, Reason: job.DefaultStopReason}}},
		{name: "stopping a running job records its reason",
			given: running(2, 0, ok("d1")),
			when:  job.Stop{JobID: jobID, Reason: " wrong speed "},
			then:  []job.Event{stopped}},
		{name: "stopping twice is a conflict that says to create a new job",
			given: running(2, 0, stopped),
			when:  job.Stop{JobID: jobID},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was stopped and cannot be stopped again: a stopped job cannot be restarted; a new job must be created"}},
		{name: "a failed job cannot be stopped",
			given: running(1, 0, failed("d1", "boom"), job.Failed{JobID: jobID, Reason: "1 of 1 devices failed", Failed: 1}),
			when:  job.Stop{JobID: jobID},
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "already failed and cannot be stopped: a finished job, like a stopped job, cannot be restarted"}},
		{name: "a stop reason is bounded",
			given: running(1, 0),
			when:  job.Stop{JobID: jobID, Reason: strings.Repeat("x", 1001)},
			err:   &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"reason"}, Says: "at most 1000"}},
		{name: "stopping a job never created is not found",
			when: job.Stop{JobID: jobID},
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: "does not exist"}},
	})
}

func TestDecideDispatch(t *testing.T) {
	dispatch := func(ids ...string) job.Command { return job.RecordDispatch{JobID: jobID, DeviceIDs: ids} }
	dispatched := func(ids ...string) job.Event { return job.DevicesDispatched{JobID: jobID, DeviceIDs: ids} }
	runDecide(t, []decideCase{
		{name: "dispatching records the devices",
			given: running(3, 0),
			when:  dispatch("d1", "d2"),
			then:  []job.Event{dispatched("d1", "d2")}},
		{name: "devices already dispatched or answered, or named twice, are recorded once",
			given: running(4, 0, dispatched("d1"), ok("d2")),
			when:  dispatch("d1", "d2", "d3", "d3", "d4"),
			then:  []job.Event{dispatched("d3", "d4")}},
		{name: "dispatching only devices already dispatched records nothing",
			given: running(3, 0, dispatched("d1", "d2")),
			when:  dispatch("d2", "d1")},
		{name: "a stopped job dispatches nothing more",
			given: running(3, 0, job.Stopped{JobID: jobID, Reason: "r"}),
			when:  dispatch("d1"),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was stopped: no more devices are dispatched"}},
		{name: "a pending job dispatches nothing",
			given: created(members(3)),
			when:  dispatch("d1"),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "has not started"}},
		{name: "dispatching a device not in the job is refused naming it",
			given: running(3, 0),
			when:  dispatch("d1", "d7", "d8"),
			err:   &domaintest.Refusal{Code: domain.CodeNotFound, Says: `devices "d7", "d8" are not in job "j1"`}},
		{name: "dispatching no device is refused",
			given: running(3, 0),
			when:  dispatch(),
			err:   &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"deviceIds"}, Says: "is empty"}},
	})
}

func TestDecideResults(t *testing.T) {
	long := strings.Repeat("é", job.MaxErrorLen) // 2 bytes each: cut on a character boundary
	results := func(rs ...job.DeviceResult) job.Command { return job.RecordResults{JobID: jobID, Results: rs} }
	succ := func(id string) job.DeviceResult { return job.DeviceResult{DeviceID: id, Status: job.DeviceSucceeded} }
	fail := func(id, msg string) job.DeviceResult {
		return job.DeviceResult{DeviceID: id, Status: job.DeviceFailed, Error: msg}
	}
	timedOut := func(id string) job.DeviceResult {
		return job.DeviceResult{DeviceID: id, Status: job.DeviceFailed, Error: "timed out", TimedOut: true}
	}
	runDecide(t, []decideCase{
		{name: "a success is recorded",
			given: running(2, 0),
			when:  success("d1"),
			then:  []job.Event{ok("d1")}},
		{name: "a failure is recorded with its message",
			given: running(2, 0),
			when:  failure("d1", "fan stuck"),
			then:  []job.Event{failed("d1", "fan stuck")}},
		{name: "the last result completes the job in the same decision",
			given: running(2, 0, ok("d2")),
			when:  success("d1"),
			then:  []job.Event{ok("d1"), job.Completed{JobID: jobID, Succeeded: 2}}},
		{name: "the last result fails the job in the same decision when a device failed",
			given: running(3, 0, failed("d2", "fan stuck"), ok("d3")),
			when:  success("d1"),
			then:  []job.Event{ok("d1"), job.Failed{JobID: jobID, Reason: "1 of 3 devices failed", Succeeded: 2, Failed: 1}}},
		{name: "a duplicate result changes nothing",
			given: running(2, 0, ok("d1")),
			when:  success("d1")},
		{name: "a contradicting result changes nothing: the first result stands",
			given: running(2, 0, ok("d1")),
			when:  failure("d1", "timed out")},
		{name: "a result after completion changes nothing",
			given: running(1, 0, ok("d1"), job.Completed{JobID: jobID, Succeeded: 1}),
			when:  failure("d1", "timed out")},
		{name: "a result for a device not in the job is refused",
			given: running(2, 0),
			when:  success("d9"),
			err:   &domaintest.Refusal{Code: domain.CodeNotFound, Says: `device "d9" is not in job "j1"`}},
		{name: "a late result after a stop is recorded without changing the status",
			given: running(2, 0, ok("d2"), job.Stopped{JobID: jobID, Reason: "r"}),
			when:  success("d1"),
			then:  []job.Event{ok("d1")}},
		{name: "a timeout on a running job is recorded as a failure",
			given: running(2, 0),
			when:  results(timedOut("d1")),
			then:  []job.Event{failed("d1", "timed out")}},
		{name: "a timeout after a stop is not recorded: the device did not act and stays pending",
			given: running(2, 0, ok("d2"), job.Stopped{JobID: jobID, Reason: "r"}),
			when:  results(timedOut("d1"))},
		{name: "a timeout after an early failure is not recorded",
			given: running(3, 50, failed("d1", "x"), failed("d2", "y"), job.Failed{JobID: jobID, Reason: "r", Failed: 2}),
			when:  results(timedOut("d3"))},
		{name: "a late answer after a stop is recorded even when its timeout came first",
			given: running(2, 0, ok("d2"), job.Stopped{JobID: jobID, Reason: "r"}),
			when:  results(timedOut("d1"), succ("d1")),
			then:  []job.Event{ok("d1")}},
		{name: "a timeout of the last device ends the job like any failure",
			given: running(3, 0, ok("d1")),
			when:  results(fail("d2", "y"), timedOut("d3")),
			then:  []job.Event{failed("d2", "y"), failed("d3", "timed out"), job.Failed{JobID: jobID, Reason: "2 of 3 devices failed", Succeeded: 1, Failed: 2}}},
		{name: "a timeout after a threshold tripped earlier in the batch is not recorded",
			given: running(4, 25),
			when:  results(fail("d1", "x"), timedOut("d2")),
			then: []job.Event{failed("d1", "x"), job.Failed{JobID: jobID, Failed: 1,
				Reason: "the cancellation threshold was reached: 1 of 4 devices failed, and the job fails once 25% of its devices have failed"}}},
		{name: "a result before the job started is refused",
			given: created(members(2)),
			when:  success("d1"),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "cannot report a result before the job is started"}},
		{name: "a result on a job stopped before it started is refused: its devices were never sent it",
			given: append(created(members(2)), job.Stopped{JobID: jobID, Reason: "r"}),
			when:  success("d1"),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: `job "j1" was stopped before it started`}},
		{name: "a failure on a job stopped before it started is refused",
			given: append(created(members(2)), job.Stopped{JobID: jobID, Reason: "r"}),
			when:  failure("d1", "fan stuck"),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was stopped before it started"}},
		{name: "a batch of results on a job stopped before it started is refused as a whole",
			given: append(created(members(2)), job.Stopped{JobID: jobID, Reason: "r"}),
			when:  results(succ("d1"), fail("d2", "x")),
			err:   &domaintest.Refusal{Code: domain.CodeConflict, Says: "was stopped before it started"}},
		{name: "a result for a job never created is not found",
			when: success("d1"),
			err:  &domaintest.Refusal{Code: domain.CodeNotFound, Says: `job "j1" does not exist`}},
		{name: "the cancellation threshold fails the job early",
			given: running(4, 50, failed("d1", "x")),
			when:  failure("d2", "y"),
			then: []job.Event{failed("d2", "y"), job.Failed{JobID: jobID, Failed: 2,
				Reason: "the cancellation threshold was reached: 2 of 4 devices failed, and the job fails once 50% of its devices have failed"}}},
		{name: "below the cancellation threshold the job runs on",
			given: running(4, 50),
			when:  failure("d2", "y"),
			then:  []job.Event{failed("d2", "y")}},
		{name: "without a cancellation threshold failures wait for the end",
			given: running(2, 0),
			when:  failure("d2", "y"),
			then:  []job.Event{failed("d2", "y")}},
		{name: "a late result after an early failure is recorded without changing the status",
			given: running(2, 50, failed("d1", "x"), job.Failed{JobID: jobID, Reason: "r", Failed: 1}),
			when:  success("d2"),
			then:  []job.Event{ok("d2")}},
		{name: "a failure without a message is recorded with a stand-in",
			given: running(2, 0),
			when:  failure("d1", "  "),
			then:  []job.Event{failed("d1", job.NoErrorMessage)}},
		{name: "a failure's message is made valid UTF-8",
			given: running(2, 0),
			when:  failure("d1", "bad \xff byte"),
			then:  []job.Event{failed("d1", "bad \uFFFD byte")}},
		{name: "a command naming another job finds no job",
			given: running(2, 0),
			when:  job.RecordSuccess{JobID: "j2", DeviceID: "d1"},
			err:   &domaintest.Refusal{Code: domain.CodeNotFound, Says: `job "j2" does not exist`}},
		{name: "a long error message is cut on a character boundary",
			given: running(2, 0),
			when:  failure("d1", long),
			then:  []job.Event{failed("d1", long[:job.MaxErrorLen])}},
		{name: "a batch is decided as one result after another: the first result stands and the last completes the job",
			given: running(3, 0, ok("d1")),
			when:  results(succ("d2"), fail("d2", "x"), succ("d1"), fail("d3", "y"), succ("d3")),
			then:  []job.Event{ok("d2"), failed("d3", "y"), job.Failed{JobID: jobID, Reason: "1 of 3 devices failed", Succeeded: 2, Failed: 1}}},
		{name: "a batch trips the threshold where it is reached and records the results after it",
			given: running(4, 25),
			when:  results(succ("d1"), fail("d2", "x"), succ("d3")),
			then: []job.Event{ok("d1"), failed("d2", "x"), job.Failed{JobID: jobID, Succeeded: 1, Failed: 1,
				Reason: "the cancellation threshold was reached: 1 of 4 devices failed, and the job fails once 25% of its devices have failed"}, ok("d3")}},
		{name: "a batch of duplicates changes nothing",
			given: running(3, 0, ok("d1"), failed("d2", "x")),
			when:  results(succ("d1"), succ("d2"))},
		{name: "a batch naming devices not in the job is refused as a whole, naming them",
			given: running(3, 0),
			when:  results(succ("d1"), succ("d8"), succ("d9")),
			err:   &domaintest.Refusal{Code: domain.CodeNotFound, Says: `devices "d8", "d9" are not in job "j1"`}},
		{name: "a result of an unknown status is refused",
			given: running(3, 0),
			when:  results(succ("d1"), job.DeviceResult{DeviceID: "d2", Status: job.DevicePending}),
			err:   &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"results[1].status"}, Says: `unknown result "pending"`}},
		{name: "a success with an error message is refused: only a failure has one",
			given: running(3, 0),
			when:  results(succ("d1"), job.DeviceResult{DeviceID: "d2", Status: job.DeviceSucceeded, Error: "all good"}),
			err:   &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"results[1].error"}, Says: "must be empty when status is succeeded"}},
	})
}

func TestResultCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		r    job.DeviceResult
		err  *domaintest.Refusal
	}{
		{name: "a success without a message is valid", r: job.DeviceResult{DeviceID: "d1", Status: job.DeviceSucceeded}},
		{name: "a failure with a message is valid", r: job.DeviceResult{DeviceID: "d1", Status: job.DeviceFailed, Error: "fan stuck"}},
		{name: "a failure without a message is valid: it is recorded with a stand-in", r: job.DeviceResult{DeviceID: "d1", Status: job.DeviceFailed}},
		{name: "a success with a message is refused, naming the error",
			r:   job.DeviceResult{DeviceID: "d1", Status: job.DeviceSucceeded, Error: "all good"},
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"error"}, Says: "only a failure has an error message"}},
		{name: "an unknown status is refused, naming the status",
			r:   job.DeviceResult{DeviceID: "d1", Status: "done"},
			err: &domaintest.Refusal{Code: domain.CodeInvalid, Fields: []string{"status"}, Says: `unknown result "done"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			domaintest.CheckRefusal(t, c.r.Check(), c.err)
		})
	}
}

func TestEvolveKeepsCountsAndDeviceStates(t *testing.T) {
	s := job.Fold(running(4, 0,
		job.DevicesDispatched{JobID: jobID, DeviceIDs: []string{"d1", "d2", "d3", "d9"}},
		ok("d1"), failed("d2", "timed out"), failed("d4", "timed out"), ok("d2")))
	if diff := cmp.Diff(job.Counts{Total: 4, Pending: 1, Succeeded: 1, Failed: 2, Dispatched: 3}, s.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	got := map[string]job.Device{}
	for id, d := range s.Devices() {
		got[id] = d
	}
	want := map[string]job.Device{
		"d1": {Status: job.DeviceSucceeded, Dispatched: true},
		"d2": {Status: job.DeviceFailed, Dispatched: true, Error: "timed out"},
		"d3": {Status: job.DevicePending, Dispatched: true},
		"d4": {Status: job.DeviceFailed, Error: "timed out"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
	if _, ok := s.Device("d9"); ok {
		t.Error("Device(d9) found a device the job does not target")
	}
	if s.Status != job.StatusRunning {
		t.Errorf("status %q, want running", s.Status)
	}
}

func TestEvolveNeverLeavesAFinishedStatus(t *testing.T) {
	s := job.Fold(running(2, 0, job.Stopped{JobID: jobID, Reason: "r"}, ok("d1"), ok("d2"),
		job.Completed{JobID: jobID, Succeeded: 2}, job.Started{JobID: jobID}, job.Failed{JobID: jobID, Reason: "x"}))
	if s.Status != job.StatusStopped || s.Reason != "r" {
		t.Errorf("status %q (%q), want stopped (r)", s.Status, s.Reason)
	}
	if got := s.Counts().Succeeded; got != 2 {
		t.Errorf("late results: %d succeeded, want 2", got)
	}
}

func TestFoldOfNothingIsNoJob(t *testing.T) {
	s := job.Fold(nil)
	if s.Exists() || s.Counts() != (job.Counts{}) || s.Targeted() != 0 {
		t.Errorf("Fold(nil) = %+v, want no job", s)
	}
	if _, ok := s.Device("d1"); ok {
		t.Error("a job never created has devices")
	}
}

// TestEveryEventNamesItsJob: Job is the JobID of each event of the
// catalog, which is how projectors tell the job of an event they read.
func TestEveryEventNamesItsJob(t *testing.T) {
	for _, e := range []job.Event{
		job.Created{JobID: jobID}, job.DevicesTargeted{JobID: jobID}, job.Started{JobID: jobID},
		job.DevicesDispatched{JobID: jobID}, job.OperationSucceeded{JobID: jobID}, job.OperationFailed{JobID: jobID},
		job.Completed{JobID: jobID}, job.Failed{JobID: jobID}, job.Stopped{JobID: jobID},
	} {
		if got := e.Job(); got != jobID {
			t.Errorf("%T.Job() = %q, want %q", e, got, jobID)
		}
	}
}
