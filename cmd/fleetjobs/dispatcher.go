package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/commands"
	"github.com/fleetjobs/fleetjobs/dispatch"
	"github.com/fleetjobs/fleetjobs/dispatch/sim"
	"github.com/fleetjobs/fleetjobs/domain/job"
	"github.com/fleetjobs/fleetjobs/eventstore"
	fjhttp "github.com/fleetjobs/fleetjobs/http"
	"github.com/fleetjobs/fleetjobs/projections"
)

// This file wires the dispatcher (dispatch.Manager) with a device transport
// (the simulated fleet or MQTT: mqtt.go): the adapter that lets the Manager
// report outcomes through the command handler, its checkpoint in Redis, the
// simulated fleet's property lookup in the devices read model, and the
// supervisor that runs it, restarts it after a failure and reports its
// state to /readyz and /metrics.

// Device transports (FLEETJOBS_DEVICES).
const (
	devicesMQTT = "mqtt"
	devicesSim  = "sim"
	// devicesNone runs no dispatcher: the instance serves the API beside
	// one that dispatches (which starts the jobs: a result over HTTP is
	// refused until then); alone, jobs stay pending.
	devicesNone = "none"
)

// deviceTransport is a dispatch.Transport that must run (Run, until its
// context ends) to hand the devices' answers to the Manager.
type deviceTransport interface {
	dispatch.Transport
	Run(ctx context.Context) error
}

// deviceNotFound is the error a simulated device that the read models do not
// know (deleted after it was targeted) fails with.
const deviceNotFound = "device not found"

// dispatchRestartDelay is how long the supervisor waits before it runs the
// Manager again after Run failed (its checkpoint could not be loaded: Redis
// down at start, say).
const dispatchRestartDelay = 2 * time.Second

// outcomes is dispatch.Outcomes over the command handler: it converts the
// Manager's Meta and drops the Result (the Manager needs only whether the
// command was recorded or refused).
type outcomes struct{ h *commands.Handler }

var _ dispatch.Outcomes = outcomes{}

func dispatchMeta(m dispatch.Meta) commands.Meta {
	return commands.Meta{CommandID: m.CommandID, CorrelationID: m.CorrelationID, CausationID: m.CausationID, Actor: m.Actor}
}

func (o outcomes) StartJob(ctx context.Context, m dispatch.Meta, cmd job.Start) error {
	_, err := o.h.StartJob(ctx, dispatchMeta(m), cmd)
	return err
}

func (o outcomes) RecordDispatches(ctx context.Context, m dispatch.Meta, cmds []job.RecordDispatch) error {
	_, err := o.h.RecordDispatches(ctx, dispatchMeta(m), cmds)
	return err
}

func (o outcomes) RecordResults(ctx context.Context, m dispatch.Meta, jobID string, rs []job.DeviceResult) error {
	_, err := o.h.RecordResults(ctx, dispatchMeta(m), jobID, rs)
	return err
}

// dispatchCheckpointKey is the one Redis key, under the read models' key
// root, where the dispatcher keeps its low-water mark (dispatch.Checkpoints).
// It is not a projection key: a rebuild leaves it alone.
func dispatchCheckpointKey(root string) string { return root + ":dispatch:checkpoint" }

// redisCheckpoints is dispatch.Checkpoints in one Redis key. With the
// embedded Redis it is lost at every start, and the Manager then folds the
// job streams from the start of the log: correct, only slower.
type redisCheckpoints struct {
	rdb redis.UniversalClient
	key string
}

var _ dispatch.Checkpoints = (*redisCheckpoints)(nil)

func (c *redisCheckpoints) Load(ctx context.Context) (eventstore.Position, error) {
	v, err := c.rdb.Get(ctx, c.key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return eventstore.Position{}, nil
	case err != nil:
		return eventstore.Position{}, fmt.Errorf("read %s: %w", c.key, err)
	}
	p, err := eventstore.ParsePosition(v)
	if err != nil {
		return eventstore.Position{}, fmt.Errorf("%s holds %q: %w", c.key, v, err)
	}
	return p, nil
}

func (c *redisCheckpoints) Save(ctx context.Context, p eventstore.Position) error {
	if err := c.rdb.Set(ctx, c.key, p.String(), 0).Err(); err != nil {
		return fmt.Errorf("write %s: %w", c.key, err)
	}
	return nil
}

