package websocket

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine/auth"
)

// Close codes and reasons the hub sends.
const (
	reasonShutdown  = "Server shutting down"
	reasonLimit     = "Connection limit exceeded"
	reasonSlow      = "Send queue full"
	reasonMisbehave = "Too many invalid messages"
)

// A client that sends more than strikeLimit malformed messages
// (invalid_message, too_large, unknown_type) within strikeWindow is
// closed with 1008.
const (
	strikeLimit  = 10
	strikeWindow = 10 * time.Second
)

// closeGrace bounds how long a closing writer waits for the client to
// answer its close frame before dropping the connection.
const closeGrace = time.Second

// Output buffers: a writer copies what is queued for its client into one
// buffer and writes it at once, flushing early past flushSize. Buffers
// larger than maxPooledOut are not kept for reuse; queues longer than
// maxKeptQueue are not kept either, so idle clients stay small.
const (
	flushSize    = 64 << 10
	maxPooledOut = 256 << 10
	maxKeptQueue = 32
)

// client is one WebSocket connection. Two goroutines serve it: the reader
// handles client messages and owns subs; the writer owns every write to
// the network. Anything that wants to send to the client queues a frame
// with enqueue, which never blocks.
type client struct {
	h      *Hub
	conn   *websocket.Conn
	nc     net.Conn
	id     string
	ip     string
	claims *auth.Claims
	batch  bool // the client asked for batch frames (?batch=1)

	wake     chan struct{} // capacity 1: frames were queued or closing was set
	readDone chan struct{} // closed when the reader has stopped and cleaned up

	mu      sync.Mutex
	queue   []*frame
	spare   []*frame
	closing bool
	code    int
	reason  string

	// Owned by the reader goroutine; peerClose is read by the writer after
	// readDone is closed.
	subs      map[string]*subscription
	strikes   int
	strikesAt time.Time
	peerClose *websocket.CloseError
}

// enqueue queues f for the client and wakes its writer. When the queue
// already holds send_queue frames the client is too slow: its queue is
// dropped and it is closed with 1013 so that it never holds back the
// others.
func (c *client) enqueue(f *frame) {
	if wake, _ := c.push(f); wake {
		c.signal()
	}
}

// push is enqueue without the wake-up: it queues f and reports whether
// the writer must be woken for it (the queue was empty, or the client was
// just closed as too slow) and how many frames are queued. Hub.Write uses
// it to wake each writer once per batch, after the whole batch is queued.
func (c *client) push(f *frame) (wake bool, queued int) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false, 0
	}
	if len(c.queue) >= c.h.SendQueue {
		c.closing, c.code, c.reason = true, websocket.CloseTryAgainLater, reasonSlow
		clear(c.queue)
		c.queue = c.queue[:0]
		c.mu.Unlock()
		c.h.metrics.slowDropped.Inc()
		return true, 0
	}
	c.queue = append(c.queue, f)
	n := len(c.queue)
	c.mu.Unlock()
	return n == 1, n
}

// close asks the writer to send what is queued, then a close frame with
// code and reason, and to end the connection.
func (c *client) close(code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.closing, c.code, c.reason = true, code, reason
	}
	c.mu.Unlock()
	c.signal()
}

