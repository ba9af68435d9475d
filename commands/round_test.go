package commands_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore/eventstoretest"
)

// TestRoundEventsBelongToTheResultThatMadeThem: in one round of results,
// each event is recorded under the request whose result decided it. A
// timeout that records nothing (the job has ended) does not take the
// event of a later answer for the same device, which would record the
// device's own answer under the dispatcher's command and tell its caller
// nothing was recorded.
func TestRoundEventsBelongToTheResultThatMadeThem(t *testing.T) {
	h := MustJobHandler(t, eventstoretest.MustDial(t, eventstoretest.MustStartServer(t).URL()))
	const id = "j1"
	fold := func(events ...job.Event) *job.State {
		var s *job.State
		for _, e := range events {
			s = job.Evolve(s, e)
		}
		return s
	}
	created := []job.Event{
		job.Created{JobID: id, Name: "n", DeviceSetID: "s", Type: job.TypeSetting, Operations: []job.Operation{{Name: "fan", Value: 1.0}},
			DeviceCount: 2, TimeoutSeconds: 30, BatchSize: 100},
		job.DevicesTargeted{JobID: id, Devices: []job.TargetedDevice{{DeviceID: "d1"}, {DeviceID: "d2"}}},
		job.Started{JobID: id},
	}
	timeout := func(dev string) job.DeviceResult {
		return job.DeviceResult{DeviceID: dev, Status: job.DeviceFailed, Error: "timed out", TimedOut: true}
	}
	ok := func(dev string) job.DeviceResult { return job.DeviceResult{DeviceID: dev, Status: job.DeviceSucceeded} }
	for _, tc := range []struct {
		name  string
		state *job.State
		reqs  []commands.RoundRequest
		want  []string
	}{
		{"a stopped job: the answer's event is the answer's",
			fold(append(created, job.Stopped{JobID: id, Reason: "r"})...),
			[]commands.RoundRequest{{"dispatcher-timeout", []job.DeviceResult{timeout("d1")}}, {"device-answer", []job.DeviceResult{ok("d1")}}},
			[]string{"device-answer"}},
		{"a running job: the timeout came first and stands",
			fold(created...),
			[]commands.RoundRequest{{"dispatcher-timeout", []job.DeviceResult{timeout("d1")}}, {"device-answer", []job.DeviceResult{ok("d1")}}},
			[]string{"dispatcher-timeout"}},
		{"a job ended earlier in the round: the later timeout records nothing",
			fold(append(created, job.OperationSucceeded{JobID: id, DeviceID: "d2"})...),
			[]commands.RoundRequest{{"answer-d1", []job.DeviceResult{ok("d1")}}, {"dispatcher-timeout", []job.DeviceResult{timeout("d1")}}, {"answer-d1-again", []job.DeviceResult{ok("d1")}}},
			[]string{"answer-d1", "answer-d1"}}, // its success and the job's Completed
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := commands.RoundOwners(h, tc.state, tc.reqs)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("command of each event (-want +got):\n%s", diff)
			}
		})
	}
}
