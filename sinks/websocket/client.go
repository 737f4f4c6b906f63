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

// client is one WebSocket connection. A reader handles client messages
// and owns subs for the connection's whole life; it is one goroutine at a
// time, each handing on to a fresh one after a message (see read).
// Writing is a role, not a goroutine: whoever queues a frame for a client
// whose writer is idle starts one (signal), which writes everything
// queued, merged into as few network writes as possible, and ends when
// nothing is left. An idle connection so costs one goroutine, not two,
// and no timer: pings come from the hub's one pinger. Anything that wants
// to send to the client queues a frame with enqueue, which never blocks.
type client struct {
	h      *Hub
	conn   *websocket.Conn
	nc     net.Conn
	id     string
	ip     string
	claims *auth.Claims
	batch  bool // the client asked for batch frames (?batch=1)

	// wake, when set, is notified by signal instead of running a writer:
	// clients built without a connection (tests) observe wake-ups there.
	wake     chan struct{}
	readDone chan struct{} // closed when the reader has stopped and cleaned up
	slot     int           // the pinger's slot of the client (Hub.pingLoop)

	mu      sync.Mutex
	queue   []*frame
	spare   []*frame
	closing bool
	code    int
	reason  string
	writer  writerState
	pending bool // signalled since the writer last took the queue
	pingDue bool // the pinger asked for a ping
	stopped bool // the reader has stopped: the writer ends the connection

	// Owned by the writer role: whoever moved writer to writerRunning.
	deadline time.Time // the write deadline set last

	// Owned by the reader; peerClose is read by the writer after stopped
	// is set.
	subs      map[string]*subscription
	strikes   int
	strikesAt time.Time
	peerClose *websocket.CloseError
}

// writerState says who may write to a client's connection.
type writerState uint8

const (
	writerIdle    writerState = iota // nobody: signal starts a writer
	writerRunning                    // one writer goroutine, or the reader ending the connection
	writerDone                       // the connection is over; nothing is written again
)

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

