package mqtt_test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// rawConn is a minimal MQTT v5 client over one TCP connection, for load
// tests only: ten thousand simulated devices must fit in one process with
// little memory and CPU, which a full client (goroutines, queues and
// session state per connection) does not. It speaks just what a device and
// a bare publisher need: CONNECT, SUBSCRIBE, PUBLISH at QoS 0 or 1, PUBACK.
// Writes are buffered: Flush sends them.
type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	w   *bufio.Writer
	id  uint16 // last packet ID drawn, under wmu
	// connack is the body of the broker's CONNACK.
	connack []byte
}

// MQTT v5 packet types (the high nibble of the first byte).
const (
	pktConnect   = 1
	pktConnack   = 2
	pktPublish   = 3
	pktPuback    = 4
	pktSubscribe = 8
	pktSuback    = 9
)

// rawDial connects and authenticates as clientID with user and password
// (clean start, no keep-alive) and waits for the CONNACK.
func rawDial(addr, clientID, user string, password []byte, bufSize int) (*rawConn, error) {
	return rawDialKeepAlive(addr, clientID, user, password, bufSize, 0)
}

// rawDialKeepAlive is rawDial asking for a keep-alive of keepAlive seconds.
func rawDialKeepAlive(addr, clientID, user string, password []byte, bufSize int, keepAlive uint16) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: c, r: bufio.NewReaderSize(c, bufSize), w: bufio.NewWriterSize(c, bufSize)}
	var vh []byte
	vh = appendStr(vh, "MQTT")
	vh = append(vh, 5, 0x80|0x40|0x02, byte(keepAlive>>8), byte(keepAlive)) // v5; username, password, clean start
	vh = append(vh, 0)                                                      // no properties
	vh = appendStr(vh, clientID)
	vh = appendStr(vh, user)
	vh = appendStr(vh, string(password))
	rc.writePacket(pktConnect<<4, vh)
	if err := rc.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, body, err := rc.readPacket()
	_ = c.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		c.Close()
		return nil, fmt.Errorf("connack: %w", err)
	case typ>>4 != pktConnack || len(body) < 2:
		c.Close()
		return nil, fmt.Errorf("connack: packet type %d", typ>>4)
	case body[1] != 0:
		c.Close()
		return nil, fmt.Errorf("connect refused: reason code %#x", body[1])
	}
	rc.connack = body
	return rc, nil
}

// subscribe subscribes to filter at qos and waits for the SUBACK; call it
// before reading anything else.
func (rc *rawConn) subscribe(filter string, qos byte) error {
	var vh []byte
	vh = binary.BigEndian.AppendUint16(vh, 1)
	vh = append(vh, 0) // no properties
	vh = appendStr(vh, filter)
	vh = append(vh, qos)
	rc.wmu.Lock()
	rc.writePacket(pktSubscribe<<4|0x02, vh)
	rc.wmu.Unlock()
	if err := rc.Flush(); err != nil {
		return err
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = rc.c.SetReadDeadline(time.Time{}) }()
	typ, body, err := rc.readPacket()
	switch {
	case err != nil:
		return fmt.Errorf("suback: %w", err)
	case typ>>4 != pktSuback || len(body) < 4:
		return fmt.Errorf("suback: packet type %d", typ>>4)
	case body[len(body)-1] > 2:
		return fmt.Errorf("subscribe %s refused: reason code %#x", filter, body[len(body)-1])
	}
	return nil
}

// publish buffers a PUBLISH (and returns its packet ID, 0 at QoS 0).
func (rc *rawConn) publish(topic string, payload []byte, qos byte) uint16 {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	var id uint16
	vh := make([]byte, 0, 2+len(topic)+3+len(payload))
	vh = appendStr(vh, topic)
	if qos > 0 {
		rc.id++
		if rc.id == 0 {
			rc.id = 1
		}
		id = rc.id
		vh = binary.BigEndian.AppendUint16(vh, id)
	}
	vh = append(vh, 0) // no properties
	vh = append(vh, payload...)
	rc.writePacket(pktPublish<<4|qos<<1, vh)
	return id
}

