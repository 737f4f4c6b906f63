package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

const daemonPipeline = `
[devices.studio-a]
address  = "%s"
password = "pw"

[sources.publishers]
type     = "pearl_publisher_status"
interval = "%s"

[processors.changes]
type   = "dedup"
inputs = ["publishers"]

[processors.latest]
type   = "ttl_cache"
inputs = ["changes"]

[sinks.live]
type       = "websocket"
inputs     = ["latest"]
listen     = "127.0.0.1:%d"
jwt_secret = "%s"
`

// TestReloadKeepsClients runs pearld, changes its pipeline file and sends
// SIGHUP: the hub, unchanged, keeps its clients connected and they keep
// receiving changes from the reloaded source; a broken file then leaves the
// running version in place with a clear error.
func TestReloadKeepsClients(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{Password: "pw"})
	srv := pearltest.NewServer(dev)
	defer srv.Close()
	ports := freePorts(t, 2)
	dir := t.TempDir()
	file := filepath.Join(dir, "live.toml")
	write := func(interval string, extra string) {
		t.Helper()
		src := fmt.Sprintf(daemonPipeline, srv.URL, interval, ports[0], testSecret) + extra
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("200ms", "")
	d := startDaemon(t, "run", "--config", dir, "--status-addr", "127.0.0.1:"+strconv.Itoa(ports[1]))
	d.waitLog("pipeline started", 10*time.Second)

	token, err := mintToken(testSecret, "reload", "", "", []string{"realtime_data"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/", ports[0]), token)
	c.expect("connected", 5*time.Second)
	waitUntil(t, "the first poll", 5*time.Second, func() bool { return dev.Requests("/api/v2.0/channels") >= 1 })
	c.send(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "studio-a", "channel": "1"})
	c.expect("subscribed", 5*time.Second)
	if typ := c.next(5 * time.Second)["type"]; typ != "cached_data" {
		t.Fatalf("after subscribed: %v", typ)
	}

	flip := func(state string, started bool) {
		t.Helper()
		if err := dev.SetPublisherStatus("1", "0", pearltest.PublisherStatus{IsConfigured: true, Started: started, State: state}); err != nil {
			t.Fatal(err)
		}
		u := c.expect("data_update", 10*time.Second)
		pubs := u["data"].(map[string]any)["publishers"].([]any)
		if got := pubs[0].(map[string]any)["status"].(map[string]any)["state"]; got != state {
			t.Fatalf("update shows %v, want %s", got, state)
		}
	}

	// Change the source: the hub stays, the client stays connected.
	write("300ms", "")
	d.signal(syscall.SIGHUP)
	d.waitLog("reloaded pipelines", 10*time.Second)
	flip("started", true)

	// A broken file: the running version stays, the error is logged.
	write("300ms", "\n[sinks.extra]\ntype = \"websockets\"\ninputs = [\"latest\"]\n")
	d.signal(syscall.SIGHUP)
	d.waitLog(`unknown sink type \"websockets\"`, 10*time.Second)
	flip("stopped", false)

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/health = %d with a broken file, want 503", resp.StatusCode)
	}

	// The fixed file reloads cleanly; SIGTERM then closes the client with 1001.
	write("300ms", "")
	d.signal(syscall.SIGHUP)
	d.waitLog("trigger=SIGHUP files=1", 10*time.Second)
	d.signal(syscall.SIGTERM)
	expectClose(t, c.conn, websocket.CloseGoingAway)
	if err := d.wait(15 * time.Second); err != nil {
		t.Errorf("pearld exited with %v", err)
	}
}

// TestDrainWithStuckClient: a client that stops reading cannot hold up a
// shutdown: pearld closes everyone and exits within its shutdown timeout.
func TestDrainWithStuckClient(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{Password: "pw"})
	srv := pearltest.NewServer(dev)
	defer srv.Close()
	ports := freePorts(t, 2)
	dir := t.TempDir()
	src := fmt.Sprintf(daemonPipeline, srv.URL, "100ms", ports[0], testSecret)
	if err := os.WriteFile(filepath.Join(dir, "live.toml"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "run", "--config", dir, "--status-addr", "127.0.0.1:"+strconv.Itoa(ports[1]), "--shutdown-timeout", "3s")
	d.waitLog("pipeline started", 10*time.Second)
	token, err := mintToken(testSecret, "drain", "", "", []string{"realtime_data"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("ws://127.0.0.1:%d/", ports[0])
	// The stuck client subscribes and never reads again.
	stuck := dial(t, url, token)
	stuck.expect("connected", 5*time.Second)
	stuck.send(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "studio-a", "channel": "1"})
	good := dial(t, url, token)
	good.expect("connected", 5*time.Second)
	// Changes keep coming while the stuck client reads nothing.
	for i := range 20 {
		started := i%2 == 0
		state := map[bool]string{true: "started", false: "stopped"}[started]
		_ = dev.SetPublisherStatus("1", "0", pearltest.PublisherStatus{IsConfigured: true, Started: started, State: state})
		time.Sleep(120 * time.Millisecond)
	}
	start := time.Now()
	d.signal(syscall.SIGTERM)
	expectClose(t, good.conn, websocket.CloseGoingAway)
	if err := d.wait(10 * time.Second); err != nil {
		t.Errorf("pearld exited with %v", err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("shutdown took %s with a stuck client, want within the 3s timeout (and a little)", took)
	}
}

func expectClose(t *testing.T, conn *websocket.Conn, code int) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, code) {
				t.Errorf("connection ended with %v, want close %d", err, code)
			}
			return
		}
	}
}
