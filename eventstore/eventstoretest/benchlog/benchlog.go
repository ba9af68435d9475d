package benchlog

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetjobs/fleetjobs/domain/device"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	"github.com/fleetjobs/fleetjobs/eventstore/server/store"
)

// version names the layout of the generated log in Cached's directory
// names: change it whenever the generator changes what it writes.
const version = 1

// Shape of the log.
const (
	templates       = 5
	setsPerTemplate = 10
	perTargeted     = job.MaxDevicesPerEvent // devices per JobDevicesTargeted
	dispatchBatch   = 1000                   // devices per JobDevicesDispatched, and results per append
	concurrentJobs  = 8
	deviceWriters   = 64
)

// jobSizes is the cycle of job sizes (devices).
var jobSizes = []int{2_000, 10_000, 25_000, 50_000, 100_000, 150_000}

// Stats counts what a log holds, by event type.
type Stats struct {
	Events  int            `json:"events"`
	Devices int            `json:"devices"`
	Jobs    int            `json:"jobs"`
	ByType  map[string]int `json:"byType"`
}

// Cached returns a data directory holding a generated log of about events
// events (exactly events when events >= 10,000), and its Stats: the one
// under os.TempDir() from an earlier run, else a new one. Open it with one
// store or server at a time (Pebble locks the directory): run the
// benchmarks of several packages with -p 1.
func Cached(ctx context.Context, events int) (string, Stats, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("fleetjobs-benchlog-v%d-%d", version, events))
	if st, err := readStats(dir); err == nil {
		return dir, st, nil
	}
	tmp := fmt.Sprintf("%s.partial-%d", dir, os.Getpid())
	if err := os.RemoveAll(tmp); err != nil {
		return "", Stats{}, err
	}
	st, err := Write(ctx, tmp, events)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", Stats{}, err
	}
	b, err := json.Marshal(st)
	if err == nil {
		err = os.WriteFile(filepath.Join(tmp, statsFile), b, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, dir)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		if st2, err2 := readStats(dir); err2 == nil {
			return dir, st2, nil // another process finished first
		}
		return "", Stats{}, fmt.Errorf("benchlog: keep %s: %w", dir, err)
	}
	return dir, st, nil
}

const statsFile = "benchlog.json"

func readStats(dir string) (Stats, error) {
	b, err := os.ReadFile(filepath.Join(dir, statsFile))
	if err != nil {
		return Stats{}, err
	}
	var st Stats
	err = json.Unmarshal(b, &st)
	return st, err
}

// Write generates a log of about events events into the store data
// directory dir (created; it must hold no log yet) and returns its Stats.
func Write(ctx context.Context, dir string, events int) (Stats, error) {
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		return Stats{}, fmt.Errorf("benchlog: %w", err)
	}
	g := &gen{s: s, rng: rand.New(rand.NewPCG(version, uint64(events))), byType: map[string]int{}}
	g.idSeed = g.rng.Uint64() | 1
	g.at = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	st, err := g.run(ctx, events)
	if cerr := s.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return Stats{}, fmt.Errorf("benchlog: %w", err)
	}
	return st, nil
}

// gen writes one log.
type gen struct {
	s      *store.Store
	rng    *rand.Rand
	idSeed uint64
	ids    atomic.Uint64 // event IDs: idSeed, then a counter
	ticks  atomic.Int64  // occurredAt: at + ticks milliseconds
	at     time.Time

	mu     sync.Mutex
	byType map[string]int
}

// plan sizes the log: devices, their property changes, and the jobs.
type plan struct {
	devices, changes int
	jobs             []jobPlan
}

type jobPlan struct {
	n       int  // devices
	stopped bool // stopped after half its devices answered
	failing bool // some devices fail
}

// cost is the number of events a job writes.
func (j jobPlan) cost() int {
	t := (j.n + perTargeted - 1) / perTargeted
	rounds := (j.n + dispatchBatch - 1) / dispatchBatch
	results := j.n
	if j.stopped {
		rounds = (rounds + 1) / 2
		results = min(j.n, rounds*dispatchBatch)
	}
	return 1 + t + 1 + rounds + results + 1
}

func makePlan(events int) plan {
	p := plan{devices: max(events*3/100, 1000)}
	p.changes = p.devices
	budget := events - templates*(1+setsPerTemplate) - p.devices - p.changes
	for i := 0; budget > 0; i++ {
		j := jobPlan{n: min(jobSizes[i%len(jobSizes)], p.devices), stopped: i%8 == 7, failing: i%3 != 0}
		for j.n > 1 && j.cost() > budget {
			j.n = j.n * 9 / 10
		}
		if j.cost() > budget {
			break
		}
		budget -= j.cost()
		p.jobs = append(p.jobs, j)
	}
	p.changes += max(budget, 0) // what no job fits in: more property changes
	return p
}