// signal wakes the client's writer: it starts one when none runs; a
// running writer takes the queue again before it ends.
func (c *client) signal() {
	if c.wake != nil {
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return
	}
	c.mu.Lock()
	c.pending = true
	start := c.writer == writerIdle
	if start {
		c.writer = writerRunning
	}
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// ping asks the writer to send a ping; the hub's pinger calls it.
func (c *client) ping() {
	c.mu.Lock()
	if c.closing || c.writer == writerDone {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	start := c.writer == writerIdle && c.wake == nil
	if start {
		c.writer = writerRunning
	}
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// take returns everything queued and whether the client is closing.
func (c *client) take() (frames []*frame, closing bool, code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takeLocked()
}

func (c *client) takeLocked() (frames []*frame, closing bool, code int, reason string) {
	frames = c.queue
	c.queue, c.spare = c.spare[:0], nil
	c.pending = false
	return frames, c.closing, c.code, c.reason
}

// What a writer does next (client.next).
const (
	doWrite   = 1 << iota // write the frames taken
	doPing                // then a ping
	doClose               // then the close handshake (closeInfo)
	doStop                // the reader has stopped: end the connection
	doNothing             // nothing to do: the writer has given up its role
)

// next takes the writer's next work. When there is none it gives up the
// writer role under the lock, so that a frame queued right after starts
// a new writer. Its results are small, as is the writer's stack (see
// writeLoop).
func (c *client) next() (frames []*frame, do uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.stopped:
		return nil, doStop
	case !c.pending && !c.pingDue && !c.closing:
		c.writer = writerIdle
		return nil, doNothing
	}
	frames, closing, _, _ := c.takeLocked()
	do = doWrite
	if c.pingDue {
		c.pingDue = false
		do |= doPing
	}
	if closing {
		do |= doClose
	}
	return frames, do
}

// closeInfo returns the code and reason the client is closed with.
func (c *client) closeInfo() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.reason
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

// writeLoop is a writer: it runs while there is something to write, and
// ends the connection when the client is closing or the reader stopped.
// A writer starts on the smallest stack (2 KiB, as most goroutines of a
// hub are readers waiting on one) and its way down to the write system
// call must fit: a stack that grows is copied, and writers start anew for
// every event at modest rates. So the frames on that way stay small:
// one frame's write does not go through the merging of writeMerged.
func (c *client) writeLoop() {
	for {
		frames, do := c.next()
		switch {
		case do&doNothing != 0:
			return
		case do&doStop != 0:
			c.finish(false)
			return
		}
		err := c.write(frames)
		c.recycle(frames)
		if err == nil && do&doPing != 0 {
			err = c.writeWire(pingFrame.wire)
		}
		if err != nil {
			c.finish(true)
			return
		}
		if do&doClose != 0 {
			c.closeHandshake(c.closeInfo())
			c.finish(true)
			return
		}
	}
}

// finish ends the connection; the caller has the writer role. Unless the
// hub already said goodbye (quiet), a close from the client is answered
// with its code.
func (c *client) finish(quiet bool) {
	c.mu.Lock()
	stopped := c.stopped
	c.writer = writerDone
	clear(c.queue)
	c.queue, c.spare = nil, nil
	c.mu.Unlock()
	if stopped && !quiet {
		if ce := c.peerClose; ce != nil {
			echo := controlFrame(opClose, nil)
			if ce.Code != websocket.CloseNoStatusReceived {
				echo = closeFrame(ce.Code, "")
			}
			_ = c.writeWire(echo.wire)
		}
	}
	_ = c.nc.Close()
	c.h.wg.Done()
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
	switch {
	case len(frames) == 0:
		return nil
	case len(frames) == 1 && frames[0].group == nil && !(c.batch && frames[0].event):
		c.h.metrics.sent.Inc()
		return c.writeWire(frames[0].wire)
	}
	return c.writeMerged(frames)
}

// writeMerged is write for several frames, or frames to merge.
func (c *client) writeMerged(frames []*frame) error {
	frames = flatten(frames)
	c.h.metrics.sent.Add(float64(len(frames)))
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

// writeWire writes b within WriteTimeout. The deadline is moved only
// when a tenth of the timeout has passed since it was last set, which
// spares a timer update per write: a write gets between nine tenths of
// WriteTimeout and all of it.
func (c *client) writeWire(b []byte) error {
	now := time.Now()
	timeout := c.h.WriteTimeout.D()
	if c.deadline.Sub(now) < timeout-timeout/10 {
		c.deadline = now.Add(timeout)
		if err := c.nc.SetWriteDeadline(c.deadline); err != nil {
			return err
		}
	}
	_, err := c.nc.Write(b)
	return err
}

// startReading sets up the connection's read side and starts the reader.
func (c *client) startReading() {
	c.conn.SetReadLimit(int64(c.h.hardLimit()))
	c.extend()
	c.conn.SetPongHandler(func(string) error { c.extend(); return nil })
	c.conn.SetPingHandler(func(p string) error {
		c.extend()
		c.enqueue(controlFrame(opPong, []byte(p)))
		return nil
	})
	// The writer answers a close frame; gorilla must not write.
	c.conn.SetCloseHandler(func(int, string) error { return nil })
	go c.read()
}

// extend moves the read deadline: a client may stay silent for pongWait.
func (c *client) extend() { _ = c.conn.SetReadDeadline(time.Now().Add(c.h.pongWait())) }

// read is the reader: it waits for the client's next message, handles
// it, and hands on to a fresh reader goroutine. Waiting in a read needs
// little stack (2 KiB) but handling a message (JSON, subscribing) needs
// more, and a stack that grew is not given back while its goroutine
// waits: so a goroutine that handled a message does not wait again. An
// idle connection is then little more than its reader's small stack.
// Messages are rare; a goroutine per message costs about a microsecond.
// The reader's share of Hub.wg passes from each reader to the next.
func (c *client) read() {
	_, r, err := c.conn.NextReader()
	if err == nil {
		err = c.readMessage(r)
	}
	if err != nil {
		c.stopReading(err)
		c.h.wg.Done()
		return
	}
	go c.read()
}

// readMessage reads and handles one message.
func (c *client) readMessage(r io.Reader) error {
	c.extend()
	bp := c.h.readBufs.Get().(*[]byte)
	defer c.h.readBufs.Put(bp)
	n, err := io.ReadFull(r, *bp)
	switch {
	case err == nil:
		// The message is longer than max_message_size: drop the rest, up
		// to the hard read limit.
		if _, err = io.Copy(io.Discard, r); err == nil {
			c.fail(codeTooLarge, "message exceeds the limit of "+strconv.Itoa(c.h.MaxMessageSize)+" bytes", "")
		}
		return err
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		c.handle((*bp)[:n])
		return nil
	}
	return err
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
	// A running writer ends the connection when it next looks; with none,
	// the reader does, on its way out.
	c.mu.Lock()
	c.stopped = true
	end := c.writer == writerIdle
	if end {
		c.writer = writerRunning
	}
	c.mu.Unlock()
	if end {
		c.finish(false)
	}
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
