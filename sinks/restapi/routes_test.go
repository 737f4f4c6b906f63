package restapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
	"github.com/pearld/pearld/sinks/websocket"
)

// allRoutes lists every route with what it needs of a token and the
// status a token that grants it gets.
var allRoutes = []struct {
	method, path string
	need         access
}{
	{http.MethodGet, "/api/realtime/events", accessRead},
	{http.MethodGet, "/api/realtime/stats", accessRead},
	{http.MethodGet, "/api/realtime/health", accessRead},
	{http.MethodGet, "/api/device-state/devices/studio-a/channels/1/publishers/status", accessRead},
	{http.MethodDelete, "/api/realtime/events", accessAdmin},
	{http.MethodPost, "/api/realtime/cleanup", accessAdmin},
	{http.MethodPost, "/api/devices/studio-a/channels/1/publishers/start", accessControl},
	{http.MethodPost, "/api/devices/studio-a/channels/1/publishers/stop", accessControl},
	{http.MethodPost, "/api/devices/studio-a/channels/1/publishers/0/control/start", accessControl},
	{http.MethodPost, "/api/devices/studio-a/channels/1/publishers/0/control/stop", accessControl},
}

const (
	body401 = `{"error":"Authentication required","code":"unauthenticated","message":"send a valid token as Authorization: Bearer <token>, X-Auth-Token or ?token="}`
)

func TestRouteAccess(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	hs.write(publisherStatus("studio-a", "1", 1, "stopped"))
	expired, err := auth.Mint([]byte(testSecret), auth.MintOptions{Subject: "old", Permissions: auth.Permissions{Admin: true},
		TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tokens := []struct {
		name                string
		tok                 string
		read, admin, contrl int
	}{
		{"no token", "", 401, 401, 401},
		{"garbage", "not.a.token", 401, 401, 401},
		{"expired", expired, 401, 401, 401},
		{"no permissions", token(t, auth.Permissions{}, nil), 403, 403, 403},
		{"realtime_data", readerToken(t), 200, 403, 403},
		{"audio_streams", token(t, auth.Permissions{AudioStreams: true}, nil), 200, 403, 403},
		{"publisher_control", controlToken(t), 403, 403, 200},
		{"admin", adminToken(t), 200, 200, 200},
	}
	wantForbidden := map[access]string{
		accessRead:    `{"error":"Insufficient permissions","code":"forbidden","message":"this call needs the realtime_data, audio_streams or admin permission"}`,
		accessAdmin:   `{"error":"Insufficient permissions","code":"forbidden","message":"this call needs the admin permission"}`,
		accessControl: `{"error":"Insufficient permissions","code":"forbidden","message":"this call needs the publisher_control or admin permission"}`,
	}
	for _, tk := range tokens {
		for _, rt := range allRoutes {
			t.Run(tk.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				want := map[access]int{accessRead: tk.read, accessAdmin: tk.admin, accessControl: tk.contrl}[rt.need]
				a := hs.do(rt.method, rt.path, tk.tok)
				if a.code != want {
					t.Fatalf("status %d %s, want %d", a.code, a.body, want)
				}
				if ct := a.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
					t.Errorf("Content-Type %q", ct)
				}
				switch want {
				case 401:
					sameJSON(t, "body", a.body, body401)
					if a.header.Get("WWW-Authenticate") == "" {
						t.Error("401 without WWW-Authenticate")
					}
				case 403:
					sameJSON(t, "body", a.body, wantForbidden[rt.need])
				}
			})
		}
	}
	// A refused control call never reaches the device.
	hs2 := newHarness(t, harnessOptions{})
	hs2.expect(403, http.MethodPost, "/api/devices/studio-a/channels/1/publishers/start", readerToken(t))
	if n := hs2.devs["studio-a"].TotalRequests(); n != 0 {
		t.Fatalf("the device got %d requests for a refused call", n)
	}
}

func TestTokenCarriers(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	tok := readerToken(t)
	hs.expect(200, http.MethodGet, "/api/realtime/health", "", "X-Auth-Token: "+tok)
	hs.expect(200, http.MethodGet, "/api/realtime/health?token="+tok, "")
	hs.expect(401, http.MethodGet, "/api/realtime/health", "", "Authorization: Basic YWRtaW46cHc=")
}

