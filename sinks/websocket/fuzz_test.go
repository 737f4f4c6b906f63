package websocket

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

// FuzzClientFrame feeds client messages to the hub's message handler, the
// code that parses everything a client sends after the handshake. The
// input is up to maxFuzzMessages messages separated by NUL bytes (which
// JSON text cannot contain), handled in order by one fresh client of a hub
// that already holds events. Invariants, for every message:
//
//   - the handler does not panic and answers at least once (unless it has
//     closed the client for misbehaving);
//   - every frame it queues is one complete, final, unmasked text frame
//     whose payload is a JSON object with a string type;
//   - a message that is not JSON is answered with invalid_message;
//   - a subscribed or unsubscribed frame names a key that is exactly its
//     own parts, and that parses back into them (engine.ParseKey), so the
//     key a client gets data for is the key it was allowed;
//   - every subscribed, cached_data or data_update frame is of a device
//     the client's token allows, and the data_update frames of one answer have growing
//     seq values above the requested since;
//   - the client never holds more than max_subscriptions subscriptions.
//
// The hub's devices claim allows "studio-a" and "10.0.0.5"; it holds
// events of those, of "studio-b" and of "10.0.0.5:80" (device ids may
// contain ':', PROTOCOL.md), which the client must never see.
func FuzzClientFrame(f *testing.F) {
	for _, seed := range [][]byte{
		[]byte(`{"type":"ping"}`),
		[]byte(`{"type":"ping","timestamp":1732566672345}`),
		[]byte(`{"type":"ping","timestamp":{"a":[1,2,{"b":null}]}}`),
		[]byte(`{"type":"list_streams"}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":1}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":"1","since":2}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":"1","since":"1","epoch":7}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":"1","since":0,"epoch":"8"}`),
		[]byte(`{"type":"subscribe","dataType":"device_health","device":"10.0.0.5"}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-b","channel":1}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":1,"publisherId":"0"}`),
		[]byte(`{"type":"subscribe","dataType":"stream_quality","device":"studio-a"}`),
		[]byte(`{"type":"unsubscribe","dataType":"publisher_status","device":"studio-a","channel":1}`),
		[]byte(`{"type":"get_cached_data","dataType":"device_health","device":"studio-a"}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":1}` + "\x00" +
			`{"type":"unsubscribe","dataType":"publisher_status","device":"studio-a","channel":"1"}` + "\x00" +
			`{"type":"get_cached_data","dataType":"publisher_status","device":"studio-a","channel":1}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":-1}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":1.5}`),
		[]byte(`{"type":"subscribe","dataType":"publisher_status","device":"\u0000","channel":"x y"}`),
		[]byte(`{"type":"subscribe","dataType":["publisher_status"],"device":{}}`),
		[]byte(`{"type":"nope"}`),
		[]byte(`{"type":1}`),
		[]byte(`{}`),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`"ping"`),
		[]byte(`{"type":"ping"`),
		[]byte("\xff\xfe"),
		[]byte(""),
	} {
		f.Add(seed)
	}

	h := newFuzzHub(f)
	claims := &auth.Claims{Subject: "fuzz", Permissions: auth.Permissions{RealtimeData: true}, Devices: []string{"studio-a", "10.0.0.5"}}

	f.Fuzz(func(t *testing.T, input []byte) {
		c := newFuzzClient(h, claims)
		defer c.cleanup()
		for i, msg := range bytes.SplitN(input, []byte{0}, maxFuzzMessages) {
			c.handle(msg)
			frames, closing, _, _ := c.take()
			if err := checkAnswer(c, msg, flatten(frames), closing); err != nil {
				t.Fatalf("message %d %q: %v", i, msg, err)
			}
			if len(c.subs) > h.MaxSubscriptions {
				t.Fatalf("message %d: %d subscriptions, limit %d", i, len(c.subs), h.MaxSubscriptions)
			}
		}
	})
}

// maxFuzzMessages bounds the messages of one fuzz input, below the strike
// limit so that a client is never closed for misbehaving mid-input.
const maxFuzzMessages = strikeLimit

