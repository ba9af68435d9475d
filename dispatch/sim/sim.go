package sim

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fleetjobs/fleetjobs/dispatch"
)

// The device properties the simulated fleet reads.
const (
	// FailProperty holds a string: the device fails with that message.
	FailProperty = "simFail"
	// OfflineProperty holds true: the device never answers.
	OfflineProperty = "simOffline"
)

// Defaults of a Fleet.
const (
	DefaultMinDelay   = time.Millisecond
	DefaultMaxDelay   = 20 * time.Millisecond
	DefaultMaxPending = 1 << 21
)

// Properties looks up devices' properties, in one call per batch so that
// a read-model lookup can be one pipelined round trip.
type Properties interface {
	// Properties returns the properties of the device of each delivery of
	// ds, in order; nil for a device it does not know (which then just
	// succeeds). A lookup in a read model may use the deliveries'
	// Targeted position to tell a device it has not read yet from one
	// deleted.
	Properties(ctx context.Context, ds []dispatch.Delivery) ([]map[string]any, error)
}

// PropertiesFunc adapts a function to Properties.
type PropertiesFunc func(ctx context.Context, ds []dispatch.Delivery) ([]map[string]any, error)

// Properties calls f.
func (f PropertiesFunc) Properties(ctx context.Context, ds []dispatch.Delivery) ([]map[string]any, error) {
	return f(ctx, ds)
}

// Config tunes a Fleet. The zero Config is usable.
type Config struct {
	// MinDelay and MaxDelay bound a device's time to answer (uniform).
	MinDelay, MaxDelay time.Duration
	// MaxPending bounds the answers waiting for their moment.
	MaxPending int
	// Rand draws the delays; default a randomly seeded PCG. The Fleet
	// serialises its use.
	Rand *rand.Rand
	// Now is the clock of due times; default time.Now. It must advance
	// like the real clock: the Fleet waits with real timers.
	Now func() time.Time
}

// Fleet is the simulated fleet. Send may be called from any goroutine;
// Run must be running for answers to come out.
type Fleet struct {
	props   Properties
	answers chan<- []dispatch.Answer
	cfg     Config

	mu      sync.Mutex
	pending answerHeap
	wake    chan struct{} // an earlier answer was added
	room    chan struct{} // closed when answers were taken out; replaced then
}

// New returns a Fleet answering on answers (which the dispatcher reads).
func New(props Properties, answers chan<- []dispatch.Answer, cfg Config) *Fleet {
	if cfg.MinDelay <= 0 {
		cfg.MinDelay = DefaultMinDelay
	}
	if cfg.MaxDelay < cfg.MinDelay {
		cfg.MaxDelay = max(DefaultMaxDelay, cfg.MinDelay)
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Fleet{props: props, answers: answers, cfg: cfg, wake: make(chan struct{}, 1), room: make(chan struct{})}
}

var _ dispatch.Transport = (*Fleet)(nil)

// Send schedules each delivery's answer, after the device's properties are
// looked up. It waits while MaxPending answers are waiting.
func (f *Fleet) Send(ctx context.Context, ds []dispatch.Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	props, err := f.props.Properties(ctx, ds)
	if err != nil {
		return fmt.Errorf("sim: look up %d devices' properties: %w", len(ds), err)
	}
	if len(props) != len(ds) {
		return fmt.Errorf("sim: properties lookup gave %d answers for %d devices", len(props), len(ds))
	}
	for i := 0; i < len(ds); {
		f.mu.Lock()
		free := f.cfg.MaxPending - len(f.pending)
		if free <= 0 {
			room := f.room
			f.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-room:
			}
			continue
		}
		now := f.cfg.Now().UnixNano()
		wasFirst := int64(-1)
		if len(f.pending) > 0 {
			wasFirst = f.pending[0].due
		}
		for ; i < len(ds) && free > 0; i++ {
			a, ok := answerOf(ds[i], props[i])
			if !ok {
				continue // offline: never answers
			}
			span := int64(f.cfg.MaxDelay - f.cfg.MinDelay)
			delay := int64(f.cfg.MinDelay)
			if span > 0 {
				delay += f.cfg.Rand.Int64N(span + 1)
			}
			heap.Push(&f.pending, scheduled{due: now + delay, answer: a})
			free--
		}
		earlier := len(f.pending) > 0 && (wasFirst < 0 || f.pending[0].due < wasFirst)
		f.mu.Unlock()
		if earlier {
			select {
			case f.wake <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// answerOf is what device d answers given its properties; ok is false for
// an offline device.
func answerOf(d dispatch.Delivery, props map[string]any) (dispatch.Answer, bool) {
	a := dispatch.Answer{JobID: d.JobID, DeviceID: d.DeviceID, Succeeded: true}
	switch v := props[OfflineProperty].(type) {
	case bool:
		if v {
			return a, false
		}
	case string:
		if v == "true" {
			return a, false
		}
	}
	if msg, ok := props[FailProperty].(string); ok && msg != "" {
		a.Succeeded, a.Error = false, msg
	}
	return a, true
}

// Run hands due answers to the answers channel, in batches, until ctx ends
// (then it returns nil). Answers not yet due when it ends are lost, as a
// real fleet's would be when the service stops: the dispatcher resends.
func (f *Fleet) Run(ctx context.Context) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		f.mu.Lock()
		now := f.cfg.Now().UnixNano()
		var due []dispatch.Answer
		for len(f.pending) > 0 && f.pending[0].due <= now {
			due = append(due, heap.Pop(&f.pending).(scheduled).answer)
		}
		wait := time.Hour
		if len(f.pending) > 0 {
			wait = time.Duration(f.pending[0].due - now)
		}
		if len(due) > 0 {
			close(f.room)
			f.room = make(chan struct{})
		}
		f.mu.Unlock()
		if len(due) > 0 {
			select {
			case f.answers <- due:
			case <-ctx.Done():
				return nil
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-f.wake:
		case <-timer.C:
		}
	}
}

// Pending returns how many answers are waiting for their moment.
func (f *Fleet) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}

type scheduled struct {
	due    int64
	answer dispatch.Answer
}

type answerHeap []scheduled

func (h answerHeap) Len() int           { return len(h) }
func (h answerHeap) Less(a, b int) bool { return h[a].due < h[b].due }
func (h answerHeap) Swap(a, b int)      { h[a], h[b] = h[b], h[a] }
func (h *answerHeap) Push(x any)        { *h = append(*h, x.(scheduled)) }
func (h *answerHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = scheduled{}
	*h = old[:len(old)-1]
	return s
}
