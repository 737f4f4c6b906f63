package dashboard

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, h http.Handler, method, target, host string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if host != "" {
		req.Host = host
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandler(t *testing.T) {
	h, err := Handler(Config{HubPort: 4446, Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, target string
		code         int
		ctype        string
		contains     string
	}{
		{"page", "/", 200, "text/html", `<script type="module" src="/dashboard/app.js">`},
		{"script", "/dashboard/app.js", 200, "text/javascript", "from './client/index.js'"},
		{"styles", "/dashboard/app.css", 200, "text/css", ".fleet"},
		{"client", "/dashboard/client/index.js", 200, "text/javascript", "PearldClient"},
		{"client module", "/dashboard/client/client.js", 200, "text/javascript", "export class PearldClient"},
		{"no listing", "/dashboard/", 404, "", ""},
		{"no client listing", "/dashboard/client/", 404, "", ""},
		{"unknown asset", "/dashboard/nope.js", 404, "", ""},
		{"template not as asset", "/dashboard/index.html", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serve(t, h, http.MethodGet, tt.target, "")
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code {
				t.Fatalf("GET %s = %d, want %d", tt.target, resp.StatusCode, tt.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("Content-Type = %q, want %s", ct, tt.ctype)
			}
			if !strings.Contains(string(body), tt.contains) {
				t.Errorf("body lacks %q", tt.contains)
			}
		})
	}
}

func TestPageConfigAndPolicy(t *testing.T) {
	h, err := Handler(Config{HubPort: 4446, Version: "v1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	resp := serve(t, h, http.MethodGet, "/", "pearl.example.com:3447")
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?s)<script type="application/json" id="pearld-config">(.*?)</script>`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no config element in\n%s", body)
	}
	var cfg map[string]any
	if err := json.Unmarshal(m[1], &cfg); err != nil {
		t.Fatalf("config %s: %v", m[1], err)
	}
	if cfg["hubPort"] != float64(4446) || cfg["hubPath"] != "/ws/realtime" || cfg["version"] != "v1.2.3" {
		t.Errorf("config = %v", cfg)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self' ws://pearl.example.com:4446 wss://pearl.example.com:4446 http://pearl.example.com:4446 https://pearl.example.com:4446;", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Error("the page may leak its URL in Referer headers")
	}

	// A Host header that is not a host name stays out of the policy.
	resp = serve(t, h, http.MethodGet, "/", "evil;script-src *")
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "evil") || !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("CSP with a bad Host = %q", csp)
	}

	// An explicit hub URL and API base replace the derived ones.
	h, err = Handler(Config{HubURL: "wss://hub.example.com/ws/realtime", APIBase: "https://api.example.com", Version: "x"})
	if err != nil {
		t.Fatal(err)
	}
	csp = serve(t, h, http.MethodGet, "/", "").Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self' wss://hub.example.com https://api.example.com;") {
		t.Errorf("CSP = %q", csp)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{HubPort: 70000},
		{HubURL: "hub.example.com"},
		{APIBase: "ftp://x"},
	} {
		if _, err := Handler(cfg); err == nil {
			t.Errorf("Handler(%+v) accepted a bad config", cfg)
		}
	}
}

// TestPatterns checks that Patterns mount next to the status listener's
// other routes (the engine's, the webhook's) without a conflict, and that
// they leave those routes alone.
func TestPatterns(t *testing.T) {
	h, err := Handler(Config{})
	if err != nil {
		t.Fatal(err)
	}
	other := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	mux := http.NewServeMux()
	for _, p := range []string{"GET /health", "GET /status", "GET /metrics", "/webhook/event"} {
		mux.Handle(p, other)
	}
	for _, p := range Patterns {
		mux.Handle(p, h) // panics on a conflict
	}
	for target, want := range map[string]int{
		"/": 200, "/dashboard/app.js": 200, "/health": 418, "/webhook/event": 418, "/metrics": 418, "/nope": 404,
	} {
		if got := serve(t, mux, http.MethodGet, target, "").StatusCode; got != want {
			t.Errorf("GET %s = %d, want %d", target, got, want)
		}
	}
	if got := serve(t, mux, http.MethodPost, "/", "").StatusCode; got != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", got)
	}
}
