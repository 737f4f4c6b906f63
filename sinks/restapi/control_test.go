package restapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

func TestControlCalls(t *testing.T) {
	hs := newHarness(t, harnessOptions{controlDelay: -1}) // publishers start at once
	dev := hs.devs["studio-a"]
	state := func(ch, pub string) string {
		t.Helper()
		st, err := dev.PublisherStatus(ch, pub)
		if err != nil {
			t.Fatal(err)
		}
		return st.State
	}
	tests := []struct {
		name, path, devicePath string
		want                   string
		states                 map[[2]string]string // channel, publisher -> state after the call
	}{
		{
			"start one", "/api/devices/studio-a/channels/1/publishers/0/control/start",
			"/api/v2.0/channels/1/publishers/0/control/start",
			`{"status":"ok","device":"studio-a","channel":"1","publisher":"0","action":"start","result":{"status":"ok"},
			  "message":"device studio-a accepted start for publisher 0 of channel 1; publisher_status events report the outcome"}`,
			map[[2]string]string{{"1", "0"}: "started", {"1", "1"}: "stopped"},
		},
		{
			"stop one", "/api/devices/studio-a/channels/1/publishers/0/control/stop",
			"/api/v2.0/channels/1/publishers/0/control/stop",
			`{"status":"ok","device":"studio-a","channel":"1","publisher":"0","action":"stop","result":{"status":"ok"},
			  "message":"device studio-a accepted stop for publisher 0 of channel 1; publisher_status events report the outcome"}`,
			map[[2]string]string{{"1", "0"}: "stopped", {"1", "1"}: "stopped"},
		},
		{
			"start channel", "/api/devices/studio-a/channels/1/publishers/start",
			"/api/v2.0/channels/1/publishers/control/start",
			`{"status":"ok","device":"studio-a","channel":"1","action":"start","result":{"status":"ok"},
			  "message":"device studio-a accepted start for all publishers of channel 1; publisher_status events report the outcome"}`,
			map[[2]string]string{{"1", "0"}: "started", {"1", "1"}: "started", {"2", "0"}: "stopped"},
		},
		{
			"stop channel", "/api/devices/studio-a/channels/1/publishers/stop",
			"/api/v2.0/channels/1/publishers/control/stop",
			`{"status":"ok","device":"studio-a","channel":"1","action":"stop","result":{"status":"ok"},
			  "message":"device studio-a accepted stop for all publishers of channel 1; publisher_status events report the outcome"}`,
			map[[2]string]string{{"1", "0"}: "stopped", {"1", "1"}: "stopped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kicked := hs.api.clients["studio-a"].Kicked()
			before := dev.Requests(tt.devicePath)
			a := hs.expect(200, http.MethodPost, tt.path, controlToken(t))
			sameJSON(t, "answer", a.body, tt.want)
			if n := dev.Requests(tt.devicePath) - before; n != 1 {
				t.Errorf("%d requests to %s, want 1", n, tt.devicePath)
			}
			for k, want := range tt.states {
				if got := state(k[0], k[1]); got != want {
					t.Errorf("publisher %s/%s is %s, want %s", k[0], k[1], got, want)
				}
			}
			select {
			case <-kicked:
			default:
				t.Error("the device's pollers were not kicked")
			}
		})
	}
	if got := hs.metric("pearld_rest_control_calls_total", "action", "start", "result", "ok"); got != 2 {
		t.Errorf("control calls start/ok = %v", got)
	}
}

