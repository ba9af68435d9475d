package commands

import "github.com/fleetjobs/fleetjobs/domain/job"

// SplitAppend exposes splitAppend to the black-box tests: where a run of
// events of these sizes is cut into appends.
func SplitAppend(sizes []int, glued []bool, limit int) ([]int, error) {
	return splitAppend(sizes, glued, limit)
}

// RoundRequest is one request of a round of results: its command ID and
// its results.
type RoundRequest struct {
	CommandID string
	Results   []job.DeviceResult
}

// RoundOwners decides one round of results requests on job state s as the
// job worker does, and returns the command ID each decided event is
// recorded under, in order.
func RoundOwners(h *Handler, s *job.State, reqs []RoundRequest) ([]string, error) {
	w := &jobWorker{h: h, id: s.JobID, stream: "job-" + s.JobID}
	live := make([]*jobRequest, len(reqs))
	for i, r := range reqs {
		live[i] = &jobRequest{meta: Meta{CommandID: r.CommandID}, results: r.Results}
	}
	rd, err := w.decideRound(s, live)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rd.owner))
	for i, o := range rd.owner {
		out[i] = reqs[o].CommandID
	}
	return out, nil
}
