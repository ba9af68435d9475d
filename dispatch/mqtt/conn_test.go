package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// packetLine is the test packet number i of writer w: a line of varying
// length.
func packetLine(w, i int) string {
	return fmt.Sprintf("w%d n%d %s\n", w, i, strings.Repeat("x", i%300))
}

// TestBatchConnKeepsPacketsWhole: packets written by many goroutines, each
// in several Writes under the conn's lock (as the MQTT client writes them),
// arrive whole and all of them; the last one, written just before Close,
// is sent by Close.
func TestBatchConnKeepsPacketsWhole(t *testing.T) {
	client, server := tcpPair(t)
	b := newBatchConn(client)
	const writers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				b.Lock()
				// Three parts of one line, like a packet's header,
				// properties and payload.
				line := packetLine(w, i)
				for _, part := range []string{line[:2], line[2:5], line[5:]} {
					if _, err := b.Write([]byte(part)); err != nil {
						t.Error(err)
					}
				}
				b.Unlock()
			}
		})
	}
	lines := make(chan error, 1)
	got := map[string]bool{}
	go func() {
		r := bufio.NewReader(server)
		for len(got) < writers*each+1 {
			line, err := r.ReadString('\n')
			if err != nil {
				lines <- err
				return
			}
			var w, i int
			if _, err := fmt.Sscanf(line, "w%d n%d ", &w, &i); err != nil || line != packetLine(w, i) {
				lines <- fmt.Errorf("line %q is not one whole packet", line)
				return
			}
			got[fmt.Sprint(w, i)] = true
		}
		lines <- nil
	}()
	wg.Wait()
	if _, err := b.Write([]byte(packetLine(99, 0))); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lines:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%d of %d packets after 30 s", len(got), writers*each+1)
	}
	if !got[fmt.Sprint(99, 0)] {
		t.Error("the packet written just before Close was not sent")
	}
}

// failingWrites is a connection whose writes fail and whose reads wait for
// data that never comes: a connection broken one way.
type failingWrites struct{ net.Conn }

func (failingWrites) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// TestBatchConnReportsAFailedSend: once a send fails, Writes return the
// error instead of queueing bytes that will never leave, and the
// connection is closed, so that a Read fails at once instead of waiting
// for data (the MQTT client notices a dead connection by its reader).
func TestBatchConnReportsAFailedSend(t *testing.T) {
	end, other := net.Pipe()
	defer other.Close()
	b := newBatchConn(failingWrites{end})
	defer b.Close()
	read := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 1))
		read <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := b.Write([]byte("packet")); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Writes still succeed 30 s after the first send failed")
		}
	}
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("Read after a failed send returned no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read still waits 10 s after a send failed: the connection was not closed")
	}
}

// TestBatchConnReadsThroughABuffer: what the peer sends is read back in
// full through the buffered Read.
func TestBatchConnReadsThroughABuffer(t *testing.T) {
	client, server := tcpPair(t)
	b := newBatchConn(client)
	defer b.Close()
	want := strings.Repeat("0123456789", 20000)
	go func() { _, _ = io.WriteString(server, want); server.Close() }()
	var sb strings.Builder
	one := make([]byte, 1)
	for {
		// One byte at a time, as the MQTT client reads a header.
		n, err := b.Read(one)
		sb.Write(one[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if sb.String() != want {
		t.Fatalf("read %d bytes, want %d", sb.Len(), len(want))
	}
}
