package job_test

import (
	"fmt"

	"github.com/fleetjobs/fleetjobs/domain/job"
)

// A job's life: created on two devices, started, and finished in the
// decision that records its last result.
func Example() {
	events, err := job.Decide(nil, create(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	s := job.Fold(events)
	for _, cmd := range []job.Command{
		job.Start{JobID: jobID},
		job.RecordDispatch{JobID: jobID, DeviceIDs: []string{"d1", "d2"}},
		job.RecordSuccess{JobID: jobID, DeviceID: "d1"},
		job.RecordSuccess{JobID: jobID, DeviceID: "d1"}, // a duplicate: nothing
		job.RecordFailure{JobID: jobID, DeviceID: "d2", Error: "fan stuck"},
		job.Start{JobID: jobID},
	} {
		events, err := job.Decide(s, cmd)
		if err != nil {
			fmt.Println("refused:", err)
			continue
		}
		for _, ev := range events {
			fmt.Printf("%T\n", ev)
			s = job.Evolve(s, ev) // mutates s
		}
	}
	fmt.Println(s.Status, s.Reason, s.Counts().Succeeded, s.Counts().Failed)
	// Output:
	// job.Started
	// job.DevicesDispatched
	// job.OperationSucceeded
	// job.OperationFailed
	// job.Failed
	// refused: job "j1" already failed and cannot be started again: a finished job, like a stopped job, cannot be restarted; a new job must be created (POST /api/v1/jobs/j1/copy copies its definition)
	// failed 1 of 2 devices failed 1 1
}
