package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"

	"github.com/fleetjobs/fleetjobs/dispatch"
)

// Handler applies a job on a device and says what it answers: nil for
// succeeded, an error for failed (its message is the answer's error), or
// ErrNoAnswer to stay silent, as a device that lost power would (the
// dispatcher times it out).
type Handler func(ctx context.Context, job dispatch.Delivery) error

// ErrNoAnswer, returned by a Handler, sends no answer.
var ErrNoAnswer = errors.New("mqtt agent: no answer")

// ErrRefused is the error of ConnectAgent when the broker refuses the
// device's credentials (a wrong key, a device it does not know or a deleted
// one), of an Agent that it refuses on a reconnection (Agent.Err), and of
// Dial when it refuses the service's: trying again would not help.
var ErrRefused = errors.New("the broker refused the credentials")

// refusedCodes are the CONNACK reason codes that mean the credentials (or
// the client ID) are refused: 0x85 client identifier not valid, 0x86 bad
// user name or password, 0x87 not authorized.
func refused(err error) (*autopaho.ConnackError, bool) {
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) && ce.ReasonCode >= 0x85 && ce.ReasonCode <= 0x87 {
		return ce, true
	}
	return nil, false
}

// DefaultRemember is how many job IDs an Agent remembers to drop duplicates.
const DefaultRemember = 1024

// AgentConfig is what an Agent needs. URL, DeviceID and Handler are required.
type AgentConfig struct {
	URL      string
	DeviceID string
	// Key is the device key (the password); empty for an anonymous broker.
	Key     string
	Handler Handler
	// SessionExpiry keeps the device's session (and the jobs queued for it)
	// on the broker while it is briefly offline; 0 ends it on disconnect.
	SessionExpiry time.Duration
	// Remember is how many applied job IDs it keeps; default DefaultRemember.
	Remember int
	// MaxReconnectDelay caps the pause between reconnection attempts
	// (exponential backoff from 100 ms); default 10 s, at least 200 ms.
	MaxReconnectDelay time.Duration
	Logger            *zap.Logger
}

// Agent is a device: it receives its jobs, applies each once through the
// Handler and answers. A duplicate delivery (the same job ID, its operation
// ID) is not applied again; the first answer is sent again, since the
// dispatcher may be waiting for it.
type Agent struct {
	cfg AgentConfig
	cm  *autopaho.ConnectionManager
	// ready is closed once cm is set: the client's callbacks can run
	// before NewConnection returns.
	ready chan struct{}
	// life ends at Close: it cancels the handlers and the answers waiting
	// for an acknowledgement, which a closed connection never brings.
	life context.Context
	end  context.CancelFunc
	log  *zap.Logger
	// done is closed, and err set, when the broker refuses the
	// credentials: the Agent stops trying (refuse).
	done    chan struct{}
	refused sync.Once
	err     error

	mu       sync.Mutex
	answered map[string]*applied
	order    []string // remembered job IDs, oldest first
	applied  int
	dups     int
	bad      int
	handlers sync.WaitGroup
}

// applied is what an Agent remembers of a job it applied.
type applied struct {
	done   bool           // the handler returned
	answer *ResultMessage // nil: the device stays silent
	owed   int            // duplicates received while the handler ran
}

// AgentStats are an Agent's counters.
type AgentStats struct {
	Applied    int // jobs handed to the Handler
	Duplicates int // deliveries of a job already applied
	Malformed  int // messages that were not a job
}

// ConnectAgent connects as cfg.DeviceID, subscribes to its jobs and returns
// once subscribed, or ctx ends, or the broker refuses the credentials (an
// error wrapping ErrRefused). It serves until Close, reconnecting as needed,
// unless the broker refuses the credentials on a reconnection (the device's
// key was replaced, or the device deleted, and the broker disconnected it):
// then the Agent ends (Done, Err) rather than try a refused key forever.
func ConnectAgent(ctx context.Context, cfg AgentConfig) (*Agent, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqtt agent: broker URL %q: want mqtt://host:port", cfg.URL)
	}
	if !validID(cfg.DeviceID) {
		return nil, fmt.Errorf("mqtt agent: device ID %q: use 1 to 128 letters, digits and - _ . : @", cfg.DeviceID)
	}
	if cfg.Handler == nil {
		return nil, fmt.Errorf("mqtt agent: no Handler")
	}
	if cfg.Remember <= 0 {
		cfg.Remember = DefaultRemember
	}
	if cfg.MaxReconnectDelay <= 0 {
		cfg.MaxReconnectDelay = 10 * time.Second
	}
	cfg.MaxReconnectDelay = max(cfg.MaxReconnectDelay, 200*time.Millisecond)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With(zap.String("deviceId", cfg.DeviceID)), answered: map[string]*applied{},
		ready: make(chan struct{}), done: make(chan struct{})}
	a.life, a.end = context.WithCancel(context.Background())
	subscribed := make(chan error, 1)
	filter := JobFilter(cfg.DeviceID)
	pc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: cfg.SessionExpiry == 0,
		SessionExpiryInterval:         uint32(cfg.SessionExpiry / time.Second),
		ConnectTimeout:                DefaultConnectTimeout,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, cfg.MaxReconnectDelay, min(time.Second, cfg.MaxReconnectDelay), 2),
		ConnectUsername:               cfg.DeviceID,
		ConnectPassword:               []byte(cfg.Key),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), DefaultConnectTimeout)
				defer cancel()
				_, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
				if err != nil {
					a.log.Warn("mqtt agent: subscribe failed", zap.String("filter", filter), zap.Error(err))
				}
				select {
				case subscribed <- err:
				default:
				}
			}()
		},
		OnConnectError: func(err error) {
			if ce, ok := refused(err); ok {
				a.log.Warn("mqtt agent: the broker refused the device's credentials (a wrong key, a replaced one, or a deleted device)",
					zap.Uint8("reason", ce.ReasonCode), zap.String("message", ce.Reason))
				a.refuse(fmt.Errorf("%w (CONNACK reason 0x%02x)", ErrRefused, ce.ReasonCode))
				return
			}
			a.log.Debug("mqtt agent: connection attempt failed", zap.Error(err))
		},
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.DeviceID, // the embedded broker requires it
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) { a.receive(pr.Packet); return true, nil },
			},
		},
	}
	cm, err := autopaho.NewConnection(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("mqtt agent %s: connect: %w", cfg.DeviceID, err)
	}
	a.cm = cm
	close(a.ready)
	select {
	case err = <-subscribed:
	case <-a.done:
		err = a.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = a.Close(context.Background())
		return nil, fmt.Errorf("mqtt agent %s: connect and subscribe: %w", cfg.DeviceID, err)
	}
	return a, nil
}

