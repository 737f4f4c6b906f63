package restapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
	_ "github.com/pearld/pearld/engine/processors"
	_ "github.com/pearld/pearld/sinks/websocket"
	_ "github.com/pearld/pearld/sources/pearl"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// TestEndToEndControl runs a pipeline file with a fake Pearl polled every
// 5s, the hub and the REST API on one address, and checks that a control
// call through the REST API shows on a WebSocket subscription within a
// second: the call kicks the device's poller, which then polls fast until
// the publisher settled.
func TestEndToEndControl(t *testing.T) {
	const controlDelay = 400 * time.Millisecond
	dev := pearltest.NewDevice(pearltest.Options{Password: testPassword, ControlDelay: controlDelay})
	srv := pearltest.NewServer(dev)
	defer srv.Close()

	file := filepath.Join(t.TempDir(), "e2e.toml")
	src := fmt.Sprintf(`
[devices.studio-a]
address  = "%s"
password = "%s"

[sources.publishers]
type     = "pearl_publisher_status"
interval = "5s"

[processors.changes]
type   = "dedup"
inputs = ["publishers"]

[processors.latest]
type   = "ttl_cache"
inputs = ["changes"]

[sinks.live]
type       = "websocket"
inputs     = ["latest"]
listen     = "127.0.0.1:0"
jwt_secret = "%s"

[sinks.api]
type       = "rest_events"
inputs     = ["latest"]
listen     = "127.0.0.1:0"
jwt_secret = "%s"
`, srv.URL, testPassword, testSecret, testSecret)
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	e := engine.New(engine.Options{})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	addr := e.Listeners().Addr("127.0.0.1:0")
	if addr == nil {
		t.Fatal("no listener bound for 127.0.0.1:0")
	}
	base := "http://" + addr.String()
	httpc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer httpc.CloseIdleConnections()

	// A dashboard subscribes over the WebSocket, on the REST API's address.
	ws := dialHub(t, "ws://"+addr.String()+"/ws/realtime", readerToken(t))
	ws.expect("connected", 5*time.Second)
	if err := ws.conn.WriteJSON(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "studio-a", "channel": 1}); err != nil {
		t.Fatal(err)
	}
	ws.expect("subscribed", 5*time.Second)
	// The first poll runs at start; its state comes cached or as an update.
	if first := ws.next(5 * time.Second); first["type"] == "no_cached_data" {
		ws.expect("data_update", 5*time.Second)
	} else if first["type"] != "cached_data" {
		t.Fatalf("got %v, want the channel's state", first)
	}

	control := token(t, auth.Permissions{PublisherControl: true}, nil)
	post := func(path string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+control)
		resp, err := httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, body)
		}
	}

	// Start: starting, then started, each well before the next regular poll.
	posted := time.Now()
	post("/api/devices/studio-a/channels/1/publishers/0/control/start")
	state := ws.publisherState(t, "0", 5*time.Second)
	if state != "starting" && state != "started" {
		t.Fatalf("first update after start shows %q", state)
	}
	if after := time.Since(posted); after >= time.Second {
		t.Fatalf("the first update came %s after the start call, want under 1s", after)
	}
	t.Logf("%s after %s", state, time.Since(posted).Round(time.Millisecond))
	for state != "started" {
		state = ws.publisherState(t, "0", 5*time.Second)
		if d := time.Since(posted); d >= controlDelay+time.Second {
			t.Fatalf("started came %s after the start call: the poller did not poll fast", d)
		}
	}
	t.Logf("started after %s", time.Since(posted).Round(time.Millisecond))

	// Stop: a Pearl stops at once.
	posted = time.Now()
	post("/api/devices/studio-a/channels/1/publishers/0/control/stop")
	state = ws.publisherState(t, "0", 5*time.Second)
	if d := time.Since(posted); state != "stopped" || d >= time.Second {
		t.Fatalf("after stop: %q after %s, want stopped under 1s", state, d)
	}

	// The REST API saw the same events and serves the latest state.
	resp, err := httpc.Get(base + "/api/device-state/devices/studio-a/channels/1/publishers/status?token=" + readerToken(t))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Publishers []struct {
			ID     string
			Status struct{ State string }
		}
		Seq uint64
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st.Publishers) != 2 || st.Publishers[0].Status.State != "stopped" {
		t.Fatalf("state %+v, err %v", st, err)
	}
	resp, err = httpc.Get(base + "/api/realtime/events?device=studio-a&channel=1&token=" + readerToken(t))
	if err != nil {
		t.Fatal(err)
	}
	var events []struct {
		Seq  uint64
		Data struct {
			Publishers []struct{ Status struct{ State string } }
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&events)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for i, ev := range events {
		states = append(states, ev.Data.Publishers[0].Status.State)
		if i > 0 && ev.Seq <= events[i-1].Seq {
			t.Errorf("events not in seq order: %d after %d", ev.Seq, events[i-1].Seq)
		}
	}
	if got := strings.Join(states, " "); got != "stopped starting started stopped" {
		t.Errorf("stored states %q", got)
	}
	if events[len(events)-1].Seq != st.Seq {
		t.Errorf("latest state seq %d, newest event seq %d", st.Seq, events[len(events)-1].Seq)
	}
}

// hubClient is a WebSocket client of the hub.
type hubClient struct {
	t    *testing.T
	conn *gorilla.Conn
}

func dialHub(t *testing.T, url, tok string) *hubClient {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	conn, resp, err := gorilla.DefaultDialer.Dial(url, h)
	if err != nil {
		t.Fatalf("dialing %s: %v", url, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return &hubClient{t: t, conn: conn}
}

// next returns the next frame, failing after d.
func (c *hubClient) next(d time.Duration) map[string]any {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var m map[string]any
	if err := c.conn.ReadJSON(&m); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return m
}

func (c *hubClient) expect(typ string, d time.Duration) map[string]any {
	c.t.Helper()
	m := c.next(d)
	if m["type"] != typ {
		c.t.Fatalf("got frame %v, want type %q", m, typ)
	}
	return m
}

// publisherState reads the next data_update and returns the state of
// publisher id in it.
func (c *hubClient) publisherState(t *testing.T, id string, d time.Duration) string {
	t.Helper()
	u := c.expect("data_update", d)
	data, _ := u["data"].(map[string]any)
	pubs, _ := data["publishers"].([]any)
	for _, p := range pubs {
		p, _ := p.(map[string]any)
		if p["id"] == id {
			st, _ := p["status"].(map[string]any)
			state, _ := st["state"].(string)
			return state
		}
	}
	t.Fatalf("update %v lacks publisher %s", u, id)
	return ""
}