// TestFuzzClientFrameKeys are inputs FuzzClientFrame found or that pin its
// invariants down; each runs through the same checks.
func TestFuzzClientFrameKeys(t *testing.T) {
	h := newFuzzHub(t)
	claims := &auth.Claims{Subject: "fuzz", Permissions: auth.Permissions{RealtimeData: true}, Devices: []string{"studio-a", "10.0.0.5"}}
	for _, msg := range []string{
		`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":1}`,
		`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":"1","since":1}`,
		`{"type":"ping","timestamp":"x"}`,
		// The keys of these requests are other devices' keys: device
		// "10.0.0.5", channel "80", publisher "1" writes
		// publisher_status:10.0.0.5:80:1, the key of device "10.0.0.5:80"
		// channel "1".
		`{"type":"subscribe","dataType":"publisher_status","device":"10.0.0.5","channel":"80","publisherId":"1"}`,
		`{"type":"get_cached_data","dataType":"device_health","device":"10.0.0.5","channel":"80"}`,
		`{"type":"subscribe","dataType":"device_health","device":"studio-a:x"}`,
		`{"type":"subscribe","dataType":"publisher_status","device":"studio-a","channel":"1:0"}`,
		`{"type":"unsubscribe","dataType":"publisher_status","device":"studio-b:1"}`,
	} {
		t.Run(msg, func(t *testing.T) {
			c := newFuzzClient(h, claims)
			defer c.cleanup()
			c.handle([]byte(msg))
			frames, closing, _, _ := c.take()
			if err := checkAnswer(c, []byte(msg), flatten(frames), closing); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// newFuzzHub returns an initialised hub, not listening, that holds events
// of four devices.
func newFuzzHub(tb testing.TB) *Hub {
	h := New()
	h.Listen = "127.0.0.1:0"
	h.JWTSecret = testSecret
	h.MaxSubscriptions = 4
	h.History = 3
	env, closeEnv := engine.NewEnv(engine.EnvOptions{
		Pipeline: "fuzz", Name: "live", Type: "websocket",
		Upstream:  []any{&upstream{types: shippedTypes}},
		Listeners: engine.NewListeners(nil), Epoch: testEpoch, Metrics: prometheus.NewRegistry(),
	})
	if err := h.Init(env); err != nil {
		tb.Fatalf("Init: %v", err)
	}
	tb.Cleanup(func() {
		_ = h.Close(context.Background())
		closeEnv(context.Background())
	})
	var seq uint64
	for _, dev := range []string{"studio-a", "studio-b", "10.0.0.5", "10.0.0.5:80"} {
		for round := range 5 {
			seq++
			data := fmt.Sprintf(`{"device_id":%q,"round":%d}`, dev, round)
			evs := []engine.Event{
				event("device_health", dev, "", seq, data),
				event("publisher_status", dev, "1", seq+1000, data),
				event("publisher_status", dev, "80", seq+2000, data),
			}
			err := h.Write(context.Background(), evs)
			switch colon := strings.Contains(dev, ":"); {
			case colon && err == nil:
				// The key of device "10.0.0.5:80" channel "1" is also that
				// of device "10.0.0.5" channel "80" publisher "1".
				tb.Fatalf("Write accepted events of device %q, whose keys are other devices' keys", dev)
			case !colon && err != nil:
				tb.Fatalf("Write: %v", err)
			}
		}
	}
	return h
}

// newFuzzClient returns a client of h that is not connected: its frames
// stay queued, where the fuzz target reads them with take.
func newFuzzClient(h *Hub, claims *auth.Claims) *client {
	return &client{
		h: h, id: "fuzz", ip: "192.0.2.1", claims: claims,
		wake: make(chan struct{}, 1), readDone: make(chan struct{}),
		subs: map[string]*subscription{},
	}
}

// cleanup removes the client's subscriptions from the hub, as its reader
// does when it stops.
func (c *client) cleanup() {
	for _, s := range c.subs {
		c.h.unsubscribe(s)
	}
}

// checkAnswer checks the frames queued in answer to msg.
func checkAnswer(c *client, msg []byte, frames []*frame, closing bool) error {
	if len(frames) == 0 && !closing {
		return fmt.Errorf("no answer")
	}
	var req struct {
		Since json.RawMessage `json:"since"`
	}
	_ = json.Unmarshal(msg, &req)
	since := uint64(0)
	if s, err := strconv.ParseUint(string(bytes.Trim(bytes.TrimSpace(req.Since), `"`)), 10, 64); err == nil {
		since = s
	}
	lastSeq := uint64(0)
	for i, f := range frames {
		payload, err := parseServerFrame(f.wire)
		if err != nil {
			return fmt.Errorf("frame %d: %v", i, err)
		}
		var m struct {
			Type            string  `json:"type"`
			Code            string  `json:"code"`
			SubscriptionKey string  `json:"subscriptionKey"`
			DataType        string  `json:"dataType"`
			Device          string  `json:"device"`
			Channel         *string `json:"channel"`
			PublisherID     *string `json:"publisherId"`
			Seq             uint64  `json:"seq"`
		}
		if !json.Valid(payload) || json.Unmarshal(payload, &m) != nil || m.Type == "" {
			return fmt.Errorf("frame %d is not a JSON object with a type: %q", i, payload)
		}
		if i == 0 && !json.Valid(msg) && (m.Type != "error" || m.Code != codeInvalidMessage) {
			return fmt.Errorf("a message that is not JSON got %s", payload)
		}
		switch m.Type {
		case "subscribed", "unsubscribed", "cached_data", "data_update":
			parts := engine.KeyParts{Type: m.DataType, Device: m.Device, Channel: deref(m.Channel), Publisher: deref(m.PublisherID)}
			if key := engine.MakeKey(parts.Type, parts.Device, parts.Channel, parts.Publisher); key != m.SubscriptionKey {
				return fmt.Errorf("frame %s: key %q is not its parts' %q", payload, m.SubscriptionKey, key)
			}
			if back, err := engine.ParseKey(m.SubscriptionKey); err != nil || back != parts {
				return fmt.Errorf("frame %s: key %q parses as %+v (%v), not as its own parts %+v", payload, m.SubscriptionKey, back, err, parts)
			}
			if m.Type != "unsubscribed" && !c.claims.AllowsDevice(m.Device) {
				return fmt.Errorf("frame %s: device %q is not allowed by the token", payload, m.Device)
			}
		}
		if m.Type == "data_update" {
			if m.Seq <= since || m.Seq <= lastSeq {
				return fmt.Errorf("data_update seq %d after seq %d, since %d", m.Seq, lastSeq, since)
			}
			lastSeq = m.Seq
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parseServerFrame checks that wire is exactly one final, unmasked text
// frame with a minimal length encoding (RFC 6455 5.2) and returns its
// payload.
func parseServerFrame(wire []byte) ([]byte, error) {
	if len(wire) < 2 {
		return nil, fmt.Errorf("frame of %d bytes", len(wire))
	}
	if wire[0] != 0x80|opText {
		return nil, fmt.Errorf("first byte %#x, want a final text frame", wire[0])
	}
	if wire[1]&0x80 != 0 {
		return nil, fmt.Errorf("masked server frame")
	}
	n, rest := uint64(wire[1]&0x7f), wire[2:]
	switch n {
	case 126:
		if len(rest) < 2 {
			return nil, fmt.Errorf("short 16-bit length")
		}
		n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
		if n <= 125 {
			return nil, fmt.Errorf("length %d not minimally encoded", n)
		}
	case 127:
		if len(rest) < 8 {
			return nil, fmt.Errorf("short 64-bit length")
		}
		n, rest = binary.BigEndian.Uint64(rest), rest[8:]
		if n <= 0xFFFF || n>>63 != 0 {
			return nil, fmt.Errorf("length %d not minimally encoded", n)
		}
	}
	if uint64(len(rest)) != n {
		return nil, fmt.Errorf("header says %d payload bytes, frame has %d", n, len(rest))
	}
	return rest, nil
}

// TestStateReaderAhead is what the chaos test (test/chaos) found: the
// upstream StateReader (ttl_cache) is ahead of the hub by the events still
// on their way (a batch processor holds them for max_delay). A client
// that subscribes in that window gets the newer state as cached_data; the
// events it already has must not follow as data_update frames (twice, or
// older after newer), and a resume from that state is not a loss.
func TestStateReaderAhead(t *testing.T) {
	up := &stateUpstream{upstream{types: shippedTypes}}
	hs := newHarness(t, nil, up)
	e := func(seq uint64) engine.Event {
		return event("device_health", "a", "", seq, fmt.Sprintf(`{"n":%d}`, seq))
	}
	hs.write(e(1))
	up.set(e(1))
	// Events 2 and 3 reached the cache, not yet the hub.
	up.set(e(2))
	up.set(e(3))

	w := hs.connect("")
	w.send(subscribe("device_health", "a", nil))
	w.expect("subscribed")
	if m := w.expect("cached_data"); m["seq"] != 3.0 {
		t.Fatalf("cached_data %v, want seq 3", m)
	}
	hs.write(e(2), e(3)) // they arrive: the client has them
	up.set(e(4))
	hs.write(e(4))
	if m := w.expect("data_update"); m["seq"] != 4.0 {
		t.Fatalf("after cached seq 3 got %v, want seq 4", m)
	}
	w.sync()

	// A client that got seq 6 from the cache and resumes before seq 6
	// reached the hub has missed nothing.
	up.set(e(5))
	up.set(e(6))
	r := hs.connect("")
	r.send(map[string]any{"type": "subscribe", "dataType": "device_health", "device": "a", "since": 6, "epoch": testEpoch})
	r.expect("subscribed")
	r.sync() // no cached_data with recovered:false, no replay
	hs.write(e(5), e(6))
	up.set(e(7))
	hs.write(e(7))
	if m := r.expect("data_update"); m["seq"] != 7.0 {
		t.Fatalf("after resuming from seq 6 got %v, want seq 7", m)
	}

	// get_cached_data of a subscribed key moves its floor the same way.
	up.set(e(8))
	w.send(map[string]any{"type": "get_cached_data", "dataType": "device_health", "device": "a"})
	if m := w.expect("data_update"); m["seq"] != 5.0 {
		t.Fatalf("got %v, want the data_update of seq 5", m)
	}
	w.expect("data_update") // 6
	w.expect("data_update") // 7
	if m := w.expect("cached_data"); m["seq"] != 8.0 {
		t.Fatalf("get_cached_data %v, want seq 8", m)
	}
	hs.write(e(8))
	up.set(e(9))
	hs.write(e(9))
	if m := w.expect("data_update"); m["seq"] != 9.0 {
		t.Fatalf("after cached seq 8 got %v, want seq 9", m)
	}
}