func TestControlErrors(t *testing.T) {
	const (
		startOne = "/api/devices/studio-a/channels/1/publishers/0/control/start"
		startAll = "/api/devices/studio-a/channels/1/publishers/start"
	)
	tests := []struct {
		name    string
		opts    harnessOptions
		setup   func(hs *harness)
		path    string
		status  int
		code    string
		message string // exact, or a prefix when it ends with "..."
	}{
		{name: "unknown device", path: "/api/devices/nowhere/channels/1/publishers/start",
			status: 404, code: "unknown_device", message: "device nowhere is not configured in this pipeline"},
		{name: "bad publisher id", path: "/api/devices/studio-a/channels/1/publishers/a%2Fb/control/stop",
			status: 400, code: "invalid_params", message: `publisher id must be 1 to 64 of A-Z a-z 0-9 . _ : -, not "a/b"`},
		{name: "unknown channel", path: "/api/devices/studio-a/channels/9/publishers/start",
			status: 404, code: "not_found", message: `device studio-a: not found (HTTP 404): device says "channel '9' not found"`},
		{name: "unknown publisher", path: "/api/devices/studio-a/channels/1/publishers/7/control/start",
			status: 404, code: "not_found", message: `device studio-a: not found (HTTP 404): device says "streamer '7' for channel '1' not found"`},
		{name: "wrong password", setup: func(hs *harness) { hs.devs["studio-a"].SetPassword("changed-on-the-device") },
			path: startOne, status: 502, code: "device_auth_failed",
			message: "device studio-a refused pearld's credentials: unauthorized (HTTP 401): wrong username or password; check the username and password of [devices.studio-a] in the pipeline"},
		{name: "account forbidden", setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultForbidden) },
			path: startAll, status: 502, code: "device_auth_failed",
			message: `device studio-a refused pearld's credentials: forbidden (HTTP 403): the account may not use the API: device says "Access denied"; check the username and password of [devices.studio-a] in the pipeline`},
		{name: "booting", setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultUnavailable) },
			path: startOne, status: 502, code: "device_unavailable",
			message: "device studio-a: device unavailable (HTTP 503 Service Unavailable): booting or overloaded"},
		{name: "connection refused", setup: func(hs *harness) { hs.servers["studio-a"].SetRefused(true) },
			path: startOne, status: 502, code: "device_unavailable", message: "device studio-a: device unavailable: connection refused"},
		{name: "device timeout", opts: harnessOptions{deviceTimeout: 200 * time.Millisecond},
			setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultSlow) },
			path:  startOne, status: 504, code: "device_timeout", message: "device studio-a: device unavailable: no answer within 200ms"},
		{name: "control timeout", opts: harnessOptions{configure: func(a *API) { a.ControlTimeout = engine.Duration(200 * time.Millisecond) }},
			setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultSlow) },
			path:  startOne, status: 504, code: "device_timeout", message: "device studio-a did not answer within control_timeout (200ms)"},
		{name: "rejected", setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultNotOK) },
			path: startOne, status: 409, code: "device_rejected",
			message: `device studio-a: device answered "error": Internal error: request could not be processed`},
		{name: "old firmware", setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultNotFoundAPI) },
			path: startOne, status: 502, code: "device_api_missing",
			message: "device studio-a: no REST API v2.0 (HTTP 404): firmware older than 4.24.1 has no /api/v2.0; update the device's firmware"},
		{name: "garbage", setup: func(hs *harness) { hs.devs["studio-a"].SetFault(pearltest.FaultHTML) },
			path: startOne, status: 502, code: "device_bad_response", message: "device studio-a: bad response: HTML page where JSON was expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newHarness(t, tt.opts)
			if tt.setup != nil {
				tt.setup(hs)
			}
			a := hs.expect(tt.status, http.MethodPost, tt.path, controlToken(t))
			if strings.Contains(a.body, testPassword) {
				t.Fatalf("the answer leaks the device password: %s", a.body)
			}
			body := a.json(t)
			if body["code"] != tt.code || body["error"] != http.StatusText(tt.status) {
				t.Fatalf("body %s, want code %s", a.body, tt.code)
			}
			if body["message"] != tt.message {
				t.Fatalf("message\n%s\nwant\n%s", body["message"], tt.message)
			}
			if tt.status != 400 && tt.code != "unknown_device" {
				if got := hs.metric("pearld_rest_control_calls_total", "result", tt.code); got != 1 {
					t.Errorf("control calls with result %s = %v", tt.code, got)
				}
			}
		})
	}
}

// TestControlDuringShutdown checks that Close ends a control call that
// waits for a slow device.
func TestControlDuringShutdown(t *testing.T) {
	hs := newHarness(t, harnessOptions{deviceTimeout: 20 * time.Second,
		configure: func(a *API) { a.ControlTimeout = engine.Duration(30 * time.Second) }})
	dev := hs.devs["studio-a"]
	dev.SetFaultDelay(20 * time.Second)
	dev.SetFault(pearltest.FaultSlow)
	got := make(chan answer, 1)
	go func() {
		got <- hs.do(http.MethodPost, "/api/devices/studio-a/channels/1/publishers/start", controlToken(t))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for dev.Requests("/api/v2.0/channels/1/publishers/control/start") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the call never reached the device")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := hs.api.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.code != 503 || a.json(t)["code"] != "shutting_down" {
			t.Fatalf("answer %d %s", a.code, a.body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("the call took %s to end after Close", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the control call")
	}
	// After Close, control calls are refused without touching the device.
	dev.SetFault(pearltest.FaultNone)
	before := dev.TotalRequests()
	hs.expect(503, http.MethodPost, "/api/devices/studio-a/channels/1/publishers/stop", controlToken(t))
	if n := dev.TotalRequests() - before; n != 0 {
		t.Fatalf("a call after Close sent %d requests", n)
	}
}

// TestControlClientGoesAway checks that a call whose client left is
// counted as canceled.
func TestControlClientGoesAway(t *testing.T) {
	hs := newHarness(t, harnessOptions{deviceTimeout: 20 * time.Second})
	dev := hs.devs["studio-a"]
	dev.SetFaultDelay(20 * time.Second)
	dev.SetFault(pearltest.FaultSlow)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.base+"/api/devices/studio-a/channels/1/publishers/start", nil)
	req.Header.Set("Authorization", "Bearer "+controlToken(t))
	if _, err := hs.http.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for hs.metric("pearld_rest_control_calls_total", "result", "canceled") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the canceled call was not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := hs.metric("pearld_rest_requests_total", "code", "499"); got != 1 {
		t.Errorf("requests with code 499 = %v", got)
	}
}
