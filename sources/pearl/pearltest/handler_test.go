package pearltest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestChannelsQueryShapes(t *testing.T) {
	tests := []struct {
		name         string
		query        string
		wantIDs      []string
		wantPubs     bool // "publishers" key present
		wantStatus   bool
		wantSettings bool
		wantEncoders bool
		wantLayout   bool
	}{
		{name: "plain", query: "", wantIDs: []string{"1", "2"}},
		{name: "publishers", query: "?publishers=true", wantIDs: []string{"1", "2"}, wantPubs: true},
		{name: "publishers and status", query: "?publishers=true&publishers-status=true",
			wantIDs: []string{"1", "2"}, wantPubs: true, wantStatus: true},
		{name: "status without publishers", query: "?publishers-status=true", wantIDs: []string{"1", "2"}},
		{name: "publishers false", query: "?publishers=false&publishers-status=true", wantIDs: []string{"1", "2"}},
		{name: "settings", query: "?publishers=true&publishers-settings=true",
			wantIDs: []string{"1", "2"}, wantPubs: true, wantSettings: true},
		{name: "everything", query: "?publishers=true&publishers-status=true&publishers-settings=true&encoders=true&active_layout=true",
			wantIDs: []string{"1", "2"}, wantPubs: true, wantStatus: true, wantSettings: true, wantEncoders: true, wantLayout: true},
		{name: "encoders", query: "?encoders=true", wantIDs: []string{"1", "2"}, wantEncoders: true},
		{name: "one id", query: "?ids=2&publishers=true", wantIDs: []string{"2"}, wantPubs: true},
		{name: "ids keep device order", query: "?ids=2,1", wantIDs: []string{"1", "2"}},
		{name: "unknown id left out", query: "?ids=9,1", wantIDs: []string{"1"}},
		{name: "only unknown ids", query: "?ids=9", wantIDs: []string{}},
		{name: "empty ids means all", query: "?ids=", wantIDs: []string{"1", "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDevice(Options{})
			w := do(t, d, http.MethodGet, "/api/v2.0/channels"+tt.query)
			typed := result[[]apiChannel](t, w)
			raw := result[[]map[string]json.RawMessage](t, w)
			if raw == nil {
				t.Fatal("result is null, want an array")
			}
			var ids []string
			for _, c := range typed {
				ids = append(ids, c.ID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Fatalf("ids = %v, want %v", ids, tt.wantIDs)
			}
			for i, c := range raw {
				if _, ok := c["name"]; !ok {
					t.Errorf("channel %s has no name", typed[i].ID)
				}
				if _, ok := c["publishers"]; ok != tt.wantPubs {
					t.Errorf("channel %s: publishers present = %v, want %v", typed[i].ID, ok, tt.wantPubs)
				}
				if _, ok := c["encoders"]; ok != tt.wantEncoders {
					t.Errorf("channel %s: encoders present = %v, want %v", typed[i].ID, ok, tt.wantEncoders)
				}
				if _, ok := c["active_layout"]; ok != tt.wantLayout {
					t.Errorf("channel %s: active_layout present = %v, want %v", typed[i].ID, ok, tt.wantLayout)
				}
				for _, p := range typed[i].Publishers {
					if p.ID == "" || p.Type == "" || p.Name == "" {
						t.Errorf("publisher %+v lacks id, type or name", p)
					}
					if (p.Status != nil) != tt.wantStatus {
						t.Errorf("publisher %s: status present = %v, want %v", p.ID, p.Status != nil, tt.wantStatus)
					}
					if (p.Settings != nil) != tt.wantSettings {
						t.Errorf("publisher %s: settings present = %v, want %v", p.ID, p.Settings != nil, tt.wantSettings)
					}
				}
			}
		})
	}
}

func TestChannelsDefaultLayout(t *testing.T) {
	d := NewDevice(Options{})
	chans := getResult[[]apiChannel](t, d, "/api/v2.0/channels?publishers=true&publishers-status=true&encoders=true")
	type pub struct{ ch, id, typ, name string }
	var got []pub
	for _, c := range chans {
		for _, p := range c.Publishers {
			got = append(got, pub{c.ID, p.ID, p.Type, p.Name})
			if !p.Status.IsConfigured || p.Status.Started || p.Status.State != StateStopped {
				t.Errorf("publisher %s/%s status = %+v, want configured and stopped", c.ID, p.ID, p.Status)
			}
			if p.Status.Since != nil || p.Status.Duration != nil || p.Status.Statistics != nil {
				t.Errorf("stopped publisher %s/%s reports running fields: %+v", c.ID, p.ID, p.Status)
			}
		}
		want := []apiEncoder{
			{ID: "0", Type: "video", Name: "H.264", Resolution: "1920x1080", Framerate: 30, Bitrate: 3000},
			{ID: "1", Type: "audio", Name: "AAC", Bitrate: 128, Channels: 2},
		}
		if !slices.Equal(c.Encoders, want) {
			t.Errorf("channel %s encoders = %+v, want %+v", c.ID, c.Encoders, want)
		}
	}
	want := []pub{{"1", "0", "rtmp", "Stream 1"}, {"1", "1", "srt", "Stream 2"}, {"2", "0", "rtmp", "Stream 1"}}
	if !slices.Equal(got, want) {
		t.Fatalf("publishers = %v, want %v", got, want)
	}
}

func TestChannelsEmptyPublishers(t *testing.T) {
	d := NewDevice(Options{Channels: []Channel{{ID: "4", Name: "Empty"}}})
	w := do(t, d, http.MethodGet, "/api/v2.0/channels?publishers=true")
	if !jsonEqual(t, w.Body.Bytes(), `{"status":"ok","result":[{"id":"4","name":"Empty","publishers":[]}]}`) {
		t.Fatalf("body = %s", w.Body)
	}
	d = NewDevice(Options{Channels: []Channel{}})
	w = do(t, d, http.MethodGet, "/api/v2.0/channels")
	if !jsonEqual(t, w.Body.Bytes(), `{"status":"ok","result":[]}`) {
		t.Fatalf("no channels: body = %s", w.Body)
	}
}

func TestChannelsBadParameter(t *testing.T) {
	d := NewDevice(Options{})
	wantError(t, do(t, d, http.MethodGet, "/api/v2.0/channels?publishers=maybe"), http.StatusBadRequest, "badrequest")
}

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantCode   int
		wantStatus string // envelope status
		wantResult string // JSON, compared when not empty
		wantAllow  string
	}{
		{name: "channel name", path: "/channels/1/name", wantCode: 200, wantStatus: "ok", wantResult: `"HDMI-A"`},
		{name: "publishers", path: "/channels/1/publishers", wantCode: 200, wantStatus: "ok",
			wantResult: `[{"id":"0","type":"rtmp","name":"Stream 1"},{"id":"1","type":"srt","name":"Stream 2"}]`},
		{name: "publisher types", path: "/channels/2/publishers/type", wantCode: 200, wantStatus: "ok",
			wantResult: `[{"id":"0","type":"rtmp","name":"Stream 1"}]`},
		{name: "publishers status", path: "/channels/1/publishers/status", wantCode: 200, wantStatus: "ok",
			wantResult: `[{"id":"0","type":"rtmp","status":{"is_configured":true,"started":false,"state":"stopped"}},
				{"id":"1","type":"srt","status":{"is_configured":true,"started":false,"state":"stopped"}}]`},
		{name: "publisher status", path: "/channels/1/publishers/1/status", wantCode: 200, wantStatus: "ok",
			wantResult: `{"is_configured":true,"started":false,"state":"stopped"}`},
		{name: "publisher type", path: "/channels/1/publishers/1/type", wantCode: 200, wantStatus: "ok", wantResult: `"srt"`},
		{name: "publisher name", path: "/channels/1/publishers/0/name", wantCode: 200, wantStatus: "ok", wantResult: `"Stream 1"`},
		{name: "publisher settings", path: "/channels/1/publishers/0/settings", wantCode: 200, wantStatus: "ok",
			wantResult: `{"type":"rtmp","common":{"enabled":true,"single_touch":true},"rtmp":{"disable_audio":false,
				"url":"rtmp://live.example.com/app/","stream":"stream-0","username":"","password":"","auto_created":false}}`},
		{name: "system ident", path: "/system/ident", wantCode: 200, wantStatus: "ok",
			wantResult: `{"name":"","location":"","description":""}`},
		{name: "firmware", path: "/system/firmware", wantCode: 200, wantStatus: "ok",
			wantResult: `{"version":"4.24.1","revision":"250107_1e4514f","product_id":44,"product_name":"Pearl-2"}`},
		{name: "firmware version", path: "/system/firmware/version", wantCode: 200, wantStatus: "ok", wantResult: `"4.24.1"`},
		{name: "firmware product id", path: "/system/firmware/product_id", wantCode: 200, wantStatus: "ok", wantResult: `44`},
		{name: "unknown channel", path: "/channels/9/publishers", wantCode: 404, wantStatus: "notfound"},
		{name: "unknown channel status", path: "/channels/9/publishers/status", wantCode: 404, wantStatus: "notfound"},
		{name: "unknown publisher", path: "/channels/1/publishers/9/status", wantCode: 404, wantStatus: "notfound"},
		{name: "no single channel GET", path: "/channels/1", wantCode: 404, wantStatus: "notfound"},
		{name: "unknown publisher field", path: "/channels/1/publishers/0/bogus", wantCode: 404, wantStatus: "notfound"},
		{name: "unknown control", method: "POST", path: "/channels/1/publishers/control/pause", wantCode: 404, wantStatus: "notfound"},
		{name: "unknown firmware field", path: "/system/firmware/bogus", wantCode: 404, wantStatus: "notfound"},
		{name: "unknown path", path: "/bogus", wantCode: 404, wantStatus: "notfound"},
		{name: "api root", path: "", wantCode: 404, wantStatus: "notfound"},
		{name: "trailing slash", path: "/channels/", wantCode: 404, wantStatus: "notfound"},
		{name: "empty segment", path: "/channels//publishers", wantCode: 404, wantStatus: "notfound"},
		{name: "POST to a GET path", method: "POST", path: "/channels", wantCode: 405, wantStatus: "error", wantAllow: "GET"},
		{name: "DELETE system status", method: "DELETE", path: "/system/status", wantCode: 405, wantStatus: "error", wantAllow: "GET"},
		{name: "GET a control path", path: "/channels/1/publishers/0/control/start", wantCode: 405, wantStatus: "error", wantAllow: "POST"},
		{name: "control unknown channel", method: "POST", path: "/channels/9/publishers/control/start", wantCode: 404, wantStatus: "notfound"},
		{name: "control unknown publisher", method: "POST", path: "/channels/1/publishers/7/control/stop", wantCode: 404, wantStatus: "notfound"},
		{name: "control channel", method: "POST", path: "/channels/2/publishers/control/stop", wantCode: 200, wantStatus: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDevice(Options{})
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			w := do(t, d, method, "/api/v2.0"+tt.path)
			if w.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d; body %s", w.Code, tt.wantCode, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var env envelope
			if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
				t.Fatalf("decoding %s: %v", w.Body, err)
			}
			if env.Status != tt.wantStatus {
				t.Fatalf("status = %q, want %q", env.Status, tt.wantStatus)
			}
			if env.Status != "ok" && env.Message == "" {
				t.Errorf("error envelope without message: %s", w.Body)
			}
			if tt.wantResult != "" && !jsonEqual(t, env.Result, tt.wantResult) {
				t.Errorf("result = %s, want %s", env.Result, tt.wantResult)
			}
			if got := w.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestNotFoundMessages(t *testing.T) {
	d := NewDevice(Options{})
	env := wantError(t, do(t, d, http.MethodGet, "/api/v2.0/channels/100/publishers/0/status"), 404, "notfound")
	if env.Message != "channel '100' not found" {
		t.Errorf("message = %q", env.Message)
	}
	env = wantError(t, do(t, d, http.MethodPost, "/api/v2.0/channels/1/publishers/99/control/start"), 404, "notfound")
	if env.Message != "streamer '99' for channel '1' not found" {
		t.Errorf("message = %q", env.Message)
	}
}

func TestSettingsSRTModes(t *testing.T) {
	d := NewDevice(Options{Channels: []Channel{{ID: "5", Name: "x", Publishers: []Publisher{
		{ID: "0", Type: TypeSRT, Name: "caller", Status: PublisherStatus{IsConfigured: true}},
		{ID: "1", Type: TypeSRT, Name: "listener", Mode: ModeListener, Status: PublisherStatus{IsConfigured: true}},
		{ID: "2", Type: "hls", Name: "hls"},
	}}}})
	type settings struct {
		Type   string                     `json:"type"`
		Common struct{ Enabled bool }     `json:"common"`
		SRT    map[string]json.RawMessage `json:"srt"`
		HLS    map[string]json.RawMessage `json:"hls"`
	}
	caller := getResult[settings](t, d, "/api/v2.0/channels/5/publishers/0/settings")
	if string(caller.SRT["mode"]) != `"caller"` || caller.SRT["url"] == nil || !caller.Common.Enabled {
		t.Errorf("caller settings = %+v", caller)
	}
	listener := getResult[settings](t, d, "/api/v2.0/channels/5/publishers/1/settings")
	if string(listener.SRT["mode"]) != `"listener"` || listener.SRT["port"] == nil {
		t.Errorf("listener settings = %+v", listener)
	}
	hls := getResult[settings](t, d, "/api/v2.0/channels/5/publishers/2/settings")
	if hls.Type != "hls" || hls.HLS == nil || hls.Common.Enabled {
		t.Errorf("unconfigured hls settings = %+v", hls)
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name       string
		password   string // device password
		changeTo   *string
		user, pass string
		noAuth     bool
		wantCode   int
	}{
		{name: "empty password accepted", user: "admin", pass: "", wantCode: 200},
		{name: "no credentials", noAuth: true, wantCode: 401},
		{name: "wrong password", password: "secret", user: "admin", pass: "nope", wantCode: 401},
		{name: "wrong user", password: "secret", user: "root", pass: "secret", wantCode: 401},
		{name: "right password", password: "secret", user: "admin", pass: "secret", wantCode: 200},
		{name: "empty password required", password: "secret", user: "admin", pass: "", wantCode: 401},
		{name: "old password after change", password: "old", changeTo: ptr("new"), user: "admin", pass: "old", wantCode: 401},
		{name: "new password after change", password: "old", changeTo: ptr("new"), user: "admin", pass: "new", wantCode: 200},
		{name: "changed to empty", password: "old", changeTo: ptr(""), user: "admin", pass: "", wantCode: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDevice(Options{Password: tt.password})
			if tt.changeTo != nil {
				d.SetPassword(*tt.changeTo)
			}
			r := httptest.NewRequest(http.MethodGet, "/api/v2.0/system/status", nil)
			if !tt.noAuth {
				r.SetBasicAuth(tt.user, tt.pass)
			}
			w := httptest.NewRecorder()
			d.ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tt.wantCode)
			}
			if tt.wantCode == 401 {
				if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="Pearl"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				wantError(t, w, 401, "error")
			}
			if d.Requests("/api/v2.0/system/status") != 1 {
				t.Errorf("request not counted")
			}
		})
	}
}

func TestCustomUsername(t *testing.T) {
	d := NewDevice(Options{Username: "operator", Password: "pw"})
	r := httptest.NewRequest(http.MethodGet, "/api/v2.0/system/ident", nil)
	r.SetBasicAuth("operator", "pw")
	w := httptest.NewRecorder()
	d.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("code = %d", w.Code)
	}
	wantError(t, do(t, d, http.MethodGet, "/api/v2.0/system/ident"), 401, "error")
}

func ptr[T any](v T) *T { return &v }