func TestEventsRoute(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	hs.write(
		event("device_health", "studio-a", "", 1, `{"status":"online"}`),
		publisherStatus("studio-a", "1", 2, "starting"),
		engine.Event{Type: "stream_quality", Device: "lobby", Channel: "2", Publisher: "0", Seq: 3, Hash: 0xdeadbeef,
			Time: baseTime.Add(3 * time.Second), Data: []byte(`{ "bitrate" : 2500 }`)},
	)
	a := hs.expect(200, http.MethodGet, "/api/realtime/events", readerToken(t))
	want := `[
	 {"type":"device_health","device":"studio-a","channel":null,"publisher_id":null,"data":{"status":"online"},
	  "timestamp":"2026-11-25T20:31:13.345Z","changeHash":"0000000000001001","seq":1},
	 {"type":"publisher_status","device":"studio-a","channel":"1","publisher_id":null,
	  "data":{"publishers":[{"id":"0","name":"Stream 1","type":"rtmp","status":{"is_configured":true,"started":true,"state":"starting"}}],
	          "changes":[],"device_id":"studio-a","device_ip":"127.0.0.1","channel":"1","fetched_at":"2026-11-25T20:31:12.345Z"},
	  "timestamp":"2026-11-25T20:31:14.345Z","changeHash":"0000000000002002","seq":2},
	 {"type":"stream_quality","device":"lobby","channel":"2","publisher_id":"0","data":{"bitrate":2500},
	  "timestamp":"2026-11-25T20:31:15.345Z","changeHash":"00000000deadbeef","seq":3}]`
	sameJSON(t, "events", a.body, want)

	// Filters, since and limit; the answer is always oldest first.
	hs.write(publisherStatus("studio-a", "1", 4, "started"), publisherStatus("studio-b", "1", 5, "stopped"))
	tests := []struct {
		query string
		seqs  string
	}{
		{"", "1 2 3 4 5"},
		{"?device=studio-a", "1 2 4"},
		{"?device=studio-a&channel=1", "2 4"},
		{"?channel=1", "2 4 5"},
		{"?type=publisher_status", "2 4 5"},
		{"?type=publisher_status&device=studio-b", "5"},
		{"?since=3", "4 5"},
		{"?since=0&limit=2", "4 5"},
		{"?limit=1", "5"},
		{"?limit=100", "1 2 3 4 5"},
		{"?device=unknown", ""},
		{"?since=5", ""},
		{"?token=ignored&_=1700000000", "1 2 3 4 5"},
	}
	for _, tt := range tests {
		t.Run("query "+tt.query, func(t *testing.T) {
			a := hs.expect(200, http.MethodGet, "/api/realtime/events"+tt.query, readerToken(t))
			var got []string
			for _, e := range decodeArray(t, a.body) {
				got = append(got, jsonNumber(e["seq"]))
			}
			if strings.Join(got, " ") != tt.seqs {
				t.Fatalf("seqs %q, want %q", strings.Join(got, " "), tt.seqs)
			}
		})
	}

	bad := []struct{ query, msg string }{
		{"?limit=0", `limit must be an integer from 1 to 100, not "0"`},
		{"?limit=101", `limit must be an integer from 1 to 100, not "101"`},
		{"?limit=ten", `limit must be an integer from 1 to 100, not "ten"`},
		{"?limit=-1", `limit must be an integer from 1 to 100, not "-1"`},
		{"?since=-1", `since must be a seq: a non-negative integer, not "-1"`},
		{"?since=1.5", `since must be a seq: a non-negative integer, not "1.5"`},
		{"?device=a%20b", `device must be 1 to 64 of A-Z a-z 0-9 . _ : -, not "a b"`},
		{"?channel=" + strings.Repeat("1", 65), `channel must be 1 to 64 of A-Z a-z 0-9 . _ : -, not "` + strings.Repeat("1", 65) + `"`},
		{"?type=" + strings.Repeat("t", 65), `type must be at most 64 characters`},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.query, func(t *testing.T) {
			a := hs.expect(400, http.MethodGet, "/api/realtime/events"+tt.query, readerToken(t))
			sameJSON(t, "body", a.body, `{"error":"Bad Request","code":"invalid_params","message":`+quote(tt.msg)+`}`)
		})
	}
}

