package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

const testSecret = "an-end-to-end-test-secret-of-32-bytes-or-more"

// wsClient is a test client of the hub.
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

// next returns the next frame, failing after d.
func (c *wsClient) next(d time.Duration) map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var m map[string]any
	if err := c.conn.ReadJSON(&m); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return m
}

// expect returns the next frame, which must have the given type.
func (c *wsClient) expect(typ string, d time.Duration) map[string]any {
	c.t.Helper()
	m := c.next(d)
	if m["type"] != typ {
		c.t.Fatalf("got frame %v, want type %q", m, typ)
	}
	return m
}

// quiet asserts that no frame arrives within d.
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var m map[string]any
	if err := c.conn.ReadJSON(&m); err == nil {
		c.t.Fatalf("unexpected frame %v", m)
	}
}

func writePipeline(t *testing.T, src string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "e2e.toml")
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEndToEnd runs a pipeline file against a fake Pearl and checks what a
// WebSocket client sees: the cached state, a state flip with the wire
// protocol's shape, changes and seq, silence while only counters move, and
// one channels request per poll however many clients watch.
func TestEndToEnd(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{Password: "pw"})
	srv := pearltest.NewServer(dev)
	defer srv.Close()

	const interval = 100 * time.Millisecond
	file := writePipeline(t, fmt.Sprintf(`
[devices.studio-a]
address  = "%s"
password = "pw"

[sources.publishers]
type     = "pearl_publisher_status"
interval = "%s"

[sources.health]
type     = "pearl_device_health"
interval = "1s"

[processors.changes]
type   = "dedup"
inputs = ["publishers", "health"]

[processors.latest]
type   = "ttl_cache"
inputs = ["changes"]

[sinks.live]
type       = "websocket"
inputs     = ["latest"]
listen     = "127.0.0.1:0"
jwt_secret = "%s"
`, srv.URL, interval, testSecret))

	e := engine.New(engine.Options{})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = e.Stop(context.Background())
		}
	}()
	url := "ws://" + e.Listeners().Addr("127.0.0.1:0").String() + "/ws/realtime"
	token, err := mintToken(testSecret, "e2e", "End To End", "", []string{"realtime_data"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the first polls", 5*time.Second, func() bool { return dev.Requests("/api/v2.0/channels") >= 2 })

	const clients = 20
	var cs []*wsClient
	var cachedSeq float64
	for i := range clients {
		c := dial(t, url, token)
		conn := c.expect("connected", 5*time.Second)
		caps := conn["capabilities"].(map[string]any)
		if !strings.Contains(fmt.Sprint(caps["dataTypes"]), "publisher_status") {
			t.Fatalf("connected capabilities %v lack publisher_status", caps)
		}
		c.send(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "studio-a", "channel": 1})
		sub := c.expect("subscribed", 5*time.Second)
		if sub["subscriptionKey"] != "publisher_status:studio-a:1" {
			t.Fatalf("subscribed = %v", sub)
		}
		cached := c.expect("cached_data", 5*time.Second)
		if cached["cached"] != true {
			t.Fatalf("cached_data = %v", cached)
		}
		pubs := cached["data"].(map[string]any)["publishers"].([]any)
		if len(pubs) != 2 {
			t.Fatalf("cached publishers = %v", pubs)
		}
		if i == 0 {
			cachedSeq = cached["seq"].(float64)
		}
		cs = append(cs, c)
	}

	// One channels request per device per poll, whoever watches.
	dev.ResetCounters()
	start := time.Now()
	time.Sleep(10 * interval)
	polls := dev.Requests("/api/v2.0/channels")
	maxPolls := int(time.Since(start)/interval) + 1
	if polls < 5 || polls > maxPolls {
		t.Errorf("%d channels requests in %s at a %s interval with %d clients; want at most %d", polls, time.Since(start).Round(time.Millisecond), interval, clients, maxPolls)
	}

	// A state flip reaches every client with the protocol's shape.
	if err := dev.SetPublisherStatus("1", "0", pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "started"}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		u := c.expect("data_update", 5*time.Second)
		if i > 0 {
			continue
		}
		for _, k := range []string{"subscriptionKey", "dataType", "device", "channel", "data", "timestamp", "cached", "seq"} {
			if _, ok := u[k]; !ok {
				t.Errorf("data_update lacks %q: %v", k, u)
			}
		}
		if u["cached"] != false || u["device"] != "studio-a" || u["channel"] != "1" || u["dataType"] != "publisher_status" {
			t.Errorf("data_update header = %v", u)
		}
		if seq := u["seq"].(float64); seq <= cachedSeq {
			t.Errorf("seq %v does not grow past the cached %v", seq, cachedSeq)
		}
		if _, err := time.Parse(time.RFC3339Nano, u["timestamp"].(string)); err != nil {
			t.Errorf("timestamp %q is not ISO-8601: %v", u["timestamp"], err)
		}
		data := u["data"].(map[string]any)
		if data["device_id"] != "studio-a" || data["device_ip"] != "127.0.0.1" || data["channel"] != "1" || data["fetched_at"] == nil {
			t.Errorf("data = %v", data)
		}
		changes := data["changes"].([]any)
		if len(changes) != 1 {
			t.Fatalf("changes = %v, want one", changes)
		}
		ch := changes[0].(map[string]any)
		want := `{"changed_fields":["started","state"],"current":{"is_configured":true,"started":true,"state":"started"},"previous":{"is_configured":true,"started":false,"state":"stopped"},"publisher_id":"0"}`
		if got, _ := json.Marshal(ch); string(got) != want {
			t.Errorf("change =\n%s\nwant\n%s", got, want)
		}
	}

	// An SRT publisher that runs moves its counters on every poll: no events.
	if err := dev.SetPublisherStatus("1", "1", pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "started"}); err != nil {
		t.Fatal(err)
	}
	u := cs[0].expect("data_update", 5*time.Second)
	if fmt.Sprint(u["data"].(map[string]any)["changes"].([]any)[0].(map[string]any)["publisher_id"]) != "1" {
		t.Fatalf("update = %v", u)
	}
	before := dev.Requests("/api/v2.0/channels")
	cs[0].quiet(8 * interval)
	if dev.Requests("/api/v2.0/channels")-before < 4 {
		t.Fatal("the device was not polled while the client waited")
	}

	// Shutdown closes clients with 1001.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	stopped = true
	_ = cs[1].conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := cs[1].conn.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
				t.Errorf("after shutdown: %v, want close 1001", err)
			}
			break
		}
	}
}
