package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// shippedPlugins builds the shipped plugins, as `make build` does, into
// DIR/bin/plugins and returns DIR.
func shippedPlugins(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "plugins")+"/", "../../plugins/stream_quality").CombinedOutput()
	if err != nil {
		t.Fatalf("building stream_quality: %v\n%s", err, out)
	}
	return root
}

// TestStreamQualityEndToEnd is the plugin's acceptance test: a pipeline
// with the stream_quality plugin delivers stream_quality:<device>:<channel>
// updates to a WebSocket client when an SRT publisher starts.
func TestStreamQualityEndToEnd(t *testing.T) {
	root := shippedPlugins(t)

	dev := pearltest.NewDevice(pearltest.Options{Password: "pw"})
	srv := pearltest.NewServer(dev)
	defer srv.Close()
	file := writePipeline(t, fmt.Sprintf(`
[devices.studio-a]
address  = "%s"
password = "pw"

[sources.quality]
type      = "plugin"
plugin    = "stream_quality"
interval  = "100ms"
threshold = 0.5

[processors.latest]
type   = "ttl_cache"
inputs = ["quality"]

[sinks.live]
type       = "websocket"
inputs     = ["latest"]
listen     = "127.0.0.1:0"
jwt_secret = "%s"
`, srv.URL, testSecret))
	e := engine.New(engine.Options{PluginsDir: filepath.Join(root, "bin", "plugins")})
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
	token, err := mintToken(testSecret, "e2e", "End To End", "", []string{"realtime_data"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, "ws://"+e.Listeners().Addr("127.0.0.1:0").String()+"/ws/realtime", token)
	conn := c.expect("connected", 5*time.Second)
	if types := fmt.Sprint(conn["capabilities"].(map[string]any)["dataTypes"]); !strings.Contains(types, "stream_quality") {
		t.Fatalf("capabilities lack stream_quality: %s", types)
	}
	c.send(map[string]any{"type": "subscribe", "dataType": "stream_quality", "device": "studio-a", "channel": "1"})
	if sub := c.expect("subscribed", 5*time.Second); sub["subscriptionKey"] != "stream_quality:studio-a:1" {
		t.Fatalf("subscribed = %v", sub)
	}
	// The latest state (no stream) may already be cached.
	if m := c.next(5 * time.Second); m["type"] == "cached_data" {
		if m["data"].(map[string]any)["streaming"] != false {
			t.Fatalf("cached state = %v", m)
		}
	}

	if err := dev.SetPublisherStatus("1", "1", pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "started"}); err != nil {
		t.Fatal(err)
	}
	var u map[string]any
	for u == nil {
		m := c.next(5 * time.Second)
		if m["type"] == "data_update" && m["data"].(map[string]any)["streaming"] == true {
			u = m
		}
	}
	if u["subscriptionKey"] != "stream_quality:studio-a:1" || u["dataType"] != "stream_quality" || u["channel"] != "1" {
		t.Fatalf("update = %v", u)
	}
	data, _ := json.Marshal(u["data"])
	var q struct {
		DeviceID string `json:"device_id"`
		Encoder  struct {
			VideoBitrateKbps int `json:"video_bitrate_kbps"`
		}
		Publishers []struct {
			Type         string   `json:"type"`
			State        string   `json:"state"`
			SendRateMbps *float64 `json:"send_rate_mbps"`
			LossRatio    *float64 `json:"loss_ratio"`
		}
	}
	if err := json.Unmarshal(data, &q); err != nil {
		t.Fatal(err)
	}
	if q.DeviceID != "studio-a" || q.Encoder.VideoBitrateKbps != 3000 || len(q.Publishers) != 2 ||
		q.Publishers[1].Type != "srt" || q.Publishers[1].State != "started" || q.Publishers[1].SendRateMbps == nil || q.Publishers[1].LossRatio == nil {
		t.Fatalf("stream_quality data = %s", data)
	}
}

func TestPluginsCommand(t *testing.T) {
	dir := filepath.Join(shippedPlugins(t), "bin", "plugins")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"plugins", "--plugins-dir", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("pearld plugins: exit %d\n%s", code, stderr.String())
	}
	out := stdout.String()
	t.Log(out)
	for _, want := range []string{"stream_quality 1.0.0", "data types: stream_quality", "threshold", "float", "default 0.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("pearld plugins output lacks %q:\n%s", want, out)
		}
	}
	stdout.Reset()
	if err := cmdPlugins([]string{"--plugins-dir", dir, "--json"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &list); err != nil || len(list) != 1 || list[0]["name"] != "stream_quality" {
		t.Fatalf("--json: %v %s", err, stdout.String())
	}
}

// TestValidateUnknownPluginKey: `pearld validate` rejects a key the plugin
// does not declare, with its file and line.
func TestValidateUnknownPluginKey(t *testing.T) {
	dir := filepath.Join(shippedPlugins(t), "bin", "plugins")
	file := writePipeline(t, `[devices.studio-a]
address = "127.0.0.1:1"

[sources.quality]
type      = "plugin"
plugin    = "stream_quality"
treshold  = 0.2

[processors.latest]
type   = "ttl_cache"
inputs = ["quality"]
`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "--plugins-dir", dir, file}, &stdout, &stderr)
	want := file + `:7: sources.quality: key "treshold": unknown option of plugin "stream_quality" (it declares: threshold)`
	if code != 1 || !strings.Contains(stderr.String(), want) {
		t.Fatalf("exit %d, stderr\n%s\nwant\n%s", code, stderr.String(), want)
	}
}
