package pearltest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	tests := []struct {
		fault       Fault
		path        string
		wantCode    int
		wantType    string // Content-Type prefix
		wantStatus  string // envelope status when the body is JSON
		wantHeader  [2]string
		wantInBody  string
		wantInvalid bool // body is not valid JSON
		wantEmpty   bool
	}{
		{fault: FaultNone, path: "/api/v2.0/system/status", wantCode: 200, wantType: "application/json", wantStatus: "ok"},
		{fault: FaultUnauthorized, path: "/api/v2.0/system/status", wantCode: 401, wantType: "application/json",
			wantStatus: "error", wantHeader: [2]string{"WWW-Authenticate", `Basic realm="Pearl"`}},
		{fault: FaultForbidden, path: "/api/v2.0/channels", wantCode: 403, wantType: "application/json", wantStatus: "forbidden"},
		{fault: FaultUnavailable, path: "/api/v2.0/channels", wantCode: 503, wantType: "text/html",
			wantInBody: "booting", wantInvalid: true, wantHeader: [2]string{"Retry-After", "10"}},
		{fault: FaultGarbage, path: "/api/v2.0/channels", wantCode: 200, wantType: "application/json", wantInvalid: true},
		{fault: FaultTruncated, path: "/api/v2.0/channels?publishers=true", wantCode: 200, wantType: "application/json",
			wantInBody: `{"status":"ok","result":[{"id":"1"`, wantInvalid: true},
		{fault: FaultEmpty, path: "/api/v2.0/system/status", wantCode: 200, wantType: "application/json", wantEmpty: true},
		{fault: FaultHTML, path: "/api/v2.0/system/status", wantCode: 200, wantType: "text/html",
			wantInBody: "<html>", wantInvalid: true},
		{fault: FaultNotOK, path: "/api/v2.0/system/ident", wantCode: 200, wantType: "application/json", wantStatus: "error"},
		{fault: FaultNotFoundAPI, path: "/api/v2.0/system/firmware", wantCode: 404, wantType: "text/html",
			wantInBody: "Not Found", wantInvalid: true},
		{fault: FaultNotFoundAPI, path: "/api/v2.0", wantCode: 404, wantType: "text/html", wantInvalid: true},
		{fault: FaultNotFoundAPI, path: "/api/v1.0/x", wantCode: 404, wantType: "application/json", wantStatus: "notfound"},
	}
	for _, tt := range tests {
		t.Run(tt.fault.String()+tt.path, func(t *testing.T) {
			d := NewDevice(Options{})
			d.SetFault(tt.fault)
			w := do(t, d, http.MethodGet, tt.path)
			if w.Code != tt.wantCode {
				t.Fatalf("code = %d, want %d", w.Code, tt.wantCode)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.wantType) {
				t.Errorf("Content-Type = %q, want %q", ct, tt.wantType)
			}
			body := w.Body.Bytes()
			if json.Valid(body) == tt.wantInvalid && !tt.wantEmpty {
				t.Errorf("body valid JSON = %v, want %v: %q", json.Valid(body), !tt.wantInvalid, body)
			}
			if tt.wantEmpty != (len(body) == 0) {
				t.Errorf("body = %q, want empty %v", body, tt.wantEmpty)
			}
			if tt.wantStatus != "" {
				var env envelope
				if err := json.Unmarshal(body, &env); err != nil || env.Status != tt.wantStatus {
					t.Errorf("envelope %s (%v), want status %q", body, err, tt.wantStatus)
				}
				if env.Status != "ok" && env.Message == "" {
					t.Errorf("error envelope without message: %s", body)
				}
			}
			if h := tt.wantHeader; h[0] != "" && w.Header().Get(h[0]) != h[1] {
				t.Errorf("%s = %q, want %q", h[0], w.Header().Get(h[0]), h[1])
			}
			if !strings.Contains(string(body), tt.wantInBody) {
				t.Errorf("body %q does not contain %q", body, tt.wantInBody)
			}
			if d.Requests(strings.SplitN(tt.path, "?", 2)[0]) != 1 {
				t.Error("faulty request not counted")
			}
		})
	}
}