// deviceProperties is sim.Properties over the devices read model: one
// pipelined round trip per batch (after the active version's), whatever its
// size. A device the read model does not have (deleted since it was
// targeted) answers as failed with "device not found" rather than succeed,
// which is what the simulated fleet does with unknown devices; but only
// once the read models have applied the job's targeting (the delivery's
// Targeted position), before which every targeted device was registered.
// Until then a missing device is one the read model has not read yet: the
// embedded Redis starts empty, and after a restart the dispatcher resends
// while the projections rebuild. The lookup waits for them a little
// (readModelWait, and never past a delivery's deadline: a worker of the
// dispatcher waits with it); a device still not read then does not answer
// this delivery, as if offline for a moment, and the dispatcher's resend
// looks it up again, rather than answer wrongly.
//
// A device the read model has may also be one deleted since: a delete
// recorded just before this process started (by it before a restart, or
// by another instance) that its projections have not applied yet. So no
// lookup trusts the read models before they have caught up once since the
// start (FirstCaughtUp); until then every device waits, and does not
// answer if they are still behind.
type deviceProperties struct {
	rdb     redis.UniversalClient
	root    string
	applied readModelProgress
	// wait bounds the wait for the read models; 0 is readModelWait.
	wait time.Duration
}

// readModelWait is how long a lookup waits at most for the read models to
// read a job's devices: a worker of the dispatcher waits with it.
const readModelWait = 2 * time.Second

// readModelProgress is how far the read models are (projections.Runner).
type readModelProgress interface {
	// Position is the position up to which every projection has applied
	// the log.
	Position() eventstore.Position
	// WaitFor returns once they have applied it up to p, or ctx's error.
	WaitFor(ctx context.Context, p eventstore.Position) error
	// FirstCaughtUp is closed once they have applied everything recorded
	// before this process started.
	FirstCaughtUp() <-chan struct{}
}

var _ sim.Properties = (*deviceProperties)(nil)

func (p *deviceProperties) Properties(ctx context.Context, ds []dispatch.Delivery) ([]map[string]any, error) {
	first := p.applied.FirstCaughtUp()
	early := !closed(first) // a device the read models have may be deleted since
	// The applied position is read before the lookup: the lookup sees at
	// least what it says.
	applied := p.applied.Position()
	out, known, err := p.lookup(ctx, ds)
	if err != nil {
		return nil, err
	}
	var (
		behind   []int // deliveries whose device may not be read yet
		need     eventstore.Position
		earliest time.Time
	)
	for i := range out {
		if !early && (known[i] || ds[i].Targeted.Compare(applied) <= 0) {
			continue
		}
		behind = append(behind, i)
		if ds[i].Targeted.Compare(need) > 0 {
			need = ds[i].Targeted
		}
		if !ds[i].Deadline.IsZero() && (earliest.IsZero() || ds[i].Deadline.Before(earliest)) {
			earliest = ds[i].Deadline
		}
	}
	var notYet map[int]bool // still not read after the wait
	if len(behind) > 0 {
		wait := p.wait
		if wait <= 0 {
			wait = readModelWait
		}
		if !earliest.IsZero() {
			wait = min(wait, time.Until(earliest))
		}
		wctx, cancel := context.WithTimeout(ctx, max(wait, 0))
		var werr error
		if early {
			select {
			case <-first:
			case <-wctx.Done():
				werr = wctx.Err()
			}
		}
		if werr == nil {
			werr = p.applied.WaitFor(wctx, need)
		}
		cancel()
		switch {
		case werr == nil:
			again := make([]dispatch.Delivery, len(behind))
			for k, i := range behind {
				again[k] = ds[i]
			}
			found, knownNow, err := p.lookup(ctx, again)
			if err != nil {
				return nil, err
			}
			for k, i := range behind {
				out[i], known[i] = found[k], knownNow[k]
			}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		default:
			notYet = make(map[int]bool, len(behind))
			for _, i := range behind {
				notYet[i] = true
			}
		}
	}
	for i := range out {
		switch {
		case notYet[i]: // known or not, the read models may not be current
			out[i] = map[string]any{sim.OfflineProperty: true}
		case known[i]:
		default:
			out[i] = map[string]any{sim.FailProperty: deviceNotFound}
		}
	}
	return out, nil
}