func TestStatsRoute(t *testing.T) {
	hs := newHarness(t, harnessOptions{configure: func(a *API) { a.MaxEvents = 4; a.TTL = engine.Duration(time.Minute) }})
	hs.write(event("device_health", "lobby", "", 1, `{}`))
	hs.clock.Advance(30 * time.Second)
	hs.write(
		publisherStatus("studio-a", "1", 2, "stopped"),
		publisherStatus("studio-a", "2", 3, "stopped"),
		event("device_health", "studio-a", "", 4, `{}`),
		publisherStatus("studio-b", "1", 5, "stopped"), // evicts seq 1
	)
	hs.clock.Advance(45 * time.Second) // nothing expired: 2..5 were stored 45s ago
	hs.write(publisherStatus("lobby", "1", 6, "stopped"))

	a := hs.expect(200, http.MethodGet, "/api/realtime/stats", adminToken(t))
	sameJSON(t, "stats", a.body, `{"status":"ok","timestamp":"2026-11-25T20:32:27.345Z","stats":{
		"events_stored":4,
		"by_type":{"publisher_status":3,"device_health":1},
		"by_device":{"studio-a":2,"studio-b":1,"lobby":1},
		"oldest_seq":3,"newest_seq":6,
		"store":{"events_held":4,"max_events":4,"ttl_seconds":60,"received":6,"evicted":2,"expired":0,"cleared":0}}}`)

	// A token limited to some devices sees their counts only, and no
	// store-wide counters.
	a = hs.expect(200, http.MethodGet, "/api/realtime/stats", token(t, auth.Permissions{RealtimeData: true}, []string{"studio-*"}))
	sameJSON(t, "limited stats", a.body, `{"status":"ok","timestamp":"2026-11-25T20:32:27.345Z","stats":{
		"events_stored":3,"by_type":{"publisher_status":2,"device_health":1},"by_device":{"studio-a":2,"studio-b":1},
		"oldest_seq":3,"newest_seq":5}}`)

	// Expired events drop out of the counts before any cleanup.
	hs.clock.Advance(20 * time.Second)
	a = hs.expect(200, http.MethodGet, "/api/realtime/stats", adminToken(t))
	sameJSON(t, "stats after ttl", a.body, `{"status":"ok","timestamp":"2026-11-25T20:32:47.345Z","stats":{
		"events_stored":1,"by_type":{"publisher_status":1},"by_device":{"lobby":1},"oldest_seq":6,"newest_seq":6,
		"store":{"events_held":4,"max_events":4,"ttl_seconds":60,"received":6,"evicted":2,"expired":0,"cleared":0}}}`)
}

func TestHealthRoute(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	want := func(n string) string {
		return `{"status":"healthy","service":"realtime-events","version":"` + engine.Version +
			`","active_events":` + n + `,"timestamp":"2026-11-25T20:31:12.345Z"}`
	}
	sameJSON(t, "empty", hs.expect(200, http.MethodGet, "/api/realtime/health", readerToken(t)).body, want("0"))
	hs.write(publisherStatus("studio-a", "1", 1, "stopped"), publisherStatus("lobby", "1", 2, "stopped"))
	sameJSON(t, "two", hs.expect(200, http.MethodGet, "/api/realtime/health", readerToken(t)).body, want("2"))
	limited := token(t, auth.Permissions{RealtimeData: true}, []string{"lobby"})
	sameJSON(t, "limited", hs.expect(200, http.MethodGet, "/api/realtime/health", limited).body, want("1"))
	if a := hs.expect(200, http.MethodHead, "/api/realtime/health", readerToken(t)); a.body != "" {
		t.Fatalf("HEAD body %q", a.body)
	}
}

