package job

import (
	"iter"
	"math/bits"
)

// State is the state of a job, folded from its stream. A nil *State is a
// job never created.
//
// State is mutable and not a value to share: Evolve changes the State it is
// given and returns it, so that recording one device result costs O(1)
// whatever the job's size. Decide only reads it. Whoever keeps a State (the
// command path's cache) must not Evolve it while another goroutine reads
// it, and must reload it from the stream when an append it evolved for
// fails.
//
// It stays compact at a million devices: the device IDs live in one byte
// arena indexed by an open-addressing table of int32 (no string headers,
// no map of strings), each device has one status byte, the counts are kept
// as results arrive, and error messages are interned and kept only for
// failed devices. Device names are not kept: the read models have them.
type State struct {
	JobID                 string
	Name                  string
	Description           string
	DeviceSetID           string
	Type                  Type
	Operations            []Operation
	TimeoutSeconds        int
	BatchSize             int
	CancellationThreshold int
	// DeviceCount is the number of devices Created announced; the
	// DevicesTargeted events bring them (Targeted).
	DeviceCount int
	// Status is the job's status.
	Status Status
	// Reason says why a job failed or was stopped.
	Reason string

	// started is set by Started and stays set: a job stopped while
	// pending never started, and its devices were never sent it.
	started    bool
	devs       devices
	succeeded  int
	failed     int
	dispatched int
}

// Exists reports whether the job was created.
func (s *State) Exists() bool { return s != nil && s.JobID != "" }

// HasStarted reports whether the job was started (Pending -> Running),
// whatever its status now: a job stopped while still pending never was.
// Only a started job's devices were sent it, so only they report results.
func (s *State) HasStarted() bool { return s != nil && s.started }

// Targeted is how many devices the job's DevicesTargeted events named.
func (s *State) Targeted() int {
	if s == nil {
		return 0
	}
	return s.devs.len()
}

// Counts are a job's device counts. Pending + Succeeded + Failed == Total;
// Dispatched counts the devices dispatched at least once, answered or not.
type Counts struct {
	Total      int
	Pending    int
	Succeeded  int
	Failed     int
	Dispatched int
}

// Counts returns the job's device counts, in O(1).
func (s *State) Counts() Counts {
	if s == nil {
		return Counts{}
	}
	n := s.devs.len()
	return Counts{Total: n, Pending: n - s.succeeded - s.failed, Succeeded: s.succeeded, Failed: s.failed, Dispatched: s.dispatched}
}

// Device is the state of one device in a job.
type Device struct {
	Status DeviceStatus
	// Dispatched is true once the device was dispatched.
	Dispatched bool
	// Error is the failure's message (DeviceFailed only).
	Error string
}

// Device returns the state of device id in the job; ok is false if the job
// does not target it. The dispatcher and the per-job result worker use it
// to check a device before deciding.
func (s *State) Device(id string) (d Device, ok bool) {
	if s == nil {
		return Device{}, false
	}
	i, ok := s.devs.index(id)
	if !ok {
		return Device{}, false
	}
	return s.devs.device(i), true
}

// Devices yields every device of the job with its state, in the order the
// job targeted them. The ID strings are fresh copies.
func (s *State) Devices() iter.Seq2[string, Device] {
	return func(yield func(string, Device) bool) {
		if s == nil {
			return
		}
		for i := range s.devs.len() {
			if !yield(s.devs.id(int32(i)), s.devs.device(int32(i))) {
				return
			}
		}
	}
}

// Evolve applies one event of the job's stream to s and returns it (a new
// State for a nil s). It never fails: an event that does not fit the state
// (which Decide never decides) changes nothing, so that folding any stream
// gives one answer. It mutates s: see State.
func Evolve(s *State, ev Event) *State {
	if s == nil {
		s = &State{}
	}
	switch e := ev.(type) {
	case Created:
		if s.Exists() {
			return s
		}
		*s = State{
			JobID: e.JobID, Name: e.Name, Description: e.Description, DeviceSetID: e.DeviceSetID,
			Type: e.Type, Operations: e.Operations, TimeoutSeconds: e.TimeoutSeconds, BatchSize: e.BatchSize,
			CancellationThreshold: e.CancellationThreshold, DeviceCount: e.DeviceCount, Status: StatusPending,
		}
		s.devs.reserve(e.DeviceCount)
	case DevicesTargeted:
		if len(e.Devices) > 0 && s.devs.len() == 0 && s.DeviceCount > 0 {
			// Size the arena from the first event's average ID length,
			// so a million IDs do not grow it twenty times.
			total := 0
			for _, d := range e.Devices {
				total += len(d.DeviceID)
			}
			s.devs.reserveBytes(total/len(e.Devices)*s.DeviceCount + s.DeviceCount/8 + 64)
		}
		for _, d := range e.Devices {
			s.devs.add(d.DeviceID)
		}
	case Started:
		if s.Status == StatusPending {
			s.Status, s.started = StatusRunning, true
		}
	case DevicesDispatched:
		for _, id := range e.DeviceIDs {
			if i, ok := s.devs.index(id); ok && s.devs.st[i]&dispatchedBit == 0 {
				s.devs.st[i] |= dispatchedBit
				s.dispatched++
			}
		}
	case OperationSucceeded:
		if i, ok := s.devs.index(e.DeviceID); ok && s.devs.st[i]&resultMask == 0 {
			s.devs.st[i] |= succeededBits
			s.succeeded++
		}
	case OperationFailed:
		if i, ok := s.devs.index(e.DeviceID); ok && s.devs.st[i]&resultMask == 0 {
			s.devs.st[i] |= failedBits
			s.devs.setError(i, e.Error)
			s.failed++
		}
	case Completed:
		if !s.Status.Finished() {
			s.Status = StatusCompleted
		}
	case Failed:
		if !s.Status.Finished() {
			s.Status, s.Reason = StatusFailed, e.Reason
		}
	case Stopped:
		if !s.Status.Finished() {
			s.Status, s.Reason = StatusStopped, e.Reason
		}
	}
	return s
}