func (g *gen) run(ctx context.Context, events int) (Stats, error) {
	p := makePlan(events)
	if err := g.catalog(ctx); err != nil {
		return Stats{}, err
	}
	if err := g.devices(ctx, p); err != nil {
		return Stats{}, err
	}
	if err := g.allJobs(ctx, p); err != nil {
		return Stats{}, err
	}
	st := Stats{Devices: p.devices, Jobs: len(p.jobs), ByType: g.byType}
	for _, n := range g.byType {
		st.Events += n
	}
	return st, nil
}

// event is one event to append, its data already JSON.
type event struct {
	typ  string
	data []byte
}

// appendEvents appends evs to stream, each with fleetjobs metadata.
func (g *gen) appendEvents(ctx context.Context, stream, actor string, evs []event) error {
	props := make([]store.Proposed, len(evs))
	md := eventstore.Metadata{Actor: actor, CommandID: "cmd-" + stream, CorrelationID: "corr-" + stream, CausationID: "cmd-" + stream}
	counts := map[string]int{}
	for i, e := range evs {
		n := g.ids.Add(1)
		var id [16]byte
		binary.BigEndian.PutUint64(id[:8], g.idSeed)
		binary.BigEndian.PutUint64(id[8:], n)
		md.OccurredAt = g.at.Add(time.Duration(g.ticks.Add(1)) * time.Millisecond)
		props[i] = store.Proposed{ID: id, Type: e.typ, JSON: true, Data: e.data, Metadata: md.AppendJSON(nil)}
		counts[e.typ]++
	}
	if _, err := g.s.Append(ctx, stream, store.Expected{Kind: store.ExpectAny}, props); err != nil {
		return fmt.Errorf("append %d events to %s: %w", len(evs), stream, err)
	}
	g.mu.Lock()
	for t, n := range counts {
		g.byType[t] += n
	}
	g.mu.Unlock()
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the generator's own values always marshal
	}
	return b
}

var cities = []string{"Seattle", "Portland", "Denver", "Austin", "Chicago", "Boston"}

func templateID(i int) string { return fmt.Sprintf("tmpl-%d", i) }
func setID(i int) string      { return fmt.Sprintf("set-%03d", i) }
func deviceID(i int) string   { return fmt.Sprintf("dev-%07d", i) }

// catalog writes the templates and the device sets.
func (g *gen) catalog(ctx context.Context) error {
	caps := func(names ...string) []device.Capability {
		var cs []device.Capability
		for _, n := range names {
			cs = append(cs, device.Capability{Name: n, Schema: device.SchemaString})
		}
		return cs
	}
	for t := range templates {
		id := templateID(t)
		ev := device.TemplatePublished{TemplateID: id, Name: "Template " + id,
			Settings:   []device.Capability{{Name: "fanSpeed", Schema: device.SchemaNumber}, {Name: "targetTemperature", Schema: device.SchemaNumber}},
			Properties: append(caps("city", "model", "firmware"), device.Capability{Name: "temp", Schema: device.SchemaNumber}),
			Commands:   caps("reboot")}
		if err := g.appendEvents(ctx, eventstore.TemplateStream(id), "admin", []event{{eventstore.DeviceTemplatePublished, mustJSON(ev)}}); err != nil {
			return err
		}
	}
	for s := range templates * setsPerTemplate {
		id := setID(s)
		cond := device.Condition{Property: "city", Op: device.OpEq, Value: cities[s%len(cities)]}
		if s%2 == 1 {
			cond = device.Condition{Property: "temp", Op: device.OpLt, Value: float64(s % 10)}
		}
		ev := device.SetDefined{SetID: id, Name: "Set " + id, TemplateID: templateID(s % templates), Conditions: []device.Condition{cond}}
		if err := g.appendEvents(ctx, eventstore.DeviceSetStream(id), "admin", []event{{eventstore.DeviceSetDefined, mustJSON(ev)}}); err != nil {
			return err
		}
	}
	return nil
}

// devices registers the devices, then changes their properties, one
// single-event append each from many goroutines (as the import does).
func (g *gen) devices(ctx context.Context, p plan) error {
	register := func(i int) error {
		id := deviceID(i)
		ev := device.Registered{DeviceID: id, Name: "Fridge " + id, TemplateID: templateID(i % templates),
			Properties: map[string]any{"city": cities[i%len(cities)], "model": "VX-" + strconv.Itoa(i%7), "firmware": "1.0." + strconv.Itoa(i%4), "temp": float64(i % 12)}}
		return g.appendEvents(ctx, eventstore.DeviceStream(id), "importer", []event{{eventstore.DeviceRegistered, mustJSON(ev)}})
	}
	change := func(i int) error {
		d := i % p.devices
		id := deviceID(d)
		ev := device.PropertiesChanged{DeviceID: id,
			Properties: map[string]any{"city": cities[(d+i/p.devices+1)%len(cities)], "model": "VX-" + strconv.Itoa(d%7), "firmware": "1.1." + strconv.Itoa(i%4), "temp": float64((d * 7) % 12)}}
		return g.appendEvents(ctx, eventstore.DeviceStream(id), "gateway", []event{{eventstore.DevicePropertiesChanged, mustJSON(ev)}})
	}
	if err := parallel(ctx, p.devices, deviceWriters, register); err != nil {
		return err
	}
	return parallel(ctx, p.changes, deviceWriters, change)
}