func TestClearAndCleanupRoutes(t *testing.T) {
	hs := newHarness(t, harnessOptions{configure: func(a *API) { a.TTL = engine.Duration(10 * time.Second) }})
	hs.write(publisherStatus("studio-a", "1", 1, "stopped"), publisherStatus("studio-a", "2", 2, "stopped"))
	hs.clock.Advance(6 * time.Second)
	hs.write(publisherStatus("studio-b", "1", 3, "stopped"))
	hs.clock.Advance(5 * time.Second) // 1 and 2 expired

	a := hs.expect(200, http.MethodPost, "/api/realtime/cleanup", adminToken(t))
	sameJSON(t, "cleanup", a.body, `{"status":"ok","cleaned_events":2,"message":"Removed 2 expired events"}`)
	a = hs.expect(200, http.MethodPost, "/api/realtime/cleanup", adminToken(t))
	sameJSON(t, "second cleanup", a.body, `{"status":"ok","cleaned_events":0,"message":"Removed 0 expired events"}`)
	if got := hs.metric("pearld_rest_events_expired_total"); got != 2 {
		t.Errorf("expired metric %v", got)
	}

	hs.write(publisherStatus("studio-b", "1", 4, "started"))
	a = hs.expect(200, http.MethodDelete, "/api/realtime/events", adminToken(t))
	sameJSON(t, "clear", a.body, `{"status":"ok","cleared_events":2,"message":"Cleared 2 events"}`)
	sameJSON(t, "events after clear", hs.expect(200, http.MethodGet, "/api/realtime/events", readerToken(t)).body, `[]`)
	if got := hs.metric("pearld_rest_events_stored"); got != 0 {
		t.Errorf("stored metric %v after clear", got)
	}
	// Clearing the history keeps the latest state.
	hs.expect(200, http.MethodGet, "/api/device-state/devices/studio-b/channels/1/publishers/status", readerToken(t))
}

func TestStateRoute(t *testing.T) {
	const path = "/api/device-state/devices/studio-a/channels/1/publishers/status"
	wantStarted := `{"status":"ok","device":"studio-a","channel":"1",
		"publishers":[{"id":"0","name":"Stream 1","type":"rtmp","status":{"is_configured":true,"started":true,"state":"started"}}],
		"data":{"publishers":[{"id":"0","name":"Stream 1","type":"rtmp","status":{"is_configured":true,"started":true,"state":"started"}}],
		        "changes":[],"device_id":"studio-a","device_ip":"127.0.0.1","channel":"1","fetched_at":"2026-11-25T20:31:12.345Z"},
		"timestamp":"2026-11-25T20:31:19.345Z","seq":7}`

	t.Run("own memory", func(t *testing.T) {
		hs := newHarness(t, harnessOptions{})
		a := hs.expect(404, http.MethodGet, path, readerToken(t))
		sameJSON(t, "nothing yet", a.body, `{"error":"Not Found","code":"no_data","message":"no publisher status of device studio-a channel 1 is known yet"}`)
		hs.write(publisherStatus("studio-a", "1", 7, "started"))
		hs.write(publisherStatus("studio-a", "1", 6, "starting")) // late: older than what is known
		sameJSON(t, "state", hs.expect(200, http.MethodGet, path, readerToken(t)).body, wantStarted)
		// Only the pipeline's devices are kept.
		hs.write(publisherStatus("elsewhere", "1", 8, "started"))
		if _, ok := hs.api.latest["publisher_status:elsewhere:1"]; ok {
			t.Fatal("state of a device outside the pipeline was kept")
		}
	})

	t.Run("upstream cache", func(t *testing.T) {
		up := &stateUpstream{}
		hs := newHarness(t, harnessOptions{upstream: []any{up}})
		hs.write(publisherStatus("studio-a", "1", 3, "stopped")) // not the cache: ignored for state
		hs.expect(404, http.MethodGet, path, readerToken(t))
		up.set(publisherStatus("studio-a", "1", 7, "started"))
		sameJSON(t, "state", hs.expect(200, http.MethodGet, path, readerToken(t)).body, wantStarted)
		if hs.api.latest != nil {
			t.Fatal("the sink keeps state although the pipeline caches it")
		}
	})

	t.Run("errors", func(t *testing.T) {
		hs := newHarness(t, harnessOptions{})
		a := hs.expect(404, http.MethodGet, "/api/device-state/devices/nowhere/channels/1/publishers/status", readerToken(t))
		sameJSON(t, "unknown device", a.body, `{"error":"Not Found","code":"unknown_device","message":"device nowhere is not configured in this pipeline"}`)
		a = hs.expect(400, http.MethodGet, "/api/device-state/devices/studio-a/channels/a%20b/publishers/status", readerToken(t))
		sameJSON(t, "bad channel", a.body, `{"error":"Bad Request","code":"invalid_params","message":"channel id must be 1 to 64 of A-Z a-z 0-9 . _ : -, not \"a b\""}`)
	})
}