// lookup returns the simulated fleet's properties of each delivery's
// device, and whether the read model has the device.
func (p *deviceProperties) lookup(ctx context.Context, ds []dispatch.Delivery) (props []map[string]any, known []bool, _ error) {
	version, err := p.rdb.Get(ctx, projections.ActiveKey(p.root, projections.DevicesProjection)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		version = projections.DefaultVersion
	case err != nil:
		return nil, nil, fmt.Errorf("active devices projection: %w", err)
	}
	prefix := projections.Prefix(p.root, projections.DevicesProjection, version)
	// A pipeline rather than MGET: with Redis Cluster the keys of a batch
	// may live on different slots, and go-redis splits a pipeline by slot.
	pipe := p.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(ds))
	for i, d := range ds {
		cmds[i] = pipe.Get(ctx, prefix+projections.DeviceKey(d.DeviceID))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("look up %d devices: %w", len(ds), err)
	}
	props, known = make([]map[string]any, len(ds)), make([]bool, len(ds))
	for i, cmd := range cmds {
		data, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("look up device %s: %w", ds[i].DeviceID, err)
		}
		// Only the two properties the simulated fleet reads are decoded:
		// a device's whole read model per delivery is garbage the
		// collector pays for at a million devices.
		var d simDeviceModel
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, nil, fmt.Errorf("decode device %s: %w", ds[i].DeviceID, err)
		}
		props[i], known[i] = d.Properties.props(), true
	}
	return props, known, nil
}

// simDeviceModel is the part of a device's read model (projections.Device)
// the simulated fleet reads: its properties sim.FailProperty and
// sim.OfflineProperty (json tags must be literals; TestSimFleetRunsAJob
// fails if they drift).
type simDeviceModel struct {
	Properties simProperties `json:"properties"`
}

type simProperties struct {
	Fail    any `json:"simFail"`
	Offline any `json:"simOffline"`
}

// props returns the properties as the fleet reads them: an empty (nil) map
// for a device with neither, which the fleet only reads.
func (p simProperties) props() map[string]any {
	if p.Fail == nil && p.Offline == nil {
		return nil
	}
	out := make(map[string]any, 2)
	if p.Fail != nil {
		out[sim.FailProperty] = p.Fail
	}
	if p.Offline != nil {
		out[sim.OfflineProperty] = p.Offline
	}
	return out
}

// dispatcher runs a dispatch.Manager and its device transport, beside the
// projections runner. Run may be called only once per Manager, so after a
// failure (its checkpoint could not be loaded) the supervisor builds a new
// one; the counters of the Managers it replaced are kept, so /metrics
// counters never go back.
type dispatcher struct {
	cfg       dispatch.Config // Transport and Answers filled in by newDispatcher
	transport deviceTransport
	lease     *lease // who dispatches, among instances; nil: this one, always
	logger    *zap.Logger

	mu      sync.Mutex
	current *dispatch.Manager
	base    dispatch.Stats // counters of the Managers replaced
	running bool           // a Manager is running
	standby bool           // another instance dispatches; this one relays answers
	// asked: Redis has answered a try to take the lease; leaseFailing: the
	// last try got no answer (supervise's goroutine only).
	asked, leaseFailing bool
	err                 error // why the last Manager stopped, until the next one runs

	stop context.CancelFunc
	done chan struct{}
}

// newDispatcher checks the Manager's configuration (a mistake there is a
// start-up error, not a retry loop) over transport, whose answers arrive on
// answers.
func newDispatcher(cfg dispatch.Config, transport deviceTransport, answers chan []dispatch.Answer, l *lease) (*dispatcher, error) {
	d := &dispatcher{transport: transport, lease: l, logger: cfg.Logger}
	cfg.Transport, cfg.Answers = transport, answers
	d.cfg = cfg
	m, err := dispatch.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	d.current = m
	return d, nil
}

// start runs the transport and the Manager in the background until close.
func (d *dispatcher) start() {
	// Ready from the start: standing by until the first look at the lease.
	d.mu.Lock()
	d.standby = d.lease != nil
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	d.stop, d.done = cancel, make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.transport.Run(ctx) })
	wg.Go(func() { d.supervise(ctx) })
	go func() { wg.Wait(); close(d.done) }()
}

