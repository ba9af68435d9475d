package mqtt

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWriteTimeout is BrokerConfig.WriteTimeout by default.
const DefaultWriteTimeout = 15 * time.Second

// connectTimeout is how long a new connection has to send its CONNECT.
const connectTimeout = 10 * time.Second

// guardedListener hands the broker library connections it cannot be stuck
// on, and remembers them so that Broker.Close can end every one:
//   - each write must finish within a time limit: the library writes to a
//     device under the device's lock, which a delivery to it also takes,
//     so a device that stops reading would hold the dispatcher's delivery
//     (and the broker's shutdown) for as long as its socket stays open,
//     for good with keep-alive 0 (the library's own deadline, 1.5 times the
//     keep-alive from the last packet read, both moves on with every ping
//     and is gone without keep-alive);
//   - a new connection must send its CONNECT within connectTimeout (the
//     library waits without a limit);
//   - Close closes the connections the library has not ended, among them
//     one still in its handshake or key check when the clients were listed.
type guardedListener struct {
	net.Listener
	writeTimeout time.Duration

	mu    sync.Mutex
	conns map[*guardedConn]bool
}

func newGuardedListener(l net.Listener, writeTimeout time.Duration) *guardedListener {
	return &guardedListener{Listener: l, writeTimeout: writeTimeout, conns: map[*guardedConn]bool{}}
}

// Accept returns the next connection, guarded.
func (l *guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(connectTimeout)) // the library moves it on with every packet read
	gc := &guardedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[gc] = true
	l.mu.Unlock()
	return gc, nil
}

// closeConns closes every connection not closed yet.
func (l *guardedListener) closeConns() {
	l.mu.Lock()
	conns := make([]*guardedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// guardedConn is a connection whose writes each have a deadline.
type guardedConn struct {
	net.Conn
	l           *guardedListener
	deadlineSet atomic.Int64 // when the write deadline was last moved on, Unix ns
}

// Write writes b, or fails once the write has waited about writeTimeout
// (from seven eighths of it to all of it: the deadline is moved on only
// when an eighth of it has passed, not for every packet). A failed write
// closes the connection: the library would go on writing to it (it logs a
// failed write and carries on), after part of a packet.
func (c *guardedConn) Write(b []byte) (int, error) {
	now := time.Now().UnixNano()
	if set := c.deadlineSet.Load(); now-set > int64(c.l.writeTimeout/8) {
		_ = c.Conn.SetWriteDeadline(time.Unix(0, now).Add(c.l.writeTimeout))
		c.deadlineSet.Store(now)
	}
	n, err := c.Conn.Write(b)
	if err != nil {
		_ = c.Close()
	}
	return n, err
}

// SetDeadline sets the read deadline only: the library sets both, after
// every packet it reads, which would lift the deadline of a write waiting
// at that moment.
func (c *guardedConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Close closes the connection and forgets it.
func (c *guardedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
