package websocket

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

func TestAuthOnUpgrade(t *testing.T) {
	hs := newHarness(t, nil)
	now := time.Now()
	signed := func(secret string, m jwt.SigningMethod, c jwt.MapClaims) string {
		var key any = []byte(secret)
		if m == jwt.SigningMethodNone {
			key = jwt.UnsafeAllowNoneSignatureType
		}
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"permissions": map[string]bool{"realtime_data": true}}
		if mut != nil {
			mut(c)
		}
		return c
	}
	tests := []struct {
		name   string
		header http.Header
		query  string
		reason string // "" when accepted
	}{
		{"no token", nil, "", auth.ReasonUnauthenticated},
		{"garbage", nil, "token=garbage", auth.ReasonUnauthenticated},
		{"wrong secret", nil, "token=" + signed(strings.Repeat("w", 40), jwt.SigningMethodHS256, valid(nil)), auth.ReasonUnauthenticated},
		{"alg none", nil, "token=" + signed("", jwt.SigningMethodNone, valid(nil)), auth.ReasonUnauthenticated},
		{"HS512 not configured", nil, "token=" + signed(testSecret, jwt.SigningMethodHS512, valid(nil)), auth.ReasonUnauthenticated},
		{"expired", nil, "token=" + signed(testSecret, jwt.SigningMethodHS256, valid(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), auth.ReasonUnauthenticated},
		{"not yet valid", nil, "token=" + signed(testSecret, jwt.SigningMethodHS256, valid(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), auth.ReasonUnauthenticated},
		{"no exp", nil, "token=" + signed(testSecret, jwt.SigningMethodHS256, valid(func(c jwt.MapClaims) { delete(c, "exp") })), auth.ReasonUnauthenticated},
		{"no sub", nil, "token=" + signed(testSecret, jwt.SigningMethodHS256, valid(func(c jwt.MapClaims) { delete(c, "sub") })), auth.ReasonUnauthenticated},
		{"no permissions", nil, "token=" + signed(testSecret, jwt.SigningMethodHS256, valid(func(c jwt.MapClaims) { delete(c, "permissions") })), auth.ReasonForbidden},
		{"permission false", nil, "token=" + token(t, auth.Permissions{}, nil), auth.ReasonForbidden},
		{"control only", nil, "token=" + token(t, auth.Permissions{PublisherControl: true}, nil), auth.ReasonForbidden},
		{"unrelated permission", nil, "token=" + signed(testSecret, jwt.SigningMethodHS256, valid(func(c jwt.MapClaims) { c["permissions"] = map[string]bool{"billing": true} })), auth.ReasonForbidden},
		{"bearer", http.Header{"Authorization": {"Bearer " + readToken(t)}}, "", ""},
		{"x-auth-token", http.Header{"X-Auth-Token": {readToken(t)}}, "", ""},
		{"query", nil, "token=" + readToken(t), ""},
		{"audio_streams", nil, "token=" + token(t, auth.Permissions{AudioStreams: true}, nil), ""},
		{"admin", nil, "token=" + token(t, auth.Permissions{Admin: true}, nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, resp, err := hs.dial("/ws/realtime?"+tt.query, tt.header)
			if err != nil {
				t.Fatalf("handshake failed (%v): the hub must complete it and close with a reason", err)
			}
			defer c.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if tt.reason != "" {
				expectClose(t, c, websocket.ClosePolicyViolation, tt.reason)
				return
			}
			w := &wsClient{t: t, c: c}
			w.expect("connected")
		})
	}
}

func TestPaths(t *testing.T) {
	hs := newHarness(t, nil)
	for _, p := range []string{"/", "/ws", "/ws/realtime"} {
		c, _, err := hs.dial(p+"?token="+readToken(t), nil)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		(&wsClient{t: t, c: c}).expect("connected")
		c.Close()
	}
	resp, err := http.Get("http" + strings.TrimPrefix(hs.url, "ws") + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("plain GET: status %d, want 426", resp.StatusCode)
	}
	resp, err = http.Get("http" + strings.TrimPrefix(hs.url, "ws") + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /other: status %d, want 404", resp.StatusCode)
	}
}

func TestConnectedShape(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	got := w.connected
	id, _ := got["clientId"].(string)
	if id == "" {
		t.Fatalf("no clientId in %v", got)
	}
	delete(got, "clientId")
	want := map[string]any{
		"type": "connected",
		"user": map[string]any{
			"id": "dash", "name": "Dash Board", "email": "dash@example.com",
			"permissions": map[string]any{"realtime_data": true, "audio_streams": false, "admin": false, "publisher_control": false},
		},
		"capabilities": map[string]any{
			"dataTypes":        []any{"device_health", "publisher_status"},
			"maxSubscriptions": 50.0, "maxMessageSize": 2048.0,
			"version": engine.Version, "epoch": float64(testEpoch),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("connected\n got %v\nwant %v", got, want)
	}
	if other := hs.connect(""); other.connected["clientId"] == id {
		t.Fatal("two clients share a clientId")
	}
}

func TestSubscribeCachedData(t *testing.T) {
	up := &stateUpstream{upstream{types: shippedTypes}}
	up.set(event("publisher_status", "studio-a", "1", 41, `{"publishers":[]}`))
	hs := newHarness(t, nil, up)
	w := hs.connect("")

	w.send(subscribe("publisher_status", "studio-a", 1))
	if got := w.readRaw(); got != `{"type":"subscribed","subscriptionKey":"publisher_status:studio-a:1","dataType":"publisher_status","device":"studio-a","channel":"1","publisherId":null}` {
		t.Fatalf("subscribed: %s", got)
	}
	if got := w.readRaw(); got != `{"type":"cached_data","subscriptionKey":"publisher_status:studio-a:1","dataType":"publisher_status","device":"studio-a","channel":"1","publisherId":null,"data":{"publishers":[]},"timestamp":"2026-11-25T20:31:53.345Z","cached":true,"seq":41}` {
		t.Fatalf("cached_data: %s", got)
	}

	// The channel as a string names the same key.
	w.send(subscribe("publisher_status", "studio-a", "1"))
	if m := w.expect("subscribed"); m["subscriptionKey"] != "publisher_status:studio-a:1" {
		t.Fatalf("subscribed %v", m)
	}
	w.expect("cached_data")
	if n := hs.metric("subscriptions"); n != 1 {
		t.Fatalf("subscriptions gauge %v, want 1", n)
	}

	w.send(subscribe("device_health", "studio-b", nil))
	if m := w.expect("subscribed"); m["channel"] != nil || m["subscriptionKey"] != "device_health:studio-b" {
		t.Fatalf("subscribed %v", m)
	}
	if got := w.readRaw(); got != `{"type":"no_cached_data","subscriptionKey":"device_health:studio-b","message":"No cached data available for device_health:studio-b"}` {
		t.Fatalf("no_cached_data: %s", got)
	}

	w.send(map[string]any{"type": "get_cached_data", "dataType": "publisher_status", "device": "studio-a", "channel": 1})
	if m := w.expect("cached_data"); m["cached"] != true || m["seq"] != 41.0 {
		t.Fatalf("get_cached_data: %v", m)
	}
}

func TestCachedDataWithoutStateReader(t *testing.T) {
	hs := newHarness(t, nil)
	hs.write(event("device_health", "studio-a", "", 3, `{"status":"online"}`))
	w := hs.connect("")
	w.send(subscribe("device_health", "studio-a", nil))
	w.expect("subscribed")
	if m := w.expect("cached_data"); m["seq"] != 3.0 || m["cached"] != true {
		t.Fatalf("cached_data %v", m)
	}
}

func TestDataUpdate(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	w.send(subscribe("publisher_status", "studio-a", 1))
	w.expect("subscribed")
	w.expect("no_cached_data")
	w.send(subscribe("device_health", "studio-a", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")

	hs.write(
		event("publisher_status", "studio-a", "1", 5, `{"changes":[]}`),
		event("publisher_status", "studio-a", "2", 6, `{}`), // not subscribed
		event("device_health", "studio-a", "", 7, `{"status":"online"}`),
	)
	if got := w.readRaw(); got != `{"type":"data_update","subscriptionKey":"publisher_status:studio-a:1","dataType":"publisher_status","device":"studio-a","channel":"1","publisherId":null,"data":{"changes":[]},"timestamp":"2026-11-25T20:31:17.345Z","cached":false,"seq":5}` {
		t.Fatalf("data_update: %s", got)
	}
	if got := w.readRaw(); got != `{"type":"data_update","subscriptionKey":"device_health:studio-a","dataType":"device_health","device":"studio-a","channel":null,"publisherId":null,"data":{"status":"online"},"timestamp":"2026-11-25T20:31:19.345Z","cached":false,"seq":7}` {
		t.Fatalf("data_update: %s", got)
	}
	w.sync()
	if n := hs.metric("sent"); n < 7 {
		t.Fatalf("messages sent %v", n)
	}
}

func TestWriteSkipsInvalidData(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	w.send(subscribe("device_health", "a", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")
	err := hs.hub.Write(t.Context(), []engine.Event{
		event("device_health", "a", "", 1, `{"broken`),
		event("device_health", "a", "", 2, `{}`),
	})
	if err == nil || !strings.Contains(err.Error(), "not valid JSON") {
		t.Fatalf("Write: %v", err)
	}
	if m := w.expect("data_update"); m["seq"] != 2.0 {
		t.Fatalf("got %v", m)
	}
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	w.send(subscribe("device_health", "studio-a", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")
	w.send(map[string]any{"type": "unsubscribe", "dataType": "device_health", "device": "studio-a"})
	if m := w.expect("unsubscribed"); m["subscriptionKey"] != "device_health:studio-a" {
		t.Fatalf("unsubscribed %v", m)
	}
	hs.write(event("device_health", "studio-a", "", 1, `{}`))
	w.sync() // a data_update would come before the pong
	if n := hs.metric("subscriptions"); n != 0 {
		t.Fatalf("subscriptions gauge %v", n)
	}
}

func TestPingPong(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	w.send(`{"type":"ping","timestamp":1764102672345}`)
	if got := w.readRaw(); got != `{"type":"pong","timestamp":1764102672345}` {
		t.Fatalf("pong: %s", got)
	}
	w.send(`{"type":"ping"}`)
	m := w.expect("pong")
	if _, err := time.Parse(time.RFC3339, m["timestamp"].(string)); err != nil {
		t.Fatalf("pong timestamp %v: %v", m["timestamp"], err)
	}
}

func TestErrorFrames(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	tests := []struct {
		name string
		msg  string
		code string
	}{
		{"4 KiB frame", `{"type":"ping","pad":"` + strings.Repeat("x", 4096) + `"}`, codeTooLarge},
		{"invalid JSON", `{"type":`, codeInvalidMessage},
		{"not an object", `[1,2]`, codeInvalidMessage},
		{"no type", `{}`, codeInvalidMessage},
		{"unknown type", `{"type":"teleport"}`, codeUnknownType},
		{"unknown data type", `{"type":"subscribe","dataType":"stream_quality","device":"a"}`, codeInvalidParams},
		{"no device", `{"type":"subscribe","dataType":"device_health"}`, codeInvalidParams},
		{"bad device", `{"type":"subscribe","dataType":"device_health","device":"a b"}`, codeInvalidParams},
		{"bad channel", `{"type":"subscribe","dataType":"publisher_status","device":"a","channel":1.5}`, codeInvalidParams},
		{"bad since", `{"type":"subscribe","dataType":"device_health","device":"a","since":"yesterday"}`, codeInvalidParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w.t = t
			w.send(tt.msg)
			m := w.expectError(tt.code)
			if m["message"] == "" {
				t.Fatalf("error without message: %v", m)
			}
			w.sync() // the connection still works
		})
	}
}

func TestMisbehavingClientClosed(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	for range strikeLimit + 1 {
		w.send(`not json`)
	}
	expectClose(t, w.c, websocket.ClosePolicyViolation, reasonMisbehave)
}

func TestBatchFrames(t *testing.T) {
	hs := newHarness(t, nil)
	b := hs.connect("batch=1")
	plain := hs.connect("")
	for _, w := range []*wsClient{b, plain} {
		w.send(subscribe("publisher_status", "a", 1))
		w.expect("subscribed") // not batched: only events are
		w.expect("no_cached_data")
	}
	var events []engine.Event
	for i := range 5 {
		events = append(events, event("publisher_status", "a", "1", uint64(10+i), `{}`))
	}
	hs.write(events...)

	var got []map[string]any
	for len(got) < 5 {
		m := b.expect("batch")
		for _, e := range m["events"].([]any) {
			got = append(got, e.(map[string]any))
		}
	}
	if s := seqs(got); !slices.Equal(s, []uint64{10, 11, 12, 13, 14}) || got[0]["type"] != "data_update" {
		t.Fatalf("batched events %v", got)
	}
	b.sync()
	for i := range 5 {
		if m := plain.expect("data_update"); m["seq"] != float64(10+i) {
			t.Fatalf("plain client got %v", m)
		}
	}
}

func TestLargeEvents(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	w.send(subscribe("device_health", "a", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")
	// Payload sizes around the 7-bit, 16-bit and 64-bit length encodings.
	for i, n := range []int{1, 100, 200, 65400, 65600, 300000} {
		data, _ := json.Marshal(map[string]string{"pad": strings.Repeat("p", n)})
		hs.write(event("device_health", "a", "", uint64(i+1), string(data)))
	}
	for i := range 6 {
		if m := w.expect("data_update"); m["seq"] != float64(i+1) {
			t.Fatalf("got seq %v", m["seq"])
		}
	}
}

func TestStringEscaping(t *testing.T) {
	for _, s := range []string{"plain", `q"uote\back`, "ctl\x00\x1f\n\r\t", "ünï€😀", "bad\xffutf8", "<html>&"} {
		var got string
		if err := json.Unmarshal(appendString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got != want {
			t.Fatalf("%q round-tripped to %q", s, got)
		}
	}
}
