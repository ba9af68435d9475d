package job_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/fleetjobs/fleetjobs/domain"
	"github.com/fleetjobs/fleetjobs/domain/job"
)

// view is everything a State answers, in a form cmp compares.
type view struct {
	Exists  bool
	Status  job.Status
	Reason  string
	Counts  job.Counts
	Devices map[string]job.Device
	Order   []string
}

func viewOf(s *job.State) view {
	v := view{Exists: s.Exists(), Counts: s.Counts(), Devices: map[string]job.Device{}}
	if s != nil {
		v.Status, v.Reason = s.Status, s.Reason
	}
	for id, d := range s.Devices() {
		v.Devices[id] = d
		v.Order = append(v.Order, id)
	}
	return v
}

// tally counts the devices of a view by status, as Counts must.
func tally(v view) job.Counts {
	c := job.Counts{Total: len(v.Devices)}
	for _, d := range v.Devices {
		switch d.Status {
		case job.DevicePending:
			c.Pending++
		case job.DeviceSucceeded:
			c.Succeeded++
		case job.DeviceFailed:
			c.Failed++
		}
		if d.Dispatched {
			c.Dispatched++
		}
	}
	return c
}

// drawCommand draws any command on job j1 over ids (which include a device
// the job does not target).
func drawCommand(t *rapid.T, ids []string, n, threshold int) job.Command {
	id := rapid.SampledFrom(ids)
	msg := rapid.SampledFrom([]string{"timed out", "fan stuck", ""})
	switch rapid.IntRange(0, 9).Draw(t, "kind") {
	case 0:
		return job.Start{JobID: jobID}
	case 1:
		return job.Stop{JobID: jobID, Reason: "enough"}
	case 2:
		return job.RecordDispatch{JobID: jobID, DeviceIDs: rapid.SliceOfN(id, 1, 5).Draw(t, "dispatch")}
	case 3, 4:
		return job.RecordSuccess{JobID: jobID, DeviceID: id.Draw(t, "device")}
	case 5, 6:
		return job.RecordFailure{JobID: jobID, DeviceID: id.Draw(t, "device"), Error: msg.Draw(t, "error")}
	case 7, 8:
		rs := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) job.DeviceResult {
			r := job.DeviceResult{DeviceID: id.Draw(t, "device"), Status: job.DeviceSucceeded}
			switch rapid.IntRange(0, 9).Draw(t, "result") {
			case 0: // a success with a message, which no job takes
				r.Error = "all good"
			case 1, 2, 3, 4:
				r.Status, r.Error = job.DeviceFailed, msg.Draw(t, "error")
			}
			return r
		}), 1, 6).Draw(t, "results")
		return job.RecordResults{JobID: jobID, Results: rs}
	}
	return create(n, func(c *job.Create) { c.CancellationThreshold = threshold })
}

// Any sequence of commands keeps the counts equal to the per-device
// statuses, never leaves a finished status, never loses a result, records
// no result on a job that never started (stopped while pending included), finishes
// a running job in the decision that brings its last result, and folding
// the whole log gives the state evolved step by step.
func TestPropertyAnySequenceOfCommandsKeepsTheJobRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(t, "devices")
		threshold := rapid.SampledFrom([]int{0, 0, 20, 50, 100}).Draw(t, "threshold")
		ids := []string{"ghost"}
		for _, m := range members(n) {
			ids = append(ids, m.DeviceID)
		}
		events, err := job.Decide(nil, create(n, func(c *job.Create) { c.CancellationThreshold = threshold }))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		log := append([]job.Event(nil), events...)
		s := job.Fold(events)
		first := map[string]job.DeviceStatus{} // the first result recorded for each device
		finishes := 0
		started := false

		steps := rapid.IntRange(0, 80).Draw(t, "steps")
		for range steps {
			cmd := drawCommand(t, ids, n, threshold)
			before := viewOf(s)
			events, err := job.Decide(s, cmd)
			if diff := cmp.Diff(before, viewOf(s)); diff != "" {
				t.Fatalf("Decide(%#v) changed the state (-before +after):\n%s", cmd, diff)
			}
			if rr, ok := cmd.(job.RecordResults); ok {
				takes := true
				for _, r := range rr.Results {
					takes = takes && s.Takes(r)
				}
				if takes != (err == nil) {
					t.Fatalf("Takes says %t for every result of %#v, but Decide refused with %v", takes, cmd, err)
				}
			}
			if err != nil {
				if domain.ErrorCode(err) == "" {
					t.Fatalf("Decide(%#v): %v is not a domain error", cmd, err)
				}
				continue
			}
			for _, ev := range events {
				switch ev.(type) {
				case job.Started:
					started = true
				case job.OperationSucceeded, job.OperationFailed:
					if !started {
						t.Fatalf("%#v was recorded on a job that never started", ev)
					}
				}
				switch e := ev.(type) {
				case job.OperationSucceeded:
					if _, dup := first[e.DeviceID]; dup {
						t.Fatalf("a second result for %s was recorded", e.DeviceID)
					}
					first[e.DeviceID] = job.DeviceSucceeded
				case job.OperationFailed:
					if _, dup := first[e.DeviceID]; dup {
						t.Fatalf("a second result for %s was recorded", e.DeviceID)
					}
					first[e.DeviceID] = job.DeviceFailed
				case job.Completed, job.Failed, job.Stopped:
					finishes++
				}
				s = job.Evolve(s, ev)
			}
			log = append(log, events...)

			after := viewOf(s)
			if before.Status.Finished() && after.Status != before.Status {
				t.Fatalf("status went from %s to %s", before.Status, after.Status)
			}
			if finishes > 1 {
				t.Fatalf("the job finished %d times", finishes)
			}
			if got := tally(after); got != after.Counts {
				t.Fatalf("counts %+v, but the devices say %+v", after.Counts, got)
			}
			for id, d := range after.Devices {
				want, answered := first[id]
				if !answered {
					want = job.DevicePending
				}
				if d.Status != want {
					t.Fatalf("device %s is %s, want %s", id, d.Status, want)
				}
			}
			if before.Status == job.StatusRunning && after.Counts.Pending == 0 && !after.Status.Finished() {
				t.Fatalf("every device answered, yet the job is %s", after.Status)
			}
			if after.Status == job.StatusCompleted && after.Counts.Succeeded != n {
				t.Fatalf("completed with counts %+v", after.Counts)
			}
		}
		if diff := cmp.Diff(viewOf(s), viewOf(job.Fold(log))); diff != "" {
			t.Fatalf("Fold(all events) differs from step-by-step evolution (-steps +fold):\n%s", diff)
		}
	})
}

