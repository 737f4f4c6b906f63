package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// The load generator speaks WebSocket itself, minimally (RFC 6455 as a
// client: masked frames out, unmasked unfragmented frames in), so that a
// client costs one goroutine and one read buffer and reads a received
// frame without allocating: at 250k deliveries per second on one core,
// the generator must stay much cheaper than the server it measures.

// WebSocket opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// errClosed is returned by readFrame after the server's close frame; the
// code and reason are in wsConn.closeCode and closeReason.
var errClosed = errors.New("websocket closed by the server")

// wsConn is one client connection. It is not safe for concurrent use,
// except that close may be called from any goroutine.
type wsConn struct {
	nc      net.Conn
	br      *bufio.Reader
	payload []byte // the last frame's payload, reused
	wbuf    []byte

	closeCode   int
	closeReason string
}

// dialOptions are the parameters of a connection.
type dialOptions struct {
	Addr    string     // host:port of the hub
	Path    string     // URL path and query, e.g. "/ws"
	Token   string     // JWT, sent as Authorization: Bearer
	Local   netip.Addr // source address; zero: the kernel picks
	ReadBuf int        // bufio size; default 4096
	Timeout time.Duration
}

// dialWS connects and completes the WebSocket handshake.
func dialWS(ctx context.Context, o dialOptions) (*wsConn, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ReadBuf <= 0 {
		o.ReadBuf = 4096
	}
	d := net.Dialer{Timeout: o.Timeout}
	if o.Local.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: o.Local.AsSlice()}
	}
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", o.Addr, err)
	}
	c := &wsConn{nc: nc, br: bufio.NewReaderSize(nc, o.ReadBuf)}
	if err := c.handshake(o); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (c *wsConn) handshake(o dialOptions) error {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	path := o.Path
	if path == "" {
		path = "/"
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + o.Addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n"
	if o.Token != "" {
		req += "Authorization: Bearer " + o.Token + "\r\n"
	}
	req += "\r\n"
	_ = c.nc.SetDeadline(time.Now().Add(o.Timeout))
	defer c.nc.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.nc, req); err != nil {
		return fmt.Errorf("sending handshake: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return fmt.Errorf("reading handshake: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: status %s", resp.Status)
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return fmt.Errorf("handshake: bad Sec-WebSocket-Accept")
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("handshake: no Upgrade: websocket")
	}
	return nil
}

// acceptKey is the server's expected Sec-WebSocket-Accept for key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// readFrame returns the next data frame's opcode and payload; the payload
// is valid until the next call. It answers pings itself and returns
// errClosed after a close frame (which it answers).
func (c *wsConn) readFrame() (byte, []byte, error) {
	for {
		op, p, err := c.readRaw()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case opPing:
			if err := c.writeFrame(opPong, p); err != nil {
				return 0, nil, err
			}
		case opPong:
		case opClose:
			if len(p) >= 2 {
				c.closeCode = int(binary.BigEndian.Uint16(p))
				c.closeReason = string(p[2:])
			} else {
				c.closeCode = 1005
			}
			_ = c.writeFrame(opClose, p[:min(len(p), 2)])
			return 0, nil, errClosed
		default:
			return op, p, nil
		}
	}
}

// readRaw reads one frame. Server frames are never masked; fragmented
// messages are reassembled.
func (c *wsConn) readRaw() (byte, []byte, error) {
	c.payload = c.payload[:0]
	var op byte
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return 0, nil, err
		}
		fin, code := h[0]&0x80 != 0, h[0]&0x0F
		if h[1]&0x80 != 0 {
			return 0, nil, errors.New("reading frame: masked server frame")
		}
		n := uint64(h[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(c.br, b[:]); err != nil {
				return 0, nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(c.br, b[:]); err != nil {
				return 0, nil, err
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		if n > 16<<20 {
			return 0, nil, fmt.Errorf("reading frame: %d bytes", n)
		}
		if code >= opClose {
			// A control frame may come between fragments; it is never
			// fragmented itself and at most 125 bytes.
			var b [125]byte
			if n > 125 {
				return 0, nil, errors.New("reading frame: control frame over 125 bytes")
			}
			if _, err := io.ReadFull(c.br, b[:n]); err != nil {
				return 0, nil, err
			}
			if len(c.payload) == 0 && op == 0 {
				c.payload = append(c.payload, b[:n]...)
				return code, c.payload, nil
			}
			if code == opPing {
				if err := c.writeFrame(opPong, b[:n]); err != nil {
					return 0, nil, err
				}
			}
			continue
		}
		if op == 0 {
			op = code
		}
		start := len(c.payload)
		c.payload = growLen(c.payload, start+int(n))
		if _, err := io.ReadFull(c.br, c.payload[start:]); err != nil {
			return 0, nil, err
		}
		if fin {
			return op, c.payload, nil
		}
	}
}

func growLen(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

// writeFrame sends one masked frame.
func (c *wsConn) writeFrame(op byte, p []byte) error {
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range p {
		b[start+i] ^= mask[i&3]
	}
	c.wbuf = b
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// writeText sends a text frame.
func (c *wsConn) writeText(s string) error { return c.writeFrame(opText, []byte(s)) }

// close closes the connection without a close handshake.
func (c *wsConn) close() error { return c.nc.Close() }

// closeGracefully sends a close frame with code 1000 and closes.
func (c *wsConn) closeGracefully() {
	_ = c.writeFrame(opClose, []byte{0x03, 0xE8})
	_ = c.nc.Close()
}
