package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
)

// maxBuffered is how many bytes a batchConn holds before a Write waits for
// the sender to take them.
const maxBuffered = 256 << 10

// readBuffer is the size of a batchConn's read buffer.
const readBuffer = 64 << 10

// closeFlushWait bounds how long Close waits for buffered bytes (the
// DISCONNECT packet, typically) to reach the socket.
const closeFlushWait = 2 * time.Second

// batchConn is a net.Conn whose reads are buffered and whose writes are
// collected and sent by one goroutine, so that the packets written while
// one send is under way leave together in the next: one system call for
// many small packets (the deliveries of many concurrent publishes) instead
// of one each. A Write
// returns once its bytes are queued, as it would once they were in the
// kernel's socket buffer; the first send error is returned by every Write
// after it. It is a sync.Locker: the MQTT client holds the lock around the
// writes of one packet, so packets never interleave.
type batchConn struct {
	net.Conn
	sync.Mutex // one packet's writes (paho's packets.ControlPacket.WriteTo)
	r          *bufio.Reader

	mu     sync.Mutex
	data   *sync.Cond // signalled when bytes are queued or the conn closes
	room   *sync.Cond // signalled when the sender took the queue or failed
	buf    []byte
	err    error
	closed bool
	done   chan struct{} // closed when the sender has stopped
}

func newBatchConn(c net.Conn) *batchConn {
	b := &batchConn{Conn: c, r: bufio.NewReaderSize(c, readBuffer), done: make(chan struct{})}
	b.data = sync.NewCond(&b.mu)
	b.room = sync.NewCond(&b.mu)
	go b.send()
	return b
}

// Read reads through a buffer: the MQTT client reads a packet's header a
// byte at a time, which would otherwise be a system call a byte. Only one
// goroutine reads (the client's).
func (b *batchConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// Write queues p to be sent.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.buf) >= maxBuffered && b.err == nil && !b.closed {
		b.room.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.closed {
		return 0, net.ErrClosed
	}
	b.buf = append(b.buf, p...)
	b.data.Signal()
	return len(p), nil
}

// send writes what is queued, all of it at once, until the conn closes
// (after sending what was queued before) or a write fails.
func (b *batchConn) send() {
	defer close(b.done)
	var out []byte
	for {
		b.mu.Lock()
		for len(b.buf) == 0 && !b.closed {
			b.data.Wait()
		}
		if len(b.buf) == 0 { // closed, and nothing left to send
			b.mu.Unlock()
			return
		}
		out, b.buf = b.buf, out[:0]
		b.room.Broadcast()
		b.mu.Unlock()
		if _, err := b.Conn.Write(out); err != nil {
			b.mu.Lock()
			b.err = err
			b.room.Broadcast()
			b.mu.Unlock()
			// The MQTT client ignores most write errors (a QoS 1 publish
			// then waits for its acknowledgement until it times out): close
			// the connection, so that its reader fails at once and the
			// client reconnects.
			_ = b.Conn.Close()
			return
		}
	}
}

// Close sends what is queued (waiting at most closeFlushWait) and closes
// the connection.
func (b *batchConn) Close() error {
	b.mu.Lock()
	b.closed = true
	b.data.Signal()
	b.room.Broadcast()
	b.mu.Unlock()
	_ = b.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait))
	<-b.done
	if err := b.Conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// batchDialer returns an autopaho.ClientConfig.AttemptConnection that
// wraps TCP and TLS connections in a batchConn, or nil for the schemes
// autopaho dials itself (WebSocket) and when a proxy is configured
// (all_proxy, which autopaho honours).
func batchDialer(u *url.URL) func(context.Context, autopaho.ClientConfig, *url.URL) (net.Conn, error) {
	if os.Getenv("all_proxy") != "" {
		return nil
	}
	var useTLS bool
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp", "":
	case "ssl", "tls", "mqtts", "mqtt+ssl", "tcps":
		useTLS = true
	default:
		return nil
	}
	return func(ctx context.Context, cfg autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
		if cfg.ConnectTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
			defer cancel()
		}
		var c net.Conn
		var err error
		if useTLS {
			c, err = (&tls.Dialer{Config: cfg.TlsCfg}).DialContext(ctx, "tcp", u.Host)
		} else {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", u.Host)
		}
		if err != nil {
			return nil, err
		}
		return newBatchConn(c), nil
	}
}
