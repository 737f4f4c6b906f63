package websocket

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pearld/pearld/engine"
)

// The hub frames its messages itself so that an event is encoded once and
// its bytes are copied, not re-framed, into every subscriber's output
// buffer, and so that a writer can send everything queued for its client
// with one write call. gorilla/websocket still does the handshake, all
// reading, and any close frame it sends on a protocol error. Server frames
// are simple (RFC 6455 5.2): unmasked, never fragmented, never compressed.

// WebSocket opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// maxHeader is the longest header of an unmasked frame.
const maxHeader = 10

// frame is one server message, framed for the wire. A frame is immutable
// once built and shared by every client it is queued to.
type frame struct {
	wire  []byte // the complete frame: header and payload
	body  int    // offset of the payload in wire
	seq   uint64 // the event's Seq, for data_update frames
	event bool   // a data_update, which batch clients get inside batch frames
	// group, when set, makes this a queue entry for several frames sent in
	// order (a resume's replay), so that a replay takes one slot of the
	// client's send queue. wire is then empty.
	group []*frame
}

// flatten expands groups; it allocates only when there is one.
func flatten(frames []*frame) []*frame {
	n, grouped := 0, false
	for _, f := range frames {
		if f.group != nil {
			n += len(f.group)
			grouped = true
		} else {
			n++
		}
	}
	if !grouped {
		return frames
	}
	out := make([]*frame, 0, n)
	for _, f := range frames {
		if f.group != nil {
			out = append(out, f.group...)
		} else {
			out = append(out, f)
		}
	}
	return out
}

// payload returns the frame's payload: a JSON text for text frames.
func (f *frame) payload() []byte { return f.wire[f.body:] }

func headerLen(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// appendHeader appends the header of a final, unmasked frame carrying n
// payload bytes.
func appendHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
}

// newTextBuffer returns a buffer for building a text frame: maxHeader
// reserved bytes, then room for a payload of about size bytes.
func newTextBuffer(size int) []byte { return make([]byte, maxHeader, maxHeader+size) }

// textFrame turns a buffer from newTextBuffer, with its payload appended,
// into a frame, writing the header into the reserved bytes without a copy.
func textFrame(buf []byte) *frame {
	n := len(buf) - maxHeader
	start := maxHeader - headerLen(n)
	appendHeader(buf[start:start], opText, n)
	return &frame{wire: buf[start:], body: maxHeader - start}
}

// jsonFrame encodes v as a text frame. It is for the small, per-client
// messages; events use eventFrame.
func jsonFrame(v any) *frame {
	js, err := json.Marshal(v)
	if err != nil {
		// Only the hub's own message types are encoded here; they always
		// marshal.
		panic("websocket: encoding message: " + err.Error())
	}
	return textFrame(append(newTextBuffer(len(js)), js...))
}

// controlFrame builds a ping, pong or close frame.
func controlFrame(op byte, payload []byte) *frame {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	b := appendHeader(make([]byte, 0, 2+len(payload)), op, len(payload))
	return &frame{wire: append(b, payload...), body: 2}
}

// closeFrame builds a close frame with a status code and a reason.
func closeFrame(code int, reason string) *frame {
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return controlFrame(opClose, append(p, reason...))
}

var pingFrame = controlFrame(opPing, nil)

// Message types of events.
const (
	typeDataUpdate = "data_update"
	typeCachedData = "cached_data"
)

// eventFrame encodes an event as a data_update or cached_data frame:
//
//	{"type":"data_update","subscriptionKey":"publisher_status:studio-a:1",
//	 "dataType":"publisher_status","device":"studio-a","channel":"1",
//	 "publisherId":null,"data":{...},"timestamp":"2026-11-25T20:31:12.345Z",
//	 "cached":false,"seq":42}
//
// recovered adds `"recovered":false` (a resume that could not be served).
// e.Data must be valid JSON; empty Data is sent as null.
func eventFrame(msgType, key string, e *engine.Event, recovered bool) *frame {
	b := newTextBuffer(len(e.Data) + len(key)*2 + 192)
	b = append(b, `{"type":"`...)
	b = append(b, msgType...)
	b = append(b, `","subscriptionKey":`...)
	b = appendString(b, key)
	b = append(b, `,"dataType":`...)
	b = appendString(b, e.Type)
	b = append(b, `,"device":`...)
	b = appendString(b, e.Device)
	b = append(b, `,"channel":`...)
	b = appendOptString(b, e.Channel)
	b = append(b, `,"publisherId":`...)
	b = appendOptString(b, e.Publisher)
	b = append(b, `,"data":`...)
	if len(e.Data) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Data...)
	}
	b = append(b, `,"timestamp":"`...)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	if msgType == typeCachedData {
		b = append(b, `","cached":true`...)
	} else {
		b = append(b, `","cached":false`...)
	}
	if recovered {
		b = append(b, `,"recovered":false`...)
	}
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, '}')
	f := textFrame(b)
	f.seq = e.Seq
	f.event = msgType == typeDataUpdate
	return f
}

const batchPrefix = `{"type":"batch","events":[`

// appendBatch appends one text frame holding the payloads of events, in
// order: {"type":"batch","events":[...]}.
func appendBatch(b []byte, events []*frame) []byte {
	n := len(batchPrefix) + len(events) - 1 + len("]}")
	for _, f := range events {
		n += len(f.wire) - f.body
	}
	b = appendHeader(b, opText, n)
	b = append(b, batchPrefix...)
	for i, f := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.payload()...)
	}
	return append(b, "]}"...)
}

// appendOptString appends s as a JSON string, or null when it is empty.
func appendOptString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// like encoding/json.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isoTime formats t like JavaScript's Date.toISOString.
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
