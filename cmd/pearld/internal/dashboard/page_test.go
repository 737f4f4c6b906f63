package dashboard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
)

// fakeHub speaks enough of the hub's protocol for the page: it welcomes
// with the stream_quality data type, lists one device's keys and answers
// each subscribe with a cached state.
func fakeHub(t *testing.T, states map[string]any) http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") == "" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		send := func(v any) { _ = c.WriteJSON(v) }
		send(map[string]any{"type": "connected", "clientId": "x", "user": map[string]any{"name": "Page test"},
			"capabilities": map[string]any{"dataTypes": []string{"device_health", "publisher_status", "stream_quality"}, "epoch": 1}})
		for {
			var m map[string]any
			if err := c.ReadJSON(&m); err != nil {
				return
			}
			switch m["type"] {
			case "list_streams":
				streams := map[string]any{}
				for k := range states {
					streams[k] = map[string]int{"subscribers": 0}
				}
				send(map[string]any{"type": "stream_list", "streams": streams})
			case "subscribe":
				key := m["dataType"].(string) + ":" + m["device"].(string)
				if ch, ok := m["channel"].(string); ok {
					key += ":" + ch
				}
				send(map[string]any{"type": "subscribed", "subscriptionKey": key})
				if data, ok := states[key]; ok {
					send(map[string]any{"type": "cached_data", "subscriptionKey": key, "dataType": m["dataType"], "device": m["device"],
						"channel": m["channel"], "publisherId": nil, "data": data, "timestamp": "2026-11-25T20:31:12.345Z", "cached": true, "seq": 7})
				} else {
					send(map[string]any{"type": "no_cached_data", "subscriptionKey": key})
				}
			}
		}
	})
}

func unsignedToken(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJIUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// TestPageShowsEveryDataType renders one device with health, publishers
// and stream quality in headless Chromium, against a fake hub.
func TestPageShowsEveryDataType(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing: run scripts/ensure-chromium.sh (make test does)", chromium)
	}
	states := map[string]any{
		"device_health:enc-1": map[string]any{"status": "degraded", "device_id": "enc-1", "device_ip": "10.0.0.5", "device_name": "Hall encoder",
			"system": map[string]any{"cpuload": 91, "cpuload_high": true, "cputemp": 64, "cputemp_threshold": 70, "uptime": 93784}},
		"publisher_status:enc-1:1": map[string]any{"device_id": "enc-1", "channel": "1", "publishers": []any{
			map[string]any{"id": "0", "name": "YouTube", "type": "rtmp", "status": map[string]any{"is_configured": true, "started": true, "state": "started"}},
			map[string]any{"id": "1", "name": "Studio SRT", "type": "srt", "status": map[string]any{"is_configured": true, "started": true, "state": "error", "description": "Connection reset by peer"}},
		}},
		"stream_quality:enc-1:1": map[string]any{"device_id": "enc-1", "channel": "1", "streaming": true,
			"encoder": map[string]any{"codec": "H.264", "resolution": "1920x1080", "framerate": 30, "video_bitrate_kbps": 6000, "audio_codec": "AAC", "audio_bitrate_kbps": 128},
			"publishers": []any{
				map[string]any{"id": "0", "type": "rtmp", "state": "started", "started": true},
				map[string]any{"id": "1", "name": "Studio SRT", "type": "srt", "state": "started", "started": true, "send_rate_mbps": 3.54, "rtt_ms": 0.93, "loss_ratio": 0.0125, "drop_ratio": 0, "retransmit_ratio": 0.002},
			}},
	}
	srv := httptest.NewUnstartedServer(nil)
	hub := "ws://" + srv.Listener.Addr().String() + "/ws/realtime"
	page, err := Handler(Config{HubURL: hub, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ws/realtime", fakeHub(t, states))
	for _, p := range Patterns {
		mux.Handle(p, page)
	}
	srv.Config.Handler = mux
	srv.Start()
	defer srv.Close()

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(900, 700))
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	token := unsignedToken(map[string]any{"sub": "ro", "exp": time.Now().Add(time.Hour).Unix(), "permissions": map[string]bool{"realtime_data": true}})
	tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	defer tcancel()
	if err := chromedp.Do(tctx,
		chromedp.Navigate("http://"+srv.Listener.Addr().String()+"/#token="+token),
		chromedp.WaitVisible(chromedp.CSS(`[data-device="enc-1"] .quality tr[data-publisher="1"]`)),
	); err != nil {
		t.Fatalf("the page did not show the stream quality: %v", err)
	}
	text, err := chromedp.Run(tctx, chromedp.Text(chromedp.CSS(`[data-device="enc-1"]`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"enc-1", "Hall encoder", "degraded", "91 %", "64 °C", "1 d 2 h", // health
		"YouTube", "started", "Studio SRT", "error", "Connection reset by peer", // publishers
		"streaming", "1920x1080 · 30 fps · H.264 · 6000 kb/s · AAC 128 kb/s", "3.54 Mb/s", "0.9 ms", "1.25 %", "0.20 %", // quality
	} {
		if !strings.Contains(strings.ToLower(text), strings.ToLower(want)) { // innerText applies text-transform
			t.Errorf("the device card lacks %q:\n%s", want, text)
		}
	}
	enabled, err := chromedp.Run(tctx, chromedp.Evaluate[int](`[...document.querySelectorAll('[data-publisher] button')].filter((b) => !b.disabled).length`))
	if err != nil || enabled != 0 {
		t.Errorf("a token without publisher_control sees %d enabled buttons (%v)", enabled, err)
	}
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("TEST_OUTPUT_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "..", "out")
	}
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "dashboard-quality.png"), png, 0o644)
	}
}