func (c *client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take returns everything queued and whether the client is closing.
func (c *client) take() (frames []*frame, closing bool, code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	frames = c.queue
	c.queue, c.spare = c.spare[:0], nil
	return frames, c.closing, c.code, c.reason
}

// recycle keeps a drained queue for reuse.
func (c *client) recycle(frames []*frame) {
	if cap(frames) > maxKeptQueue {
		return
	}
	clear(frames)
	c.mu.Lock()
	c.spare = frames[:0]
	c.mu.Unlock()
}

// writeLoop is the writer goroutine.
func (c *client) writeLoop() {
	defer c.h.wg.Done()
	defer c.nc.Close()
	ping := time.NewTicker(c.h.PingInterval.D())
	defer ping.Stop()
	for {
		select {
		case <-c.wake:
			frames, closing, code, reason := c.take()
			err := c.write(frames)
			c.recycle(frames)
			if err != nil {
				return
			}
			if closing {
				c.closeHandshake(code, reason)
				return
			}
		case <-ping.C:
			if c.writeWire(pingFrame.wire) != nil {
				return
			}
		case <-c.readDone:
			// The client closed (answer with its code) or the connection
			// failed (the reader closed it).
			if ce := c.peerClose; ce != nil {
				echo := controlFrame(opClose, nil)
				if ce.Code != websocket.CloseNoStatusReceived {
					echo = closeFrame(ce.Code, "")
				}
				_ = c.writeWire(echo.wire)
			}
			return
		case <-c.h.done:
			frames, _, _, _ := c.take()
			if c.write(frames) == nil {
				c.closeHandshake(websocket.CloseGoingAway, reasonShutdown)
			}
			return
		}
	}
}

// closeHandshake sends a close frame and waits, briefly, for the client's
// answer, which makes the reader stop.
func (c *client) closeHandshake(code int, reason string) {
	if c.writeWire(closeFrame(code, reason).wire) != nil {
		return
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-t.C:
	}
}

// write sends frames, merging them into as few network writes as
// possible; batch clients get runs of data_update frames as one batch
// frame.
func (c *client) write(frames []*frame) error {
	if len(frames) == 0 {
		return nil
	}
	frames = flatten(frames)
	defer c.h.metrics.sent.Add(float64(len(frames)))
	if len(frames) == 1 && !(c.batch && frames[0].event) {
		return c.writeWire(frames[0].wire)
	}
	bp := c.h.outBufs.Get().(*[]byte)
	out := (*bp)[:0]
	var err error
	for i := 0; i < len(frames) && err == nil; {
		if c.batch && frames[i].event {
			j := i + 1
			for j < len(frames) && frames[j].event {
				j++
			}
			out = appendBatch(out, frames[i:j])
			i = j
		} else {
			out = append(out, frames[i].wire...)
			i++
		}
		if len(out) >= flushSize {
			err = c.writeWire(out)
			out = out[:0]
		}
	}
	if err == nil && len(out) > 0 {
		err = c.writeWire(out)
	}
	if cap(out) <= maxPooledOut {
		*bp = out[:0]
		c.h.outBufs.Put(bp)
	}
	return err
}

func (c *client) writeWire(b []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.h.WriteTimeout.D())); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

// readLoop is the reader goroutine.
func (c *client) readLoop() {
	defer c.h.wg.Done()
	var err error
	defer func() { c.stopReading(err) }()

	c.conn.SetReadLimit(int64(c.h.hardLimit()))
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(c.h.pongWait())) }
	extend()
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	c.conn.SetPingHandler(func(p string) error {
		extend()
		c.enqueue(controlFrame(opPong, []byte(p)))
		return nil
	})
	// The writer answers a close frame; gorilla must not write.
	c.conn.SetCloseHandler(func(int, string) error { return nil })

	for {
		var r io.Reader
		if _, r, err = c.conn.NextReader(); err != nil {
			return
		}
		extend()
		bp := c.h.readBufs.Get().(*[]byte)
		var n int
		n, err = io.ReadFull(r, *bp)
		switch {
		case err == nil:
			// The message is longer than max_message_size: drop the rest,
			// up to the hard read limit.
			if _, err = io.Copy(io.Discard, r); err == nil {
				c.fail(codeTooLarge, "message exceeds the limit of "+strconv.Itoa(c.h.MaxMessageSize)+" bytes", "")
			}
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			err = nil
			c.handle((*bp)[:n])
		}
		c.h.readBufs.Put(bp)
		if err != nil {
			return
		}
	}
}

// stopReading ends the client's part in the hub once its reader stops.
func (c *client) stopReading(err error) {
	if !errors.As(err, &c.peerClose) {
		// Not a close from the client: a network error, a timeout or a
		// protocol error. Closing the connection stops a writer blocked in
		// a write.
		_ = c.nc.Close()
	}
	for _, s := range c.subs {
		c.h.unsubscribe(s)
	}
	c.h.release(c)
	close(c.readDone)
}

// fail sends an error frame. Malformed messages count as strikes; too
// many close the connection.
func (c *client) fail(code, msg, key string) {
	c.enqueue(errorFrame(code, msg, key))
	switch code {
	case codeInvalidMessage, codeTooLarge, codeUnknownType:
	default:
		return
	}
	now := time.Now()
	if now.Sub(c.strikesAt) > strikeWindow {
		c.strikes, c.strikesAt = 0, now
	}
	if c.strikes++; c.strikes > strikeLimit {
		c.close(websocket.ClosePolicyViolation, reasonMisbehave)
	}
}