// supervise runs the current Manager while this instance holds the
// dispatch lease (relaying answers while another instance does), and after
// Run fails, or the lease is lost, a new Manager, until ctx ends.
func (d *dispatcher) supervise(ctx context.Context) {
	for {
		d.mu.Lock()
		m := d.current
		d.mu.Unlock()
		if !d.awaitLease(ctx, m) {
			return
		}
		d.mu.Lock()
		d.running, d.standby, d.err = true, false, nil
		d.mu.Unlock()

		runCtx, cancel := context.WithCancel(ctx)
		lost := make(chan struct{})
		var kept sync.WaitGroup
		kept.Go(func() { d.keepLease(runCtx, cancel, lost) })
		err := m.Run(runCtx)
		cancel()
		kept.Wait()

		d.mu.Lock()
		d.running, d.err = false, err
		d.mu.Unlock()
		if ctx.Err() != nil {
			d.releaseLease()
			return
		}
		select {
		case <-lost:
			d.mu.Lock()
			d.standby, d.err = true, nil
			d.mu.Unlock()
		default:
			if err == nil {
				err = errors.New("stopped on its own")
				d.mu.Lock()
				d.err = err
				d.mu.Unlock()
			}
			// Another instance may dispatch meanwhile.
			d.releaseLease()
			d.logger.Error("dispatcher stopped; restarting it", zap.Error(err), zap.Duration("after", dispatchRestartDelay))
			t := time.NewTimer(dispatchRestartDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		next, err := dispatch.New(d.cfg)
		if err != nil { // the configuration was accepted once: cannot happen
			d.mu.Lock()
			d.err = err
			d.mu.Unlock()
			return
		}
		d.mu.Lock()
		d.base = addStats(d.base, d.current.Stats())
		d.current = next
		d.mu.Unlock()
	}
}

// awaitLease returns true once this instance holds the dispatch lease, false
// if ctx ends first. Until then m relays the answers that reach this
// instance (MQTT answers come through a shared subscription, to any
// instance), and /readyz reports the dispatcher on standby, which is ready.
// Once it has the lease it stops the relay (which finishes recording what
// it took: that may take long with the event store down) and takes the
// lease again, so that it starts dispatching on a lease that is still its.
// It says so once each time it takes the lease: at start, after another
// instance had it (or its expiry), after a restart of the Manager.
func (d *dispatcher) awaitLease(ctx context.Context, m *dispatch.Manager) bool {
	if d.lease == nil {
		return true
	}
	for {
		if d.takeLease(ctx) {
			d.logger.Info("dispatcher: this instance took the dispatch lease; dispatching", zap.String("holder", d.lease.holder))
			return true
		}
		d.mu.Lock()
		d.standby, d.err = true, nil
		d.mu.Unlock()
		if !d.relayUntilLease(ctx, m) {
			return false
		}
	}
}

// takeLease tries to take the lease, and says once per outage that Redis
// does not answer. Until Redis has answered a try, it also takes back the
// lease of this instance's previous process (see leaseHolder): a restart
// during a Redis outage still takes it back.
func (d *dispatcher) takeLease(ctx context.Context) bool {
	ok, err := d.lease.take(ctx, !d.asked)
	switch {
	case err == nil:
		d.asked, d.leaseFailing = true, false
	case ctx.Err() == nil && !d.leaseFailing:
		d.leaseFailing = true
		d.logger.Warn("dispatcher: cannot read the dispatch lease in Redis; standing by until it can", zap.Error(err))
	}
	return ok
}

// relayUntilLease has m relay answers until this instance takes the lease
// (true; the relay has stopped) or ctx ends (false). It tries every third
// of the lease's time.
func (d *dispatcher) relayUntilLease(ctx context.Context, m *dispatch.Manager) bool {
	stop := make(chan struct{})
	var relaying sync.WaitGroup
	relaying.Go(func() { m.Relay(ctx, stop) })
	defer func() {
		close(stop)
		relaying.Wait()
	}()
	for {
		t := time.NewTimer(d.lease.ttl / 3)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		if d.takeLease(ctx) {
			return true
		}
	}
}

// keepLease renews the lease every third of its time until ctx ends. When
// another instance holds it (this one paused past its expiry), it closes
// lost and cancels the Manager's run. A renewal that fails (Redis
// unreachable) keeps dispatching: two instances dispatching for a while
// cost duplicate deliveries, which devices drop, while none dispatching
// would stall every job.
func (d *dispatcher) keepLease(ctx context.Context, cancel context.CancelFunc, lost chan<- struct{}) {
	if d.lease == nil {
		return
	}
	t := time.NewTicker(d.lease.ttl / 3)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := d.lease.take(ctx, false)
		switch {
		case err != nil:
			if ctx.Err() == nil && !failing {
				d.logger.Warn("dispatcher: cannot renew the dispatch lease; dispatching on", zap.Error(err))
			}
			failing = true
			continue
		case !ok:
			d.logger.Warn("dispatcher: another instance took the dispatch lease; standing by")
			close(lost)
			cancel()
			return
		}
		failing = false
	}
}

// releaseLease gives the lease up, so that another instance takes over at
// once.
func (d *dispatcher) releaseLease() {
	if d.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.lease.release(ctx); err != nil {
		d.logger.Warn("dispatcher: could not release the dispatch lease; another instance takes over when it expires", zap.Error(err), zap.Duration("expiry", d.lease.ttl))
	}
}

func addStats(a, b dispatch.Stats) dispatch.Stats {
	return dispatch.Stats{
		Dispatched: a.Dispatched + b.Dispatched, Resent: a.Resent + b.Resent, Answers: a.Answers + b.Answers,
		TimedOut: a.TimedOut + b.TimedOut, Dropped: a.Dropped + b.Dropped,
		Undecodable: a.Undecodable + b.Undecodable, CheckpointFailures: a.CheckpointFailures + b.CheckpointFailures,
	}
}

// stats are the counters since the process started and the jobs the
// running Manager tracks.
func (d *dispatcher) stats() dispatch.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.current.Stats()
	s := addStats(d.base, cur)
	s.Jobs = cur.Jobs
	return s
}