func TestDevicesClaim(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	hs.write(
		publisherStatus("studio-a", "1", 1, "stopped"),
		publisherStatus("lobby", "1", 2, "stopped"),
		publisherStatus("studio-b", "1", 3, "stopped"),
	)
	perms := auth.Permissions{RealtimeData: true, PublisherControl: true}
	studios := token(t, perms, []string{"studio-*"})
	forbidden := func(device string) string {
		return `{"error":"Insufficient permissions","code":"forbidden","message":"the token does not allow device \"` + device + `\""}`
	}

	var devs []string
	for _, e := range decodeArray(t, hs.expect(200, http.MethodGet, "/api/realtime/events", studios).body) {
		devs = append(devs, e["device"].(string))
	}
	if strings.Join(devs, " ") != "studio-a studio-b" {
		t.Errorf("events of devices %v, want the studios only", devs)
	}
	sameJSON(t, "naming another device", hs.expect(403, http.MethodGet, "/api/realtime/events?device=lobby", studios).body, forbidden("lobby"))
	hs.expect(200, http.MethodGet, "/api/device-state/devices/studio-a/channels/1/publishers/status", studios)
	sameJSON(t, "state of another device",
		hs.expect(403, http.MethodGet, "/api/device-state/devices/lobby/channels/1/publishers/status", studios).body, forbidden("lobby"))
	// A device the pipeline lacks is 403 too: a limited token cannot probe
	// which devices exist.
	hs.expect(403, http.MethodGet, "/api/device-state/devices/nowhere/channels/1/publishers/status", studios)

	hs.expect(200, http.MethodPost, "/api/devices/studio-b/channels/1/publishers/0/control/start", studios)
	sameJSON(t, "control of another device",
		hs.expect(403, http.MethodPost, "/api/devices/lobby/channels/1/publishers/0/control/start", studios).body, forbidden("lobby"))
	hs.expect(403, http.MethodPost, "/api/devices/lobby/channels/1/publishers/stop", studios)
	if n := hs.devs["lobby"].TotalRequests(); n != 0 {
		t.Errorf("the forbidden device got %d requests", n)
	}

	// An empty devices claim allows no device at all.
	none := token(t, perms, []string{})
	sameJSON(t, "events for no device", hs.expect(200, http.MethodGet, "/api/realtime/events", none).body, `[]`)
	hs.expect(403, http.MethodPost, "/api/devices/studio-a/channels/1/publishers/start", none)
}

func TestMethodsAndCORS(t *testing.T) {
	hs := newHarness(t, harnessOptions{configure: func(a *API) {
		a.AllowedOrigins = []string{"https://*.example.com"}
	}})
	a := hs.expect(405, http.MethodGet, "/api/realtime/cleanup", adminToken(t))
	sameJSON(t, "405", a.body, `{"error":"Method Not Allowed","code":"method_not_allowed","message":"use POST, OPTIONS"}`)
	if a.header.Get("Allow") != "POST, OPTIONS" {
		t.Errorf("Allow %q", a.header.Get("Allow"))
	}
	a = hs.expect(405, http.MethodPut, "/api/realtime/events", adminToken(t))
	if a.header.Get("Allow") != "GET, HEAD, DELETE, OPTIONS" {
		t.Errorf("Allow %q", a.header.Get("Allow"))
	}

	// A preflight carries no token.
	a = hs.expect(204, http.MethodOptions, "/api/devices/studio-a/channels/1/publishers/0/control/start", "",
		"Origin: https://dash.example.com", "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization, x-requested-with")
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":      "https://dash.example.com",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "POST, OPTIONS",
		"Access-Control-Allow-Headers":     "authorization, x-requested-with",
		"Vary":                             "Origin",
	} {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	a = hs.expect(200, http.MethodGet, "/api/realtime/health", readerToken(t), "Origin: https://Dash.Example.com")
	if a.header.Get("Access-Control-Allow-Origin") != "https://Dash.Example.com" {
		t.Errorf("allowed origin not reflected: %v", a.header)
	}
	// Another origin is refused before anything happens, even with a
	// token in the query (a request no preflight guards).
	a = hs.expect(403, http.MethodPost, "/api/devices/studio-a/channels/1/publishers/start?token="+controlToken(t), "",
		"Origin: https://evil.test")
	sameJSON(t, "origin", a.body, `{"error":"Forbidden","code":"origin_not_allowed","message":"requests from origin \"https://evil.test\" are not allowed"}`)
	if a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("a refused origin got CORS headers")
	}
	if n := hs.devs["studio-a"].TotalRequests(); n != 0 {
		t.Errorf("the device got %d requests from a refused origin", n)
	}
	// Requests without Origin are not from a browser.
	hs.expect(200, http.MethodGet, "/api/realtime/health", readerToken(t))

	// By default any origin may call, without credentials.
	open := newHarness(t, harnessOptions{})
	a = open.expect(200, http.MethodGet, "/api/realtime/health", readerToken(t), "Origin: https://anywhere.test")
	if a.header.Get("Access-Control-Allow-Origin") != "*" || a.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("default CORS headers %v", a.header)
	}
}