// puback buffers the acknowledgement of a received QoS 1 PUBLISH.
func (rc *rawConn) puback(id uint16) {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	rc.writePacket(pktPuback<<4, binary.BigEndian.AppendUint16(nil, id))
}

// Flush sends what is buffered.
func (rc *rawConn) Flush() error {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	return rc.w.Flush()
}

func (rc *rawConn) Close() error { return rc.c.Close() }

// writePacket buffers one packet; the caller holds wmu (or is alone).
func (rc *rawConn) writePacket(first byte, body []byte) {
	var hdr [5]byte
	hdr[0] = first
	n := 1
	for l := len(body); ; {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		hdr[n] = b
		n++
		if l == 0 {
			break
		}
	}
	_, _ = rc.w.Write(hdr[:n])
	_, _ = rc.w.Write(body)
}

// readPacket reads one packet: its first byte and its body (valid until the
// next read).
func (rc *rawConn) readPacket() (first byte, body []byte, err error) {
	first, err = rc.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	l, mul := 0, 1
	for i := 0; ; i++ {
		b, err := rc.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		l += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	if l <= rc.r.Size() {
		body, err = rc.r.Peek(l)
		if err == nil {
			_, _ = rc.r.Discard(l)
		}
		return first, body, err
	}
	body = make([]byte, l)
	_, err = io.ReadFull(rc.r, body)
	return first, body, err
}

// parsePublish splits a received PUBLISH body into topic, packet ID (0 at
// QoS 0) and payload.
func parsePublish(first byte, body []byte) (topic string, id uint16, payload []byte, err error) {
	if len(body) < 2 {
		return "", 0, nil, errors.New("short publish")
	}
	tl := int(binary.BigEndian.Uint16(body))
	p := 2 + tl
	if len(body) < p {
		return "", 0, nil, errors.New("short publish topic")
	}
	topic = string(body[2:p])
	if (first>>1)&3 > 0 {
		if len(body) < p+2 {
			return "", 0, nil, errors.New("short publish packet ID")
		}
		id = binary.BigEndian.Uint16(body[p:])
		p += 2
	}
	pl, n := binary.Uvarint(body[p:]) // property length: a variable byte integer, same encoding
	if n <= 0 || len(body) < p+n+int(pl) {
		return "", 0, nil, errors.New("bad publish properties")
	}
	return topic, id, body[p+n+int(pl):], nil
}

// serverKeepAlive is the Server Keep Alive property of the CONNACK, and
// whether it has one.
func (rc *rawConn) serverKeepAlive() (uint16, bool, error) {
	props, n := binary.Uvarint(rc.connack[2:])
	if n <= 0 || uint64(len(rc.connack)-2-n) < props {
		return 0, false, errors.New("connack: bad properties length")
	}
	p := rc.connack[2+n : 2+n+int(props)]
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		var size int
		switch id {
		case 0x13: // Server Keep Alive, two bytes
			if len(p) < 2 {
				return 0, false, errors.New("connack: short Server Keep Alive")
			}
			return binary.BigEndian.Uint16(p), true, nil
		case 0x24, 0x25, 0x28, 0x29, 0x2a: // one-byte properties
			size = 1
		case 0x21, 0x22: // two-byte
			size = 2
		case 0x11, 0x27: // four-byte
			size = 4
		case 0x12, 0x1a, 0x1c, 0x1f, 0x15, 0x16: // strings and binary data
			if len(p) < 2 {
				return 0, false, errors.New("connack: short property")
			}
			size = 2 + int(binary.BigEndian.Uint16(p))
		case 0x26: // user property: two strings
			if len(p) < 2 {
				return 0, false, errors.New("connack: short user property")
			}
			k := 2 + int(binary.BigEndian.Uint16(p))
			if len(p) < k+2 {
				return 0, false, errors.New("connack: short user property")
			}
			size = k + 2 + int(binary.BigEndian.Uint16(p[k:]))
		default:
			return 0, false, fmt.Errorf("connack: unknown property %#x", id)
		}
		if len(p) < size {
			return 0, false, fmt.Errorf("connack: short property %#x", id)
		}
		p = p[size:]
	}
	return 0, false, nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}
