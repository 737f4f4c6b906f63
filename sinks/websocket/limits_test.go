package websocket

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

func TestConnectionLimitPerIP(t *testing.T) {
	hs := newHarness(t, nil)
	var clients []*wsClient
	for range 25 {
		clients = append(clients, hs.connect(""))
	}
	c, _, err := hs.dial("/ws?token="+readToken(t), nil)
	if err != nil {
		t.Fatalf("26th handshake: %v", err)
	}
	expectClose(t, c, websocket.ClosePolicyViolation, reasonLimit)
	c.Close()
	if n := hs.metric("connections_total", resultLimit); n != 1 {
		t.Fatalf("limit refusals %v", n)
	}

	// A slot frees up when a client leaves.
	clients[0].c.Close()
	eventually(t, "the slot to free", func() bool { return hs.metric("connections") == 24 })
	hs.connect("")
}

func TestConnectionLimitBehindProxy(t *testing.T) {
	hs := newHarness(t, func(h *Hub) {
		h.MaxConnectionsPerIP = 1
		h.TrustedProxies = []string{"127.0.0.0/8"}
	})
	dial := func(client string) *websocket.Conn {
		c, _, err := hs.dial("/ws?token="+readToken(t), http.Header{"X-Forwarded-For": {client + ", 127.0.0.2"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	(&wsClient{t: t, c: dial("203.0.113.1")}).expect("connected")
	(&wsClient{t: t, c: dial("203.0.113.2")}).expect("connected")
	expectClose(t, dial("203.0.113.1"), websocket.ClosePolicyViolation, reasonLimit)
}

func TestClientIP(t *testing.T) {
	h := New()
	h.TrustedProxies = []string{"10.0.0.0/8", "192.0.2.1"}
	if err := h.validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote, xff, realIP, want string
	}{
		{"direct", "198.51.100.7:5000", "", "", "198.51.100.7"},
		{"untrusted peer's header ignored", "198.51.100.7:5000", "203.0.113.9", "", "198.51.100.7"},
		{"trusted proxy", "10.1.2.3:5000", "203.0.113.9", "", "203.0.113.9"},
		{"proxy chain", "192.0.2.1:5000", "203.0.113.9, 10.0.0.5", "", "203.0.113.9"},
		{"spoofed left entry", "10.1.2.3:5000", "1.1.1.1, 203.0.113.9", "", "203.0.113.9"},
		{"x-real-ip", "10.1.2.3:5000", "", "203.0.113.4", "203.0.113.4"},
		{"ipv4 in ipv6", "[::ffff:198.51.100.7]:5000", "", "", "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "/ws", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if tt.realIP != "" {
				r.Header.Set("X-Real-IP", tt.realIP)
			}
			if got := h.clientIP(r); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSubscriptionLimit(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	for i := range 50 {
		w.send(subscribe("device_health", "dev-"+strconv.Itoa(i), nil))
		w.expect("subscribed")
		w.expect("no_cached_data")
	}
	w.send(subscribe("device_health", "dev-50", nil))
	if m := w.expectError(codeLimit); m["subscriptionKey"] != "device_health:dev-50" {
		t.Fatalf("limit error %v", m)
	}
	// Subscribing again to a held key is not a new subscription.
	w.send(subscribe("device_health", "dev-0", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")
	w.sync()
}

func TestOrigins(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.AllowedOrigins = []string{"https://*.example.com", "http://localhost:5173"} })
	tests := []struct {
		origin string
		ok     bool
	}{
		{"https://dash.example.com", true},
		{"HTTPS://Dash.Example.com", true},
		{"http://localhost:5173", true},
		{"", true}, // not a browser
		{"https://evil.com", false},
		{"https://example.com.evil.com", false},
		{"http://dash.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			c, resp, err := hs.dial("/ws?token="+readToken(t), h)
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("origin accepted")
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("refusal: %v %v", resp, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			(&wsClient{t: t, c: c}).expect("connected")
		})
	}
}

func TestDevicesClaim(t *testing.T) {
	up := &stateUpstream{upstream{types: shippedTypes}}
	up.set(event("device_health", "lobby", "", 1, `{}`))
	hs := newHarness(t, nil, up)
	w := hs.connectToken(token(t, auth.Permissions{RealtimeData: true}, []string{"studio-*"}), "")
	w.send(subscribe("device_health", "studio-a", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")
	w.send(subscribe("device_health", "lobby", nil))
	w.expectError(codeForbidden)
	w.send(map[string]any{"type": "get_cached_data", "dataType": "device_health", "device": "lobby"})
	w.expectError(codeForbidden)
	hs.write(event("device_health", "lobby", "", 2, `{}`))
	w.sync()
}

func TestListStreams(t *testing.T) {
	up := &stateUpstream{upstream{types: shippedTypes}}
	up.set(event("device_health", "lobby", "", 1, `{}`))
	up.set(event("device_health", "studio-b", "", 2, `{}`))
	hs := newHarness(t, nil, up)
	all := hs.connectToken(token(t, auth.Permissions{Admin: true}, nil), "")
	some := hs.connectToken(token(t, auth.Permissions{RealtimeData: true}, []string{"studio-*"}), "")
	for _, d := range []string{"studio-a", "lobby"} {
		all.send(subscribe("publisher_status", d, 1))
		all.expect("subscribed")
		all.expect("no_cached_data")
	}
	some.send(subscribe("publisher_status", "studio-a", 1))
	some.expect("subscribed")
	some.expect("no_cached_data")

	streams := func(w *wsClient) map[string]any {
		w.send(`{"type":"list_streams"}`)
		return w.expect("stream_list")["streams"].(map[string]any)
	}
	got := streams(some)
	want := map[string]any{
		"publisher_status:studio-a:1": map[string]any{"subscribers": 2.0},
		"device_health:studio-b":      map[string]any{"subscribers": 0.0},
	}
	if !equalJSON(got, want) {
		t.Fatalf("restricted client sees %v, want %v", got, want)
	}
	if got := streams(all); len(got) != 4 {
		t.Fatalf("admin sees %v", got)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestSlowConsumerDropped(t *testing.T) {
	hs := newHarness(t, func(h *Hub) {
		h.SendQueue = 4
		// Long enough that the slow client's queue fills before a blocked
		// write times out, however loaded the machine.
		h.WriteTimeout = engine.Duration(2 * time.Second)
	})
	slow := hs.connect("")
	fast := hs.connect("")
	for _, w := range []*wsClient{slow, fast} {
		w.send(subscribe("device_health", "a", nil))
		w.expect("subscribed")
		w.expect("no_cached_data")
	}
	// The fast client reads everything while the slow one reads nothing;
	// big events fill the slow client's socket buffers, then its queue.
	data, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 256<<10)})
	const n = 200
	var count atomic.Int64
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for count.Load() < n {
			_ = fast.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, b, err := fast.c.ReadMessage()
			if err != nil {
				return
			}
			if strings.HasPrefix(string(b), `{"type":"data_update"`) {
				count.Add(1)
			}
		}
	}()
	for i := range n {
		hs.write(event("device_health", "a", "", uint64(i+1), string(data)))
		// Pace the writes on the fast client, so that only the slow one
		// can fall behind, whatever the scheduler does.
		for deadline := time.Now().Add(5 * time.Second); count.Load() < int64(i+1) && time.Now().Before(deadline); {
			select {
			case <-readerDone:
				if got := count.Load(); got < int64(i+1) {
					t.Fatalf("the fast client stopped after %d of %d events", got, n)
				}
			case <-time.After(time.Millisecond):
			}
		}
	}
	<-readerDone
	if got := count.Load(); got != n {
		t.Fatalf("the fast client received %d of %d events", got, n)
	}
	if d := hs.metric("slow"); d != 1 {
		t.Fatalf("slow clients dropped %v, want 1", d)
	}
	eventually(t, "the slow client to be gone", func() bool { return hs.metric("connections") == 1 })
}

func TestCloseSendsGoingAway(t *testing.T) {
	hs := newHarness(t, nil)
	var clients []*wsClient
	for range 3 {
		w := hs.connect("")
		w.send(subscribe("device_health", "a", nil))
		w.expect("subscribed")
		w.expect("no_cached_data")
		clients = append(clients, w)
	}
	hs.write(event("device_health", "a", "", 1, `{}`))
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- hs.hub.Close(ctx)
	}()
	for _, w := range clients {
		w.expect("data_update") // queued frames go out before the close
		expectClose(t, w.c, websocket.CloseGoingAway, reasonShutdown)
	}
	if err := <-done; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := hs.metric("connections"); n != 0 {
		t.Fatalf("connections gauge %v after Close", n)
	}
}

func TestInitValidation(t *testing.T) {
	tests := []struct {
		name      string
		configure func(h *Hub)
		want      string
	}{
		{"no secret", func(h *Hub) { h.JWTSecret = "" }, "HS256 needs a secret"},
		{"short secret", func(h *Hub) { h.JWTSecret = "short" }, "needs at least 32"},
		{"no listen", func(h *Hub) { h.Listen = "" }, "listen: required"},
		{"bad path", func(h *Hub) { h.Paths = []string{"ws"} }, `paths: "ws" is not a plain URL path`},
		{"send queue", func(h *Hub) { h.SendQueue = 0 }, "send_queue: must be at least 1"},
		{"message size", func(h *Hub) { h.MaxMessageSize = 10 }, "max_message_size"},
		{"history", func(h *Hub) { h.History = 0 }, "history: must be at least 1"},
		{"bad origin", func(h *Hub) { h.AllowedOrigins = []string{"https://[x"} }, "allowed_origins: bad pattern"},
		{"bad proxy", func(h *Hub) { h.TrustedProxies = []string{"proxy.local"} }, "trusted_proxies"},
		{"ping", func(h *Hub) { h.PingInterval = 0 }, "ping_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(auth.SecretEnv, "")
			h := New()
			h.JWTSecret = testSecret
			tt.configure(h)
			env, closeEnv := engine.NewEnv(engine.EnvOptions{Listeners: engine.NewListeners(nil)})
			defer closeEnv(t.Context())
			err := h.Init(env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPipelineConfig(t *testing.T) {
	reg := engine.NewRegistry()
	reg.Register(engine.KindSource, "fake", func() any { return &fakeSource{} })
	f, ok := engine.DefaultRegistry().Lookup(engine.KindSink, "websocket")
	if !ok {
		t.Fatal("websocket sink not registered")
	}
	reg.Register(engine.KindSink, "websocket", f)
	src := `
[sources.in]
type = "fake"

[sinks.live]
type = "websocket"
inputs = ["in"]
listen = ":4000"
jwt_secret = "` + testSecret + `"
algorithms = ["HS256", "RS256"]
issuer = "auth"
leeway = "5s"
send_queue = 64
allowed_origins = ["https://*.example.com"]
ping_interval = "10s"
`
	p, err := engine.Load("test.toml", []byte(src), engine.LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Component("live").Value.(*Hub)
	if h.Listen != ":4000" || h.JWTSecret != testSecret || h.Issuer != "auth" || h.Leeway.D() != 5*time.Second ||
		h.SendQueue != 64 || h.PingInterval.D() != 10*time.Second || len(h.Algorithms) != 2 ||
		h.MaxSubscriptions != 50 || h.History != 100 || len(h.Paths) != 3 {
		t.Fatalf("decoded %+v", h)
	}
	if _, err := engine.Load("bad.toml", []byte(src+"bogus = 1\n"), engine.LoadOptions{Registry: reg}); err == nil ||
		!strings.Contains(err.Error(), `unknown key "sinks.live.bogus"`) {
		t.Fatalf("unknown key: %v", err)
	}
}

type fakeSource struct{}

func (*fakeSource) Run(ctx context.Context, _ func(engine.Event)) error { <-ctx.Done(); return nil }
