package webhook_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
	_ "github.com/pearld/pearld/engine/processors"
	_ "github.com/pearld/pearld/sinks/websocket"
	_ "github.com/pearld/pearld/sources/webhook"
)

const (
	e2eSecret = "an-end-to-end-webhook-secret-of-32-bytes-or-more"
	e2eKey    = "the-backend-service-key-0123456789"
	hubAddr   = "127.0.0.1:0"
	// statusAddr differs from hubAddr as a string, so the engine binds a
	// second server for it.
	statusAddr = "localhost:0"
)

// TestEndToEnd runs webhook -> dedup -> ttl_cache -> websocket through the
// engine, with the webhook on the engine's status listener: an
// authenticated POST reaches a WebSocket client subscribed to a data type
// no source declares, refused posts and exact repeats reach no one, and a
// late subscriber gets the cached state.
func TestEndToEnd(t *testing.T) {
	t.Setenv(auth.SecretEnv, "")
	file := filepath.Join(t.TempDir(), "ingest.toml")
	pipeline := fmt.Sprintf(`
[sources.ingest]
type         = "webhook"
service_keys = ["${WEBHOOK_KEY}"]
jwt_secret   = "%[1]s"
max_body     = 1024

[processors.changes]
type   = "dedup"
inputs = ["ingest"]

[processors.latest]
type   = "ttl_cache"
inputs = ["changes"]

[sinks.live]
type       = "websocket"
inputs     = ["latest"]
listen     = "%[2]s"
jwt_secret = "%[1]s"
`, e2eSecret, hubAddr)
	if err := os.WriteFile(file, []byte(pipeline), 0o600); err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.Options{
		StatusAddr: statusAddr,
		LookupEnv: func(k string) (string, bool) {
			if k == "WEBHOOK_KEY" {
				return e2eKey, true
			}
			return "", false
		},
	})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	status := "http://" + e.Listeners().Addr(statusAddr).String()
	hook := status + "/webhook/event"
	wsURL := "ws://" + e.Listeners().Addr(hubAddr).String() + "/ws/realtime"

	read := mintToken(t, auth.Permissions{RealtimeData: true})
	admin := mintToken(t, auth.Permissions{Admin: true})
	c := dial(t, wsURL, read)
	c.expect("connected")
	c.send(map[string]any{"type": "subscribe", "dataType": "encoder_alarm", "device": "studio-z"})
	if m := c.expect("subscribed"); m["subscriptionKey"] != "encoder_alarm:studio-z" {
		t.Fatalf("subscribed = %v", m)
	}
	c.expect("no_cached_data")

	alarm := `{"type":"encoder_alarm","device":"studio-z","data":{"level":"critical","message":"fan failure"},"timestamp":"2026-11-25T20:31:12.345Z"}`
	for _, r := range []struct {
		name   string
		header map[string]string
		body   string
		want   int
	}{
		{"unauthenticated", nil, alarm, http.StatusUnauthorized},
		{"reader token", map[string]string{"Authorization": "Bearer " + read}, alarm, http.StatusForbidden},
		{"wrong service key", map[string]string{"X-Service-Key": e2eKey + "-not"}, alarm, http.StatusUnauthorized},
		{"malformed", map[string]string{"X-Service-Key": e2eKey}, `{"type":"encoder_alarm","device":`, http.StatusBadRequest},
		{"oversized", map[string]string{"X-Service-Key": e2eKey},
			`{"type":"encoder_alarm","device":"studio-z","data":{"pad":"` + strings.Repeat("x", 2000) + `"}}`, http.StatusRequestEntityTooLarge},
	} {
		if got := post(t, hook, r.header, r.body); got != r.want {
			t.Errorf("%s: %d, want %d", r.name, got, r.want)
		}
	}
	c.quiet(300 * time.Millisecond)

	if got := post(t, hook, map[string]string{"Authorization": "Bearer " + admin}, alarm); got != http.StatusAccepted {
		t.Fatalf("admin post: %d", got)
	}
	u := c.expect("data_update")
	if u["subscriptionKey"] != "encoder_alarm:studio-z" || u["dataType"] != "encoder_alarm" || u["device"] != "studio-z" ||
		u["channel"] != nil || u["timestamp"] != "2026-11-25T20:31:12.345Z" || u["cached"] != false || u["seq"] == nil {
		t.Fatalf("data_update = %v", u)
	}
	if d := u["data"].(map[string]any); d["level"] != "critical" || d["message"] != "fan failure" {
		t.Fatalf("data = %v", d)
	}

	// An exact repeat is a state already known: dedup drops it.
	if got := post(t, hook, map[string]string{"X-Service-Key": e2eKey}, alarm); got != http.StatusAccepted {
		t.Fatalf("repeat: %d", got)
	}
	c.quiet(300 * time.Millisecond)
	cleared := `{"type":"encoder_alarm","device":"studio-z","data":{"level":"ok"}}`
	if got := post(t, hook, map[string]string{"X-Service-Key": e2eKey}, cleared); got != http.StatusAccepted {
		t.Fatalf("service key post: %d", got)
	}
	if u2 := c.expect("data_update"); u2["data"].(map[string]any)["level"] != "ok" || u2["seq"].(float64) <= u["seq"].(float64) {
		t.Fatalf("second data_update = %v after seq %v", u2, u["seq"])
	}

	// A late subscriber gets the latest state from the cache.
	late := dial(t, wsURL, read)
	late.expect("connected")
	late.send(map[string]any{"type": "subscribe", "dataType": "encoder_alarm", "device": "studio-z"})
	late.expect("subscribed")
	if m := late.expect("cached_data"); m["data"].(map[string]any)["level"] != "ok" {
		t.Fatalf("cached_data = %v", m)
	}

	// The refusals are counted by reason on /metrics.
	resp, err := http.Get(status + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`pearld_webhook_requests_total{component="ingest",pipeline="ingest",result="accepted"} 3`,
		`pearld_webhook_requests_total{component="ingest",pipeline="ingest",result="unauthenticated"} 2`,
		`pearld_webhook_requests_total{component="ingest",pipeline="ingest",result="forbidden"} 1`,
		`pearld_webhook_requests_total{component="ingest",pipeline="ingest",result="malformed"} 1`,
		`pearld_webhook_requests_total{component="ingest",pipeline="ingest",result="too_large"} 1`,
	} {
		if !strings.Contains(string(metrics), line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

func mintToken(t *testing.T, perms auth.Permissions) string {
	t.Helper()
	tok, err := auth.Mint([]byte(e2eSecret), auth.MintOptions{Subject: "e2e", Permissions: perms, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// post sends a JSON body and returns the status code.
func post(t *testing.T, url string, header map[string]string, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
}

func dial(t *testing.T, url, token string) *wsClient {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	conn, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		t.Fatalf("dialing %s: %v", url, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("sending: %v", err)
	}
}

func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var m map[string]any
	if err := c.conn.ReadJSON(&m); err != nil {
		c.t.Fatalf("reading a %s frame: %v", typ, err)
	}
	if m["type"] != typ {
		c.t.Fatalf("got frame %v, want type %q", m, typ)
	}
	return m
}

// quiet asserts that nothing arrives within d: after d, a ping's pong must
// be the next frame. (A read deadline cannot be used: gorilla's
// connection is unusable after a read times out.)
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	time.Sleep(d)
	c.send(map[string]any{"type": "ping", "timestamp": "quiet"})
	if m := c.expect("pong"); m["timestamp"] != "quiet" {
		c.t.Fatalf("pong = %v", m)
	}
}
