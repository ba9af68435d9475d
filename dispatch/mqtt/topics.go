package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetjobs/fleetjobs/dispatch"
)

// Topic layout of ARCHITECTURE.md.
const (
	// TopicRoot is the prefix of every fleetjobs topic.
	TopicRoot     = "fleetjobs/"
	devicesPrefix = "fleetjobs/devices/"
	// DefaultShareGroup is the shared-subscription group of the service
	// instances reading answers.
	DefaultShareGroup = "fleetjobs"
	// AnyResultFilter matches every device's answer to every job.
	AnyResultFilter = "fleetjobs/devices/+/jobs/+/result"
	// StatusSucceeded and StatusFailed are the statuses a device answers.
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	// DefaultMaxAnswerBytes bounds an answer's payload: an answer is a
	// status and a short message, anything larger is refused unread.
	DefaultMaxAnswerBytes = 4 << 10
	// noMessage is the error recorded for a failure the device did not explain.
	noMessage = "the device reported a failure without a message"
)

// JobTopic is the topic a device receives its jobs on.
func JobTopic(deviceID, jobID string) string {
	return devicesPrefix + deviceID + "/jobs/" + jobID
}

// JobFilter is the filter a device subscribes to for its jobs.
func JobFilter(deviceID string) string { return devicesPrefix + deviceID + "/jobs/+" }

// ResultTopic is the topic a device answers a job on.
func ResultTopic(deviceID, jobID string) string { return JobTopic(deviceID, jobID) + "/result" }

// SharedResultFilter is the shared subscription to every answer for group.
func SharedResultFilter(group string) string { return "$share/" + group + "/" + AnyResultFilter }

// parseJobTopic returns the IDs of a job topic, ok false if topic is not one
// (with valid IDs).
func parseJobTopic(topic string) (deviceID, jobID string, ok bool) {
	rest, found := strings.CutPrefix(topic, devicesPrefix)
	if !found {
		return "", "", false
	}
	deviceID, rest, found = strings.Cut(rest, "/jobs/")
	if !found || !validID(deviceID) || !validID(rest) {
		return "", "", false
	}
	return deviceID, rest, true
}

// parseResultTopic returns the IDs of a result topic, ok false if topic is
// not one (with valid IDs).
func parseResultTopic(topic string) (deviceID, jobID string, ok bool) {
	rest, found := strings.CutSuffix(topic, "/result")
	if !found {
		return "", "", false
	}
	return parseJobTopic(rest)
}

// validID is domain.CheckID's rule, repeated because transports do not
// import the domain: 1 to 128 characters among ASCII letters, digits and
// "-_.:@". In particular an ID never holds "/", "+" or "#", so it is exactly
// one topic level and never a wildcard.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-_.:@", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// JobMessage is the payload of a job topic.
type JobMessage struct {
	JobID      string             `json:"jobId"`
	JobType    string             `json:"jobType"`
	Operations []OperationMessage `json:"operations"`
	Deadline   time.Time          `json:"deadline"`
}

// OperationMessage is one operation of a JobMessage.
type OperationMessage struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// ResultMessage is the payload of a result topic.
type ResultMessage struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// encodeOperations is the JSON of a batch's operations, encoded once per
// batch since every delivery of a batch shares them.
func encodeOperations(ops []dispatch.Operation) ([]byte, error) {
	msgs := make([]OperationMessage, len(ops))
	for i, op := range ops {
		msgs[i] = OperationMessage{Name: op.Name, Value: op.Value}
	}
	b, err := json.Marshal(msgs)
	if err != nil {
		return nil, fmt.Errorf("encode operations: %w", err)
	}
	return b, nil
}

// appendJob appends the JobMessage of d, whose operations are already
// encoded, to buf: the same bytes json.Marshal(JobMessage) would give,
// without re-encoding the operations for every device.
func appendJob(buf []byte, d dispatch.Delivery, ops []byte) []byte {
	buf = append(buf, `{"jobId":`...)
	buf = appendString(buf, d.JobID)
	buf = append(buf, `,"jobType":`...)
	buf = appendString(buf, d.JobType)
	buf = append(buf, `,"operations":`...)
	buf = append(buf, ops...)
	buf = append(buf, `,"deadline":"`...)
	buf = d.Deadline.UTC().AppendFormat(buf, time.RFC3339Nano)
	return append(buf, `"}`...)
}

// appendString appends s as a JSON string.
func appendString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(buf, b...)
}

// Reasons an answer is dropped.
var (
	errOversized = errors.New("answer larger than the limit")
	errBadTopic  = errors.New("topic is not a result topic with valid IDs")
	errMalformed = errors.New("answer is not a JSON result object")
	errBadStatus = errors.New("answer status is neither succeeded nor failed")
)

// decodeAnswer turns a received result into an Answer, or says why it is
// dropped (one of the errors above).
func decodeAnswer(topic string, payload []byte, maxBytes int) (dispatch.Answer, error) {
	if len(payload) > maxBytes {
		return dispatch.Answer{}, errOversized
	}
	deviceID, jobID, ok := parseResultTopic(topic)
	if !ok {
		return dispatch.Answer{}, errBadTopic
	}
	var m ResultMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		return dispatch.Answer{}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	a := dispatch.Answer{JobID: jobID, DeviceID: deviceID}
	switch m.Status {
	case StatusSucceeded:
		a.Succeeded = true
	case StatusFailed:
		a.Error = m.Error
		if strings.TrimSpace(a.Error) == "" {
			a.Error = noMessage
		}
	default:
		return dispatch.Answer{}, errBadStatus
	}
	return a, nil
}