// Fold folds a job stream's events into its state (nil for no events).
func Fold(events []Event) *State {
	var s *State
	for _, ev := range events {
		s = Evolve(s, ev)
	}
	return s
}

// A device's status byte: two bits of result, one of dispatch.
const (
	succeededBits uint8 = 1
	failedBits    uint8 = 2
	resultMask    uint8 = 3
	dispatchedBit uint8 = 4
)

// devices is the compact per-device part of a State: IDs in one arena,
// found through an open-addressing hash table of indexes, one status byte
// each, and interned error messages for the failed ones only.
//
// At a million devices of 14-byte IDs that is about 14 MB of IDs, 4 MB of
// offsets, 8 MB of table and 1 MB of status: some 27 MB, where a
// map[string]struct{...} would take several times that.
type devices struct {
	arena []byte   // every ID, back to back
	ends  []uint32 // ends[i]: where ID i ends in arena (it starts at ends[i-1])
	st    []uint8  // status byte of each device
	// slots is the hash table: index+1 of a device, 0 for an empty slot;
	// its length is a power of two, at most half full.
	slots []int32
	// errs holds the message of each failed device, as an index into msgs:
	// sparse (most devices succeed), and many devices fail with the same
	// message ("timed out"), stored once.
	errs    map[int32]uint32
	msgs    []string
	msgByID map[string]uint32
}

func (d *devices) len() int { return len(d.ends) }

// reserve sizes the table and per-device slices for n devices.
func (d *devices) reserve(n int) {
	if n <= 0 {
		return
	}
	d.ends = make([]uint32, 0, n)
	d.st = make([]uint8, 0, n)
	d.slots = make([]int32, tableSize(n))
}

func (d *devices) reserveBytes(n int) {
	if cap(d.arena)-len(d.arena) < n {
		a := make([]byte, len(d.arena), len(d.arena)+n)
		copy(a, d.arena)
		d.arena = a
	}
}

// tableSize is the smallest power of two at least twice n (and 16).
func tableSize(n int) int {
	if n < 8 {
		return 16
	}
	return 1 << bits.Len(uint(2*n-1))
}

// hash is FNV-1a: deterministic (the domain draws nothing random) and good
// enough for IDs, which a client chooses but cannot use to slow others'
// jobs: each job has its own table.
func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func (d *devices) idBytes(i int32) []byte {
	start := uint32(0)
	if i > 0 {
		start = d.ends[i-1]
	}
	return d.arena[start:d.ends[i]]
}

func (d *devices) id(i int32) string { return string(d.idBytes(i)) }

// index returns the index of device id.
func (d *devices) index(id string) (int32, bool) {
	if len(d.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(d.slots) - 1)
	for p := hash(id) & mask; ; p = (p + 1) & mask {
		v := d.slots[p]
		if v == 0 {
			return 0, false
		}
		if string(d.idBytes(v-1)) == id {
			return v - 1, true
		}
	}
}

// add appends device id unless the job already has it.
func (d *devices) add(id string) {
	if _, ok := d.index(id); ok {
		return
	}
	if 2*(len(d.ends)+1) > len(d.slots) {
		d.grow()
	}
	d.arena = append(d.arena, id...)
	d.ends = append(d.ends, uint32(len(d.arena)))
	d.st = append(d.st, 0)
	i := int32(len(d.ends) - 1)
	d.place(i, hash(id))
}

func (d *devices) place(i int32, h uint64) {
	mask := uint64(len(d.slots) - 1)
	p := h & mask
	for d.slots[p] != 0 {
		p = (p + 1) & mask
	}
	d.slots[p] = i + 1
}

// grow doubles the table and places every device again.
func (d *devices) grow() {
	d.slots = make([]int32, tableSize(len(d.ends)+1)*2)
	for i := range d.ends {
		d.place(int32(i), hash(string(d.idBytes(int32(i)))))
	}
}

func (d *devices) setError(i int32, msg string) {
	if d.errs == nil {
		d.errs = make(map[int32]uint32)
		d.msgByID = make(map[string]uint32)
	}
	m, ok := d.msgByID[msg]
	if !ok {
		m = uint32(len(d.msgs))
		d.msgs = append(d.msgs, msg)
		d.msgByID[msg] = m
	}
	d.errs[i] = m
}

func (d *devices) device(i int32) Device {
	b := d.st[i]
	out := Device{Status: DevicePending, Dispatched: b&dispatchedBit != 0}
	switch b & resultMask {
	case succeededBits:
		out.Status = DeviceSucceeded
	case failedBits:
		out.Status = DeviceFailed
		if m, ok := d.errs[i]; ok {
			out.Error = d.msgs[m]
		}
	}
	return out
}