// refuse ends the Agent the first time the broker refuses its credentials:
// it records err, stops the connection manager, which would otherwise try
// the refused key again and again, and then closes done. It runs on the
// manager's goroutine (OnConnectError), which Disconnect waits for: the
// stop runs beside it, on a goroutine of its own (not in handlers, which
// Close may be waiting for already).
func (a *Agent) refuse(err error) {
	a.refused.Do(func() {
		a.err = err
		go func() {
			<-a.ready
			_ = a.cm.Disconnect(context.Background())
			close(a.done)
		}()
	})
}

// Done is closed when the Agent has ended on its own: the broker refused
// its credentials on a reconnection, and it has stopped trying. Err says
// why; Close must still be called.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is why the Agent ended on its own (an error wrapping ErrRefused),
// nil until Done is closed.
func (a *Agent) Err() error {
	select {
	case <-a.done:
		return a.err
	default:
		return nil
	}
}

// receive handles one job message. Applying and answering happen on their
// own goroutine: the client's receive path must not wait for an
// acknowledgement that only it can read.
func (a *Agent) receive(p *paho.Publish) {
	deviceID, jobID, ok := parseJobTopic(p.Topic)
	var m JobMessage
	if ok && deviceID == a.cfg.DeviceID {
		ok = json.Unmarshal(p.Payload, &m) == nil && m.JobID == jobID
	}
	a.mu.Lock()
	if !ok {
		a.bad++
		a.mu.Unlock()
		a.log.Debug("mqtt agent: not a job for this device, ignored", zap.String("topic", p.Topic))
		return
	}
	if prev, seen := a.answered[jobID]; seen {
		a.dups++
		if !prev.done {
			prev.owed++ // answered when the handler returns
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		if prev.answer != nil {
			res := *prev.answer
			a.handlers.Go(func() { a.publish(jobID, res, 1) })
		}
		return
	}
	state := &applied{}
	a.answered[jobID] = state
	a.order = append(a.order, jobID)
	if len(a.order) > a.cfg.Remember {
		delete(a.answered, a.order[0])
		a.order = a.order[1:]
	}
	a.applied++
	a.mu.Unlock()

	d := dispatch.Delivery{JobID: m.JobID, DeviceID: deviceID, JobType: m.JobType, Deadline: m.Deadline}
	for _, op := range m.Operations {
		d.Operations = append(d.Operations, dispatch.Operation{Name: op.Name, Value: op.Value})
	}
	a.handlers.Go(func() {
		err := a.cfg.Handler(a.life, d)
		var res *ResultMessage
		switch {
		case errors.Is(err, ErrNoAnswer):
		case err != nil:
			res = &ResultMessage{Status: StatusFailed, Error: err.Error()}
		default:
			res = &ResultMessage{Status: StatusSucceeded}
		}
		a.mu.Lock()
		state.done, state.answer = true, res
		times := 1 + state.owed
		state.owed = 0
		a.mu.Unlock()
		if res != nil {
			a.publish(jobID, *res, times)
		}
	})
}

// publish sends res as the answer to jobID, times times (once per delivery
// received: each may be the one the dispatcher waits for).
func (a *Agent) publish(jobID string, res ResultMessage, times int) {
	<-a.ready
	b, _ := json.Marshal(res) // two strings always encode
	ctx, cancel := context.WithTimeout(a.life, DefaultConnectTimeout)
	defer cancel()
	for range times {
		if _, err := a.cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: ResultTopic(a.cfg.DeviceID, jobID), Payload: b}); err != nil {
			if a.life.Err() != nil {
				return // closing: expected
			}
			a.log.Warn("mqtt agent: answer not acknowledged", zap.String("jobId", jobID), zap.Error(err))
			return
		}
	}
}

// Stats returns the Agent's counters.
func (a *Agent) Stats() AgentStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return AgentStats{Applied: a.applied, Duplicates: a.dups, Malformed: a.bad}
}

// Close cancels the handlers still running and the answers not yet
// acknowledged (they are lost, as a real device's would be), disconnects,
// and waits for the handlers to return.
func (a *Agent) Close(ctx context.Context) error {
	a.end()
	err := a.cm.Disconnect(ctx)
	a.handlers.Wait()
	if err != nil {
		return fmt.Errorf("mqtt agent %s: disconnect: %w", a.cfg.DeviceID, err)
	}
	return nil
}