// A batch of results decides exactly what deciding and evolving them one
// by one does.
func TestPropertyABatchOfResultsIsTheResultsOneByOne(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 10).Draw(t, "devices")
		threshold := rapid.SampledFrom([]int{0, 30, 100}).Draw(t, "threshold")
		var given []job.Event
		if rapid.Bool().Draw(t, "stopped") {
			given = append(given, job.Stopped{JobID: jobID, Reason: "r"})
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("d%d", i+1)
		}
		id := rapid.SampledFrom(ids)
		rs := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) job.DeviceResult {
			r := job.DeviceResult{DeviceID: id.Draw(t, "device"), Status: job.DeviceSucceeded}
			if rapid.Bool().Draw(t, "fails") {
				r.Status, r.Error = job.DeviceFailed, "x"
			}
			return r
		}), 1, 15).Draw(t, "results")

		batch, err := job.Decide(job.Fold(running(n, threshold, given...)), job.RecordResults{JobID: jobID, Results: rs})
		if err != nil {
			t.Fatalf("batch: %v", err)
		}
		s := job.Fold(running(n, threshold, given...))
		var single []job.Event
		for _, r := range rs {
			var cmd job.Command = job.RecordSuccess{JobID: jobID, DeviceID: r.DeviceID}
			if r.Status == job.DeviceFailed {
				cmd = job.RecordFailure{JobID: jobID, DeviceID: r.DeviceID, Error: r.Error}
			}
			events, err := job.Decide(s, cmd)
			if err != nil {
				t.Fatalf("one by one: %v", err)
			}
			for _, ev := range events {
				s = job.Evolve(s, ev)
			}
			single = append(single, events...)
		}
		if diff := cmp.Diff(single, batch); diff != "" {
			t.Fatalf("batch differs from one by one (-single +batch):\n%s", diff)
		}
	})
}

// Create targets every device exactly once, in events of at most 1,000
// that add up to deviceCount.
func TestPropertyTargetingAddsUpToTheDeviceCount(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 3500).Draw(t, "devices")
		events, err := job.Decide(nil, create(n))
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 + (n+999)/1000; len(events) != want {
			t.Fatalf("%d events for %d devices, want %d", len(events), n, want)
		}
		count := events[0].(job.Created).DeviceCount
		sum := 0
		for _, ev := range events[1:] {
			d := ev.(job.DevicesTargeted).Devices
			if len(d) == 0 || len(d) > job.MaxDevicesPerEvent {
				t.Fatalf("a targeting event of %d devices", len(d))
			}
			sum += len(d)
		}
		if sum != n || count != n {
			t.Fatalf("targeted %d, deviceCount %d, want %d", sum, count, n)
		}
		if s := job.Fold(events); s.Targeted() != n || s.Counts().Pending != n {
			t.Fatalf("state targets %d with %d pending, want %d", s.Targeted(), s.Counts().Pending, n)
		}
	})
}