// ready is the /readyz check: nil while a Manager runs.
func (d *dispatcher) ready(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.err != nil:
		return fmt.Errorf("not running, restarting: %w", d.err)
	case !d.running && !d.standby:
		return errors.New("not running")
	}
	return nil
}

// close stops the Manager (its batch in flight is recorded or abandoned:
// the next start resends what has no result) and the transport's Run, and
// waits for them.
func (d *dispatcher) close() {
	if d.stop == nil {
		return
	}
	d.stop()
	<-d.done
}

// registerDispatchMetrics exposes the dispatcher's counters on /metrics, so
// that a dispatcher that stalls or fails shows in monitoring, not only in
// the log.
func registerDispatchMetrics(m *fjhttp.Metrics, d *dispatcher) error {
	running := func() float64 {
		if d.ready(context.Background()) == nil {
			return 1
		}
		return 0
	}
	leader := func() float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.running {
			return 1
		}
		return 0
	}
	return errors.Join(
		m.GaugeFunc("fleetjobs_dispatch_running",
			"1 while the dispatcher dispatches or stands by (another instance dispatches), 0 while it is restarting after a failure.", running),
		m.GaugeFunc("fleetjobs_dispatch_leader",
			"1 while this instance dispatches (holds the dispatch lease), 0 while it stands by.", leader),
		m.GaugeFunc("fleetjobs_dispatch_jobs",
			"Jobs the dispatcher tracks now (running, or with devices waiting for an answer).",
			func() float64 { return float64(d.stats().Jobs) }),
		m.CounterFunc("fleetjobs_dispatch_devices_dispatched_total",
			"Devices recorded as dispatched and sent a job (resends included).",
			func() float64 { return float64(d.stats().Dispatched) }),
		m.CounterFunc("fleetjobs_dispatch_deliveries_resent_total",
			"Deliveries sent again because their device had not answered yet (included in devices_dispatched).",
			func() float64 { return float64(d.stats().Resent) }),
		m.CounterFunc("fleetjobs_dispatch_answers_total",
			"Device answers received and recorded.",
			func() float64 { return float64(d.stats().Answers) }),
		m.CounterFunc("fleetjobs_dispatch_timed_out_total",
			"Devices that did not answer in time, handed on to be recorded as failed (a job that has ended by then records none of them).",
			func() float64 { return float64(d.stats().TimedOut) }),
		m.CounterFunc("fleetjobs_dispatch_answers_dropped_total",
			"Answers dropped: duplicates, or for devices not in their job.",
			func() float64 { return float64(d.stats().Dropped) }),
		m.CounterFunc("fleetjobs_dispatch_undecodable_events_total",
			"Job events the dispatcher skipped because it could not decode them (their jobs are not dispatched).",
			func() float64 { return float64(d.stats().Undecodable) }),
		m.CounterFunc("fleetjobs_dispatch_checkpoint_failures_total",
			"Failed saves of the dispatcher's checkpoint (the next start reads more of the log).",
			func() float64 { return float64(d.stats().CheckpointFailures) }),
	)
}

// registerSimMetrics exposes the simulated fleet's gauge on /metrics.
func registerSimMetrics(m *fjhttp.Metrics, fleet *sim.Fleet) error {
	return m.GaugeFunc("fleetjobs_sim_pending_answers",
		"Answers of the simulated fleet waiting for their moment.",
		func() float64 { return float64(fleet.Pending()) })
}

// closed reports whether c is closed.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