func TestRequestMetrics(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	hs.write(publisherStatus("studio-a", "1", 1, "stopped"), publisherStatus("studio-a", "2", 2, "stopped"))
	hs.expect(200, http.MethodGet, "/api/realtime/events", readerToken(t))
	hs.expect(200, http.MethodGet, "/api/realtime/events", readerToken(t))
	hs.expect(401, http.MethodGet, "/api/realtime/events", "")
	hs.expect(404, http.MethodGet, "/api/device-state/devices/studio-a/channels/9/publishers/status", readerToken(t))
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pearld_rest_requests_total", []string{"route", "/api/realtime/events", "method", "GET", "code", "200"}, 2},
		{"pearld_rest_requests_total", []string{"route", "/api/realtime/events", "method", "GET", "code", "401"}, 1},
		{"pearld_rest_requests_total", []string{"route", "/api/device-state/devices/{device}/channels/{channel}/publishers/status", "code", "404"}, 1},
		{"pearld_rest_request_duration_seconds", []string{"route", "/api/realtime/events"}, 3},
		{"pearld_rest_events_stored", nil, 2},
	}
	for _, c := range checks {
		if got := hs.metric(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestWriteSkipsBadEvents(t *testing.T) {
	hs := newHarness(t, harnessOptions{})
	err := hs.api.Write(context.Background(), []engine.Event{
		event("publisher_status", "studio-a", "1", 1, `{"ok":true}`),
		event("publisher_status", "studio-a", "1", 2, `{not json`),
		event("publisher_status", "", "1", 3, `{}`),
		event("device_health", "studio-a", "", 4, ``),
	})
	if err == nil || !strings.Contains(err.Error(), "seq 2: data is not valid JSON") || !strings.Contains(err.Error(), "seq 3: missing type or device") {
		t.Fatalf("err %v", err)
	}
	var seqs []string
	for _, e := range decodeArray(t, hs.expect(200, http.MethodGet, "/api/realtime/events", readerToken(t)).body) {
		seqs = append(seqs, jsonNumber(e["seq"]))
		if e["seq"].(float64) == 4 && e["data"] != nil {
			t.Errorf("empty data shown as %v, want null", e["data"])
		}
	}
	if strings.Join(seqs, " ") != "1 4" {
		t.Fatalf("stored %v", seqs)
	}
}

func TestConfig(t *testing.T) {
	a := New()
	if a.Listen != ":3446" || a.MaxEvents != 1000 || a.TTL.D() != 300*time.Second || a.ControlTimeout.D() != 10*time.Second ||
		len(a.Algorithms) != 1 || a.Algorithms[0] != auth.HS256 || a.Leeway.D() != auth.DefaultLeeway || a.AllowedOrigins != nil {
		t.Fatalf("defaults %+v", a)
	}
	tests := []struct {
		name   string
		mutate func(a *API)
		want   string
	}{
		{"no listen", func(a *API) { a.Listen = "" }, "listen: required"},
		{"max_events 0", func(a *API) { a.MaxEvents = 0 }, "max_events: must be from 1 to 1000000, not 0"},
		{"max_events huge", func(a *API) { a.MaxEvents = 2_000_000 }, "max_events: must be from 1 to 1000000, not 2000000"},
		{"ttl 0", func(a *API) { a.TTL = 0 }, "ttl: must be positive, not 0s"},
		{"control_timeout negative", func(a *API) { a.ControlTimeout = engine.Duration(-time.Second) }, "control_timeout: must be positive, not -1s"},
		{"bad origin", func(a *API) { a.AllowedOrigins = []string{"https://["} }, `allowed_origins: bad pattern "https://["`},
		{"no secret", func(a *API) { a.JWTSecret = "" }, "HS256 needs a secret"},
		{"short secret", func(a *API) { a.JWTSecret = "short" }, "the secret is 5 bytes"},
		{"bad device address", nil, "configuring device bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(auth.SecretEnv, "")
			a := New()
			a.JWTSecret = testSecret
			devices := map[string]*engine.Device{}
			if tt.mutate != nil {
				tt.mutate(a)
			} else {
				devices["bad"] = &engine.Device{Name: "bad", Address: "ftp://x"}
			}
			env, closeEnv := engine.NewEnv(engine.EnvOptions{Devices: devices, Listeners: engine.NewListeners(nil)})
			defer closeEnv(context.Background())
			err := a.Init(env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestLoadFromPipeline decodes every key from a pipeline file.
func TestLoadFromPipeline(t *testing.T) {
	cfg, err := engine.Load("p.toml", []byte(`
[sources.s]
type = "pearl_publisher_status"
[sinks.api]
type            = "rest_events"
inputs          = ["s"]
listen          = "127.0.0.1:9999"
jwt_secret      = "`+testSecret+`"
algorithms      = ["HS256", "HS512"]
issuer          = "auth.example"
audience        = "pearld"
leeway          = "5s"
max_events      = 50
ttl             = "1m"
control_timeout = "3s"
allowed_origins = ["https://dash.example.com"]
`), engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Component("api").Value.(*API)
	if a.Listen != "127.0.0.1:9999" || a.JWTSecret != testSecret || len(a.Algorithms) != 2 || a.Issuer != "auth.example" ||
		a.Audience != "pearld" || a.Leeway.D() != 5*time.Second || a.MaxEvents != 50 || a.TTL.D() != time.Minute ||
		a.ControlTimeout.D() != 3*time.Second || len(a.AllowedOrigins) != 1 {
		t.Fatalf("decoded %+v", a)
	}
	if _, err := engine.Load("p.toml", []byte(`
[sources.s]
type = "pearl_publisher_status"
[sinks.api]
type   = "rest_events"
inputs = ["s"]
max_event = 5
`), engine.LoadOptions{}); err == nil || !strings.Contains(err.Error(), `unknown key "sinks.api.max_event"`) {
		t.Fatalf("misspelled key: %v", err)
	}
}

// TestSharesServerWithHub mounts the hub and the API on one address.
func TestSharesServerWithHub(t *testing.T) {
	ls := engine.NewListeners(nil)
	envFor := func(name, typ string) (*engine.Env, func(context.Context)) {
		return engine.NewEnv(engine.EnvOptions{Pipeline: "p", Name: name, Type: typ, Listeners: ls})
	}
	hub := websocket.New()
	hub.Listen, hub.JWTSecret = "127.0.0.1:0", testSecret
	hubEnv, closeHub := envFor("live", "websocket")
	defer closeHub(context.Background())
	if err := hub.Init(hubEnv); err != nil {
		t.Fatal(err)
	}
	a := New()
	a.Listen, a.JWTSecret = "127.0.0.1:0", testSecret
	apiEnv, closeAPI := envFor("api", "rest_events")
	defer closeAPI(context.Background())
	if err := a.Init(apiEnv); err != nil {
		t.Fatalf("Init next to the hub: %v", err)
	}
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Close(ctx)
		_ = a.Close(ctx)
		ls.Shutdown(ctx)
	}()
	base := "http://" + ls.Addr("127.0.0.1:0").String()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	for path, want := range map[string]int{
		"/":            http.StatusUpgradeRequired, // the hub
		"/ws/realtime": http.StatusUpgradeRequired,
		"/api/realtime/health?token=" + readerToken(t): http.StatusOK,
	} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