func TestFaultTruncatedPrefixOfAnswer(t *testing.T) {
	d := NewDevice(Options{})
	full := strings.TrimSpace(do(t, d, http.MethodGet, "/api/v2.0/system/ident").Body.String())
	d.SetFault(FaultTruncated)
	cut := do(t, d, http.MethodGet, "/api/v2.0/system/ident").Body.String()
	if len(cut) == 0 || len(cut) >= len(full) || !strings.HasPrefix(full, cut) {
		t.Fatalf("truncated %q is not a proper prefix of %q", cut, full)
	}
	// The request still takes effect, as when a device's answer is lost.
	do(t, d, http.MethodPost, "/api/v2.0/channels/1/publishers/0/control/start")
	if st, _ := d.PublisherStatus("1", "0"); st.State != StateStarting {
		t.Fatalf("state after truncated start = %q, want starting", st.State)
	}
}

func TestFaultsBeforeAuth(t *testing.T) {
	d := NewDevice(Options{Password: "secret"})
	d.SetFault(FaultUnavailable)
	w := httptest.NewRecorder()
	d.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v2.0/system/status", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("booting device without credentials: code %d, want 503", w.Code)
	}
	d.SetFault(FaultTruncated)
	w = do(t, d, http.MethodGet, "/api/v2.0/system/status") // wrong password
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("truncated answer with a wrong password: code %d, want 401", w.Code)
	}
}

func TestFaultSlow(t *testing.T) {
	const delay = 150 * time.Millisecond
	d := NewDevice(Options{FaultDelay: delay})
	d.SetFault(FaultSlow)

	start := time.Now()
	w := do(t, d, http.MethodGet, "/api/v2.0/system/status")
	if took := time.Since(start); took < delay {
		t.Errorf("slow answer took %v, want at least %v", took, delay)
	}
	result[apiSystem](t, w)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v2.0/system/status", nil)
	r.SetBasicAuth("admin", "")
	w = httptest.NewRecorder()
	start = time.Now()
	d.ServeHTTP(w, r)
	if took := time.Since(start); took >= delay {
		t.Errorf("canceled request took %v, want it to end with its context", took)
	}
	if w.Body.Len() != 0 {
		t.Errorf("canceled request got an answer: %s", w.Body)
	}
}

func TestInjectFault(t *testing.T) {
	d := NewDevice(Options{})
	d.SetFault(FaultForbidden)
	d.InjectFault(FaultNotOK, 2)
	var codes []string
	for range 4 {
		w := do(t, d, http.MethodGet, "/api/v2.0/system/ident")
		var env envelope
		_ = json.Unmarshal(w.Body.Bytes(), &env)
		codes = append(codes, env.Status)
	}
	if got := strings.Join(codes, ","); got != "error,error,forbidden,forbidden" {
		t.Fatalf("statuses = %s", got)
	}
	d.SetFault(FaultNone)
	d.InjectFault(FaultEmpty, 1)
	if w := do(t, d, http.MethodGet, "/api/v2.0/system/ident"); w.Body.Len() != 0 {
		t.Fatalf("injected empty: %s", w.Body)
	}
	result[map[string]string](t, do(t, d, http.MethodGet, "/api/v2.0/system/ident"))
}

func TestFaultNames(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range append(Faults(), FaultNone) {
		name := f.String()
		if name == "" || seen[name] || strings.HasPrefix(name, "fault(") {
			t.Errorf("fault %d has name %q", int(f), name)
		}
		seen[name] = true
	}
	if len(Faults()) != 10 {
		t.Errorf("Faults() has %d faults, want 10", len(Faults()))
	}
	if got := Fault(99).String(); got != "fault(99)" {
		t.Errorf("unknown fault name = %q", got)
	}
}
