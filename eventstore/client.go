package eventstore

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"go.uber.org/zap"
)

// Client is the application's handle on the event log. It is safe for
// concurrent use. Build it with Dial (which owns the connection) or New
// (which wraps a client the caller owns).
type Client struct {
	codec  *Codec
	logger *zap.Logger
	now    func() time.Time

	// conf is the parsed connection string when the Client dialled it
	// itself; nil after New. The official client closes itself for good
	// when a (re)discovery fails while the server is down (see
	// EVENTSTORE-PROTOCOL.md §8); with conf the Client replaces it, so a
	// store that comes back is used again without restarting the process.
	conf *esdb.Configuration

	mu              sync.Mutex
	es              *esdb.Client
	closed          bool
	reconnectLogged time.Time // the last reconnect logged at info
}

// Option configures a Client built by Dial or New.
type Option func(*Client)

// WithCodec sets the codec Append uses to name and encode events whose Type
// is empty and whose Data is a registered Go value. Without it, Append needs
// every Event's Type and marshals Data with encoding/json.
func WithCodec(c *Codec) Option { return func(cl *Client) { cl.codec = c } }

// WithLogger sets the logger; the official client's own log lines go to it
// too (its warnings and errors at debug: the Client returns those errors to
// its caller, who decides whether they are worth logging). Default: no
// logging.
func WithLogger(l *zap.Logger) Option {
	return func(cl *Client) {
		if l != nil {
			cl.logger = l
		}
	}
}

// WithClock sets the clock Append stamps on events whose
// Metadata.OccurredAt is zero. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(cl *Client) {
		if now != nil {
			cl.now = now
		}
	}
}

// Dial parses a KurrentDB connection string (esdb://host:port?tls=false,
// esdb+discover://..., see the official client's documentation) and returns
// a Client that owns its connection. Dial does no I/O: the first operation
// connects (use Ping to check the store answers).
func Dial(url string, opts ...Option) (*Client, error) {
	conf, err := esdb.ParseConnectionString(url)
	if err != nil {
		return nil, fmt.Errorf("dial event store: %w", err)
	}
	c := newClient(opts)
	conf.Logger = c.esdbLogger()
	c.conf = conf
	es, err := esdb.NewClient(c.freshConf())
	if err != nil {
		return nil, fmt.Errorf("dial event store: %w", err)
	}
	c.es = es
	return c, nil
}

// New wraps an official client the caller built. Close closes it.
func New(es *esdb.Client, opts ...Option) *Client {
	c := newClient(opts)
	c.es = es
	return c
}

func newClient(opts []Option) *Client {
	c := &Client{logger: zap.NewNop(), now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Codec returns the codec given with WithCodec, or nil.
func (c *Client) Codec() *Codec { return c.codec }

// Close closes the connection. Operations after Close fail; a subscription
// running at the time ends with an error.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if err := c.es.Close(); err != nil {
		return fmt.Errorf("close event store client: %w", err)
	}
	return nil
}

// client returns the official client to use for one operation.
func (c *Client) client() (*esdb.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.es, nil
}

// observe looks at the error of an operation made with es: when the official
// client's connection loop is gone (a failed discovery), closing it releases
// the calls still waiting on it (survive), and, when this Client dialled it,
// the next operation gets a fresh one. A client given to New stays closed:
// its later operations fail at once.
func (c *Client) observe(es *esdb.Client, err error) {
	if err == nil || !connectionLoopGone(err) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.es != es {
		return // closed by us, or already replaced by a concurrent caller
	}
	_ = es.Close() // its connection loop is gone: this releases the calls waiting on it
	if c.conf == nil {
		return
	}
	fresh, nerr := esdb.NewClient(c.freshConf())
	if nerr != nil {
		c.logger.Warn("event store client: cannot recreate the connection", zap.Error(nerr))
		return
	}
	// Once a minute at most: while the store is down every call's
	// discovery fails.
	if now := time.Now(); now.Sub(c.reconnectLogged) >= time.Minute {
		c.reconnectLogged = now
		c.logger.Info("event store client: connection was closed after a failed discovery; reconnecting on next use", zap.Error(err))
	} else {
		c.logger.Debug("event store client: reconnecting after another failed discovery", zap.Error(err))
	}
	c.es = fresh
}

// freshConf copies the parsed configuration: the official client keeps a
// pointer to the one it is given.
func (c *Client) freshConf() *esdb.Configuration {
	cp := *c.conf
	return &cp
}

// esdbLogger routes the official client's log lines to zap. The client
// passes its arguments either spread or as one []any (a bug in
// Configuration.applyLogger), so both are accepted.
func (c *Client) esdbLogger() esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		if len(args) == 1 {
			if inner, ok := args[0].([]any); ok {
				args = inner
			}
		}
		msg := strings.TrimSpace(fmt.Sprintf(format, args...))
		// The client logs every dropped subscription and failed call at
		// error level; they are returned to the caller, so keep them out of
		// an info-level log.
		c.logger.Debug("esdb client: "+msg, zap.String("esdbLevel", level))
	}
}

// connectionLoopGone reports whether err says the official client's
// connection loop has ended: the call that started a discovery that failed
// gets the discovery's error, every later call ErrorCodeConnectionClosed.
// Calls queued behind the discovery wait until the client is closed.
func connectionLoopGone(err error) bool {
	return isCode(err, esdb.ErrorCodeConnectionClosed) || strings.Contains(err.Error(), "maximum discovery attempt count reached")
}

func isCode(err error, code esdb.ErrorCode) bool {
	var e *esdb.Error
	return errors.As(err, &e) && e.Code() == code
}
