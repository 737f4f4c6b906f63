package websocket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testSecret = "0123456789abcdef0123456789abcdef-hub"
	testEpoch  = 7
)

// upstream is a fake component upstream of the hub: it declares data
// types and, unless states is nil, holds latest state like ttl_cache.
type upstream struct {
	types []string
	mu    sync.Mutex
	state map[string]engine.Event
}

func (u *upstream) DataTypes() []string { return u.types }

// stateUpstream is an upstream that is also a StateReader.
type stateUpstream struct{ upstream }

func (u *stateUpstream) Latest(key string) (engine.Event, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.state[key]
	return e, ok
}

func (u *stateUpstream) Keys() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var keys []string
	for k := range u.state {
		keys = append(keys, k)
	}
	return keys
}

func (u *stateUpstream) set(e engine.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state == nil {
		u.state = map[string]engine.Event{}
	}
	u.state[e.Key()] = e
}

var shippedTypes = []string{"publisher_status", "device_health"}

type harness struct {
	t   testing.TB
	hub *Hub
	url string
	reg *prometheus.Registry
}

// newHarness starts a hub on a free port; configure adjusts its config.
func newHarness(t testing.TB, configure func(h *Hub), up ...any) *harness {
	t.Helper()
	if up == nil {
		up = []any{&upstream{types: shippedTypes}}
	}
	hub := New()
	hub.Listen = "127.0.0.1:0"
	hub.JWTSecret = testSecret
	if configure != nil {
		configure(hub)
	}
	reg := prometheus.NewRegistry()
	ls := engine.NewListeners(nil)
	env, closeEnv := engine.NewEnv(engine.EnvOptions{
		Pipeline: "test", Name: "live", Type: "websocket",
		Upstream: up, Listeners: ls, Epoch: testEpoch, Metrics: reg,
	})
	if err := hub.Init(env); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := ls.Start(); err != nil {
		t.Fatalf("starting listeners: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		ls.Shutdown(ctx)
		closeEnv(ctx)
	})
	return &harness{t: t, hub: hub, url: "ws://" + ls.Addr("127.0.0.1:0").String(), reg: reg}
}

func token(t testing.TB, perms auth.Permissions, devices []string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testSecret), auth.MintOptions{
		Subject: "dash", Name: "Dash Board", Email: "dash@example.com",
		Permissions: perms, Devices: devices, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func readToken(t testing.TB) string { return token(t, auth.Permissions{RealtimeData: true}, nil) }

// dial connects to path with header; the handshake result is returned
// as is.
func (hs *harness) dial(path string, header http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(hs.url+path, header)
}

type wsClient struct {
	t         testing.TB
	c         *websocket.Conn
	connected map[string]any
}

// connect dials with a read token in the query and reads `connected`.
func (hs *harness) connect(query string) *wsClient {
	hs.t.Helper()
	return hs.connectToken(readToken(hs.t), query)
}

func (hs *harness) connectToken(tok, query string) *wsClient {
	hs.t.Helper()
	path := "/ws?token=" + tok
	if query != "" {
		path += "&" + query
	}
	c, _, err := hs.dial(path, nil)
	if err != nil {
		hs.t.Fatalf("dial: %v", err)
	}
	hs.t.Cleanup(func() { c.Close() })
	w := &wsClient{t: hs.t, c: c}
	w.connected = w.expect("connected")
	return w
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	var b []byte
	switch v := v.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := w.c.WriteMessage(websocket.TextMessage, b); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

// readRaw returns the next message's text.
func (w *wsClient) readRaw() string {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := w.c.ReadMessage()
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return string(b)
}

func (w *wsClient) read() map[string]any {
	w.t.Helper()
	raw := w.readRaw()
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		w.t.Fatalf("frame %s: %v", raw, err)
	}
	return m
}

func (w *wsClient) expect(typ string) map[string]any {
	w.t.Helper()
	m := w.read()
	if m["type"] != typ {
		w.t.Fatalf("got %v, want a %s frame", m, typ)
	}
	return m
}

// expectError reads an error frame with code.
func (w *wsClient) expectError(code string) map[string]any {
	w.t.Helper()
	m := w.expect("error")
	if m["code"] != code {
		w.t.Fatalf("error %v, want code %s", m, code)
	}
	return m
}

// sync proves that nothing else is queued: everything the hub queued
// before the ping is read before the pong.
func (w *wsClient) sync() {
	w.t.Helper()
	w.send(map[string]any{"type": "ping", "timestamp": "sync"})
	if m := w.read(); m["type"] != "pong" || m["timestamp"] != "sync" {
		w.t.Fatalf("got %v, want the pong", m)
	}
}

// expectClose reads until the connection closes and checks the close.
func expectClose(t testing.TB, c *websocket.Conn, code int, reason string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("read error %v, want close %d %q", err, code, reason)
		}
		if ce.Code != code || ce.Text != reason {
			t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Text, code, reason)
		}
		return
	}
}

func subscribe(dataType, device string, channel any) map[string]any {
	m := map[string]any{"type": "subscribe", "dataType": dataType, "device": device}
	if channel != nil {
		m["channel"] = channel
	}
	return m
}

var baseTime = time.Date(2026, 11, 25, 20, 31, 12, 345e6, time.UTC)

func event(typ, device, channel string, seq uint64, data string) engine.Event {
	return engine.Event{Type: typ, Device: device, Channel: channel, Seq: seq,
		Time: baseTime.Add(time.Duration(seq) * time.Second), Data: json.RawMessage(data)}
}

func (hs *harness) write(events ...engine.Event) {
	hs.t.Helper()
	if err := hs.hub.Write(context.Background(), events); err != nil {
		hs.t.Fatalf("Write: %v", err)
	}
}

// eventually polls cond for up to 5s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func seqs(frames []map[string]any) []uint64 {
	var out []uint64
	for _, f := range frames {
		out = append(out, uint64(f["seq"].(float64)))
	}
	return out
}

// metric returns the value of a hub metric.
func (hs *harness) metric(name string, labels ...string) float64 {
	hs.t.Helper()
	var c prometheus.Metric
	m := hs.hub.metrics
	switch name {
	case "connections":
		c = m.connections
	case "connections_total":
		c = m.connTotal.WithLabelValues(labels...)
	case "sent":
		c = m.sent
	case "slow":
		c = m.slowDropped
	case "subscriptions":
		c = m.subscriptions
	}
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		hs.t.Fatal(err)
	}
	if out.Gauge != nil {
		return out.Gauge.GetValue()
	}
	return out.Counter.GetValue()
}