// parallel calls fn(0..n-1) from workers goroutines.
func parallel(ctx context.Context, n, workers int, fn func(int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					errs[w] = err
					next.Store(int64(n)) // the others stop
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

// allJobs runs the jobs, concurrentJobs at a time, so that their events
// interleave in $all as a busy fleet's do.
func (g *gen) allJobs(ctx context.Context, p plan) error {
	offsets := make([]int, len(p.jobs))
	for i := range offsets {
		offsets[i] = g.rng.IntN(p.devices)
	}
	return parallel(ctx, len(p.jobs), concurrentJobs, func(i int) error {
		return g.job(ctx, i, p.jobs[i], offsets[i], p.devices)
	})
}

// job writes one job's history: its devices are the n devices from
// deviceID(first) on (wrapping around).
func (g *gen) job(ctx context.Context, idx int, j jobPlan, first, devices int) error {
	id := fmt.Sprintf("bench-%04d", idx)
	stream := eventstore.JobStream(id)
	dev := func(k int) string { return deviceID((first + k) % devices) }
	set := setID(idx % (templates * setsPerTemplate))
	created := job.Created{JobID: id, Name: "Fan speed " + id, Description: "benchmark job", DeviceSetID: set, Type: job.TypeSetting,
		Operations: []job.Operation{{Name: "fanSpeed", Value: float64(1000 + idx)}}, DeviceCount: j.n,
		TimeoutSeconds: 60, BatchSize: dispatchBatch}
	evs := []event{{eventstore.JobCreated, mustJSON(created)}}
	for k := 0; k < j.n; k += perTargeted {
		t := job.DevicesTargeted{JobID: id}
		for d := k; d < min(k+perTargeted, j.n); d++ {
			t.Devices = append(t.Devices, job.TargetedDevice{DeviceID: dev(d), Name: "Fridge " + dev(d)})
		}
		evs = append(evs, event{eventstore.JobDevicesTargeted, mustJSON(t)})
		if len(evs) >= 16 {
			if err := g.appendEvents(ctx, stream, "operator", evs); err != nil {
				return err
			}
			evs = evs[:0]
		}
	}
	evs = append(evs, event{eventstore.JobStarted, mustJSON(job.Started{JobID: id})})
	if err := g.appendEvents(ctx, stream, "operator", evs); err != nil {
		return err
	}
	rounds := (j.n + dispatchBatch - 1) / dispatchBatch
	if j.stopped {
		rounds = (rounds + 1) / 2
	}
	succeeded, failed := 0, 0
	for r := range rounds {
		lo, hi := r*dispatchBatch, min((r+1)*dispatchBatch, j.n)
		d := job.DevicesDispatched{JobID: id}
		for k := lo; k < hi; k++ {
			d.DeviceIDs = append(d.DeviceIDs, dev(k))
		}
		evs = append(evs[:0], event{eventstore.JobDevicesDispatched, mustJSON(d)})
		for k := lo; k < hi; k++ {
			if j.failing && k%33 == 5 {
				failed++
				evs = append(evs, event{eventstore.DeviceOperationFailed, resultJSON(id, dev(k), "compressor fault")})
			} else {
				succeeded++
				evs = append(evs, event{eventstore.DeviceOperationSucceeded, resultJSON(id, dev(k), "")})
			}
		}
		if err := g.appendEvents(ctx, stream, "dispatcher", evs); err != nil {
			return err
		}
	}
	var end event
	switch {
	case j.stopped:
		end = event{eventstore.JobStopped, mustJSON(job.Stopped{JobID: id, Reason: "stopped by the operator"})}
	case failed > 0:
		end = event{eventstore.JobFailed, mustJSON(job.Failed{JobID: id, Reason: "some devices failed", Succeeded: succeeded, Failed: failed})}
	default:
		end = event{eventstore.JobCompleted, mustJSON(job.Completed{JobID: id, Succeeded: succeeded})}
	}
	return g.appendEvents(ctx, stream, "dispatcher", []event{end})
}

// resultJSON is a DeviceOperationSucceeded (errMsg empty) or
// DeviceOperationFailed, encoded by hand: there are millions.
func resultJSON(jobID, deviceID, errMsg string) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"jobId":"`...)
	b = append(b, jobID...)
	b = append(b, `","deviceId":"`...)
	b = append(b, deviceID...)
	if errMsg != "" {
		b = append(b, `","error":"`...)
		b = append(b, errMsg...)
	}
	return append(b, `"}`...)
}
