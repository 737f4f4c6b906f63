package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testSecret = "0123456789abcdef0123456789abcdef-webhook"
	testKey    = "service-key-of-the-laravel-backend"
)

type harness struct {
	t   *testing.T
	src *Source
	url string

	mu      sync.Mutex
	emitted []engine.Event
}

// newHarness starts a webhook source on a status listener of its own,
// with a service key and JWT_SECRET-style tokens. emit, when not nil,
// replaces recording the emitted events.
func newHarness(t *testing.T, configure func(s *Source), emit func(engine.Event)) *harness {
	t.Helper()
	t.Setenv(auth.SecretEnv, "")
	s := New()
	s.JWTSecret = testSecret
	s.ServiceKeys = []string{testKey}
	if configure != nil {
		configure(s)
	}
	h := &harness{t: t, src: s}
	if emit == nil {
		emit = func(e engine.Event) {
			h.mu.Lock()
			h.emitted = append(h.emitted, e)
			h.mu.Unlock()
		}
	}
	const status = "127.0.0.1:0"
	ls := engine.NewListeners(nil)
	env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test", Name: "ingest", Type: "webhook", StatusAddr: status, Listeners: ls})
	if err := s.Init(env); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, emit) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = s.Close(context.Background())
		ls.Shutdown(context.Background())
		closeEnv(context.Background())
	})
	addr := s.Listen
	if addr == "" {
		addr = status
	}
	h.url = "http://" + ls.Addr(addr).String() + s.Path
	return h
}

func (h *harness) events() []engine.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]engine.Event(nil), h.emitted...)
}

// response is an answer of the endpoint, its JSON body decoded.
type response struct {
	code   int
	header http.Header
	body   map[string]any
}

// post sends body with the Content-Type JSON and header set.
func (h *harness) post(body string, header map[string]string) response {
	h.t.Helper()
	return h.do(http.MethodPost, strings.NewReader(body), header)
}

func (h *harness) do(method string, body io.Reader, header map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, h.url, err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		h.t.Fatalf("answer %d has Content-Type %q", resp.StatusCode, ct)
	}
	r := response{code: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&r.body); err != nil {
		h.t.Fatalf("answer %d: %v", resp.StatusCode, err)
	}
	return r
}

// metric returns pearld_webhook_requests_total{result}.
func (h *harness) metric(result string) float64 {
	var m dto.Metric
	if err := h.src.metrics.requests.WithLabelValues(result).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return m.Counter.GetValue()
}

func mint(t *testing.T, perms auth.Permissions, devices []string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testSecret), auth.MintOptions{Subject: "backend", Permissions: perms, Devices: devices, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) string { return "Bearer " + tok }

const okEvent = `{"type":"encoder_alarm","device":"studio-z","data":{"level":"critical"}}`

func TestRejections(t *testing.T) {
	admin := mint(t, auth.Permissions{Admin: true}, nil)
	reader := mint(t, auth.Permissions{RealtimeData: true}, nil)
	control := mint(t, auth.Permissions{PublisherControl: true}, nil)
	studioOnly := mint(t, auth.Permissions{Admin: true}, []string{"studio-a"})
	expired, err := auth.Mint([]byte(testSecret), auth.MintOptions{Subject: "old", Permissions: auth.Permissions{Admin: true},
		TTL: time.Minute, Now: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	otherSecret, err := auth.Mint([]byte(strings.Repeat("x", 40)), auth.MintOptions{Subject: "x", Permissions: auth.Permissions{Admin: true}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	key := map[string]string{ServiceKeyHeader: testKey}
	withKey := func(kv ...string) map[string]string {
		m := map[string]string{ServiceKeyHeader: testKey}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name   string
		method string
		header map[string]string
		body   string
		code   int
		reason string
		msg    string // part of the message, when it matters
	}{
		{"GET", http.MethodGet, key, "", 405, reasonMethod, "use POST"},
		{"PUT", http.MethodPut, key, okEvent, 405, reasonMethod, ""},
		{"no credentials", "", nil, okEvent, 401, reasonUnauth, auth.ReasonUnauthenticated},
		{"wrong service key", "", map[string]string{ServiceKeyHeader: testKey + "x"}, okEvent, 401, reasonUnauth, ""},
		{"service key prefix", "", map[string]string{ServiceKeyHeader: testKey[:20]}, okEvent, 401, reasonUnauth, ""},
		{"wrong key beside a good token", "", map[string]string{ServiceKeyHeader: "nope", "Authorization": bearer(admin)}, okEvent, 401, reasonUnauth, ""},
		{"garbage token", "", map[string]string{"Authorization": "Bearer not.a.token"}, okEvent, 401, reasonUnauth, ""},
		{"expired token", "", map[string]string{"Authorization": bearer(expired)}, okEvent, 401, reasonUnauth, ""},
		{"token of another secret", "", map[string]string{"Authorization": bearer(otherSecret)}, okEvent, 401, reasonUnauth, ""},
		{"reader token", "", map[string]string{"Authorization": bearer(reader)}, okEvent, 403, reasonForbidden, auth.ReasonForbidden},
		{"control token", "", map[string]string{"X-Auth-Token": control}, okEvent, 403, reasonForbidden, ""},
		{"device outside the token's devices", "", map[string]string{"Authorization": bearer(studioOnly)}, okEvent, 403, reasonForbidden, `device "studio-z" is not allowed`},
		{"one device of an array outside the token's devices", "", map[string]string{"Authorization": bearer(studioOnly)},
			`[{"type":"t","device":"studio-a","data":{}},{"type":"t","device":"studio-b","data":{}}]`, 403, reasonForbidden, `"studio-b"`},
		{"text/plain", "", withKey("Content-Type", "text/plain"), okEvent, 415, reasonMediaType, "application/json"},
		{"form", "", withKey("Content-Type", "application/x-www-form-urlencoded"), "a=b", 415, reasonMediaType, ""},
		{"no content type", "", withKey("Content-Type", ""), okEvent, 415, reasonMediaType, ""},
		{"latin-1", "", withKey("Content-Type", "application/json; charset=iso-8859-1"), okEvent, 415, reasonMediaType, "UTF-8"},
		{"oversized", "", key, `{"type":"t","device":"d","data":{"pad":"` + strings.Repeat("p", 2048) + `"}}`, 413, reasonTooLarge, "1024 bytes"},
		{"too many events", "", key, "[" + strings.TrimSuffix(strings.Repeat(okEvent+",", 4), ",") + "]", 413, reasonTooLarge, "4 events"},
		{"empty body", "", key, "", 400, reasonMalformed, "empty"},
		{"malformed JSON", "", key, `{"type":"t",`, 400, reasonMalformed, "not valid JSON"},
		{"trailing garbage", "", key, okEvent + "x", 400, reasonMalformed, ""},
		{"a string", "", key, `"event"`, 400, reasonInvalid, "event object"},
		{"empty array", "", key, `[]`, 400, reasonInvalid, "no event"},
		{"missing type", "", key, `{"device":"d","data":{}}`, 400, reasonInvalid, "type: want a non-empty string"},
		{"type not a string", "", key, `{"type":5,"device":"d","data":{}}`, 400, reasonInvalid, "type:"},
		{"type with a colon", "", key, `{"type":"a:b","device":"d","data":{}}`, 400, reasonInvalid, `type "a:b"`},
		{"missing device", "", key, `{"type":"t","data":{}}`, 400, reasonInvalid, "device: required"},
		{"empty device", "", key, `{"type":"t","device":"","data":{}}`, 400, reasonInvalid, "device: required"},
		{"bad device id", "", key, `{"type":"t","device":"studio z","data":{}}`, 400, reasonInvalid, `device "studio z"`},
		{"long device id", "", key, `{"type":"t","device":"` + strings.Repeat("d", 65) + `","data":{}}`, 400, reasonInvalid, "device"},
		{"negative channel", "", key, `{"type":"t","device":"d","channel":-1,"data":{}}`, 400, reasonInvalid, "channel"},
		{"fractional channel", "", key, `{"type":"t","device":"d","channel":1.5,"data":{}}`, 400, reasonInvalid, "channel"},
		{"boolean publisherId", "", key, `{"type":"t","device":"d","publisherId":true,"data":{}}`, 400, reasonInvalid, "publisherId"},
		{"bad publisherId", "", key, `{"type":"t","device":"d","publisherId":"a/b","data":{}}`, 400, reasonInvalid, "publisherId"},
		{"missing data", "", key, `{"type":"t","device":"d"}`, 400, reasonInvalid, "data: want a JSON object"},
		{"data null", "", key, `{"type":"t","device":"d","data":null}`, 400, reasonInvalid, "data"},
		{"data an array", "", key, `{"type":"t","device":"d","data":[1]}`, 400, reasonInvalid, "data"},
		{"data a string", "", key, `{"type":"t","device":"d","data":"{}"}`, 400, reasonInvalid, "data"},
		{"bad timestamp", "", key, `{"type":"t","device":"d","data":{},"timestamp":"yesterday"}`, 400, reasonInvalid, "timestamp"},
		{"numeric timestamp", "", key, `{"type":"t","device":"d","data":{},"timestamp":1764102672}`, 400, reasonInvalid, "timestamp"},
		{"type outside data_types", "", key, `{"type":"publisher_status","device":"d","data":{}}`, 400, reasonInvalid, "not accepted here"},
		{"one bad event in an array", "", key, `[` + okEvent + `,{"type":"t","data":{}}]`, 400, reasonInvalid, "events[1]: device: required"},
	}
	h := newHarness(t, func(s *Source) {
		s.MaxBody = 1024
		s.MaxEvents = 3
		s.Types = []string{"encoder_alarm", "t"}
	}, nil)
	counts := map[string]float64{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			r := h.do(method, strings.NewReader(tt.body), tt.header)
			if r.code != tt.code || r.body["status"] != "error" || r.body["error"] != tt.reason {
				t.Fatalf("answer %d %v, want %d with error %q", r.code, r.body, tt.code, tt.reason)
			}
			if msg, _ := r.body["message"].(string); !strings.Contains(msg, tt.msg) || msg == "" {
				t.Fatalf("message %q, want it to contain %q", msg, tt.msg)
			}
			if tt.code == 405 && r.header.Get("Allow") != "POST" {
				t.Fatalf("Allow: %q", r.header.Get("Allow"))
			}
			if tt.code == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate: %q", r.header.Get("WWW-Authenticate"))
			}
			counts[tt.reason]++
		})
	}
	// A body without Content-Length is cut at max_body too.
	r := h.do(http.MethodPost, io.MultiReader(strings.NewReader(`{"pad":"`), strings.NewReader(strings.Repeat("p", 4096)+`"}`)), key)
	if r.code != 413 {
		t.Fatalf("streamed oversized body: %d %v", r.code, r.body)
	}
	counts[reasonTooLarge]++
	// Whatever was refused, nothing reached the pipeline.
	if ev := h.events(); len(ev) != 0 {
		t.Fatalf("refused requests emitted %v", ev)
	}
	for reason, n := range counts {
		if got := h.metric(reason); got != n {
			t.Errorf("requests_total{result=%q} = %v, want %v", reason, got, n)
		}
	}
	if got := h.metric(resultAccepted); got != 0 {
		t.Errorf("requests_total{result=accepted} = %v", got)
	}
}

func TestAccepted(t *testing.T) {
	h := newHarness(t, nil, nil)
	admin := mint(t, auth.Permissions{Admin: true}, nil)
	studio := mint(t, auth.Permissions{Admin: true}, []string{"studio-*"})
	tests := []struct {
		name   string
		header map[string]string
		body   string
		want   []engine.Event // Time zero: the time of receipt
	}{
		{"service key, every field", map[string]string{ServiceKeyHeader: testKey},
			`{"type":"publisher_status","device":"192.168.1.100","channel":1,"publisherId":"0",
			  "data":{ "publishers": [ {"id":"0"} ], "device_id":"192.168.1.100" },
			  "timestamp":"2026-11-25T20:31:12.345Z","source":"laravel"}`,
			[]engine.Event{{Type: "publisher_status", Device: "192.168.1.100", Channel: "1", Publisher: "0",
				Time: time.Date(2026, 11, 25, 20, 31, 12, 345e6, time.UTC), Data: json.RawMessage(`{"publishers":[{"id":"0"}],"device_id":"192.168.1.100"}`)}}},
		{"admin token, minimal", map[string]string{"Authorization": bearer(admin)}, okEvent,
			[]engine.Event{{Type: "encoder_alarm", Device: "studio-z", Data: json.RawMessage(`{"level":"critical"}`)}}},
		{"token limited to the device", map[string]string{"X-Auth-Token": studio, "Content-Type": "application/json; charset=UTF-8"}, okEvent,
			[]engine.Event{{Type: "encoder_alarm", Device: "studio-z", Data: json.RawMessage(`{"level":"critical"}`)}}},
		{"an array, in order", map[string]string{ServiceKeyHeader: testKey, "Content-Type": "application/vnd.events+json"},
			`[{"type":"a","device":"d","channel":"2","data":{}},
			  {"type":"b","device":"d","publisherId":7,"data":{"x":1},"timestamp":"2026-11-25T21:31:12+01:00"},
			  {"type":"c","device":"e","channel":"","data":{"y":[]},"timestamp":null}]`,
			[]engine.Event{
				{Type: "a", Device: "d", Channel: "2", Data: json.RawMessage(`{}`)},
				{Type: "b", Device: "d", Publisher: "7", Data: json.RawMessage(`{"x":1}`), Time: time.Date(2026, 11, 25, 20, 31, 12, 0, time.UTC)},
				{Type: "c", Device: "e", Data: json.RawMessage(`{"y":[]}`)},
			}},
	}
	total := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			r := h.post(tt.body, tt.header)
			if r.code != http.StatusAccepted || r.body["status"] != "accepted" || r.body["events"] != float64(len(tt.want)) {
				t.Fatalf("answer %d %v", r.code, r.body)
			}
			total += len(tt.want)
			eventually(t, "the events to be emitted", func() bool { return len(h.events()) == total })
			got := h.events()[total-len(tt.want):]
			for i, w := range tt.want {
				g := got[i]
				if g.Type != w.Type || g.Device != w.Device || g.Channel != w.Channel || g.Publisher != w.Publisher || string(g.Data) != string(w.Data) {
					t.Fatalf("event %d = %+v, data %s; want %+v, data %s", i, g, g.Data, w, w.Data)
				}
				if w.Time.IsZero() {
					if g.Time.Before(before) || g.Time.After(time.Now()) {
						t.Errorf("event %d time %v, want the time of receipt", i, g.Time)
					}
				} else if !g.Time.Equal(w.Time) {
					t.Errorf("event %d time %v, want %v", i, g.Time, w.Time)
				}
				var hs engine.Hasher
				hs.Add(string(w.Data))
				if g.Hash != hs.Sum() {
					t.Errorf("event %d hash %x, want the hash of its data", i, g.Hash)
				}
			}
		})
	}
	if got := h.metric(resultAccepted); got != float64(len(tests)) {
		t.Errorf("requests_total{result=accepted} = %v", got)
	}
	var m dto.Metric
	_ = h.src.metrics.events.Write(&m)
	if m.Counter.GetValue() != float64(total) {
		t.Errorf("events_total = %v, want %d", m.Counter.GetValue(), total)
	}
}

func TestHashIgnoresLayoutNotContent(t *testing.T) {
	s := New()
	now := time.Now()
	hash := func(body string) uint64 {
		e, err := s.parseEvent(json.RawMessage(body), now)
		if err != nil {
			t.Fatal(err)
		}
		return e.Hash
	}
	a := hash(`{"type":"t","device":"d","data":{"a":1,"b":[true]}}`)
	if b := hash(`{"type":"t","device":"d","timestamp":"2026-01-01T00:00:00Z","data": { "a" : 1 ,
		"b" : [ true ] }}`); a != b {
		t.Error("white space or the timestamp changed the hash")
	}
	if c := hash(`{"type":"t","device":"d","data":{"a":2,"b":[true]}}`); a == c {
		t.Error("other data, same hash")
	}
}

// TestBackPressure checks that a request waits for a busy pipeline at most
// timeout, then gets 503 with nothing emitted, and that a stopped source
// answers 503 at once.
func TestBackPressure(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var emitted []string
	emit := func(e engine.Event) {
		<-release
		mu.Lock()
		emitted = append(emitted, e.Device)
		mu.Unlock()
	}
	h := newHarness(t, func(s *Source) { s.Timeout = engine.Duration(200 * time.Millisecond) }, emit)
	key := map[string]string{ServiceKeyHeader: testKey}
	// The first request is taken; Run then waits in emit.
	if r := h.post(`{"type":"t","device":"first","data":{}}`, key); r.code != http.StatusAccepted {
		t.Fatalf("first request: %d %v", r.code, r.body)
	}
	start := time.Now()
	r := h.post(`{"type":"t","device":"second","data":{}}`, key)
	if r.code != http.StatusServiceUnavailable || r.body["error"] != reasonUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("second request: %d %v %v", r.code, r.header, r.body)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 3*time.Second {
		t.Errorf("refused after %s, want the 200ms timeout", d)
	}
	close(release)
	eventually(t, "the first event", func() bool { mu.Lock(); defer mu.Unlock(); return len(emitted) == 1 })
	if r := h.post(`{"type":"t","device":"third","data":{}}`, key); r.code != http.StatusAccepted {
		t.Fatalf("third request: %d %v", r.code, r.body)
	}
	eventually(t, "the third event", func() bool { mu.Lock(); defer mu.Unlock(); return len(emitted) == 2 })
	mu.Lock()
	if emitted[0] != "first" || emitted[1] != "third" {
		t.Errorf("emitted %v, want first and third", emitted)
	}
	mu.Unlock()

	// Stopped: Close makes requests fail at once, not after the timeout.
	h.src.Timeout = engine.Duration(time.Hour)
	if err := h.src.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if r := h.post(`{"type":"t","device":"late","data":{}}`, key); r.code != http.StatusServiceUnavailable || r.body["error"] != reasonUnavailable {
		t.Fatalf("after Close: %d %v", r.code, r.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("refused after %s", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(emitted) != 2 {
		t.Errorf("emitted %v after Close", emitted)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestInit(t *testing.T) {
	tests := []struct {
		name      string
		env       string // JWT_SECRET
		status    string // env.StatusAddr
		configure func(s *Source)
		want      string // "" when Init succeeds
	}{
		{"neither keys nor tokens", "", "127.0.0.1:0", func(s *Source) {}, "no authentication configured"},
		{"service keys only", "", "127.0.0.1:0", func(s *Source) { s.ServiceKeys = []string{testKey} }, ""},
		{"JWT_SECRET only", testSecret, "127.0.0.1:0", func(s *Source) {}, ""},
		{"jwt_secret only", "", "127.0.0.1:0", func(s *Source) { s.JWTSecret = testSecret }, ""},
		{"short jwt_secret beside keys", "", "127.0.0.1:0", func(s *Source) { s.ServiceKeys = []string{testKey}; s.JWTSecret = "short" }, "needs at least 32"},
		{"short service key", "", "127.0.0.1:0", func(s *Source) { s.ServiceKeys = []string{"short"} }, "service_keys[0]: 5 bytes, at least 16"},
		{"padded service key", "", "127.0.0.1:0", func(s *Source) { s.ServiceKeys = []string{testKey + " "} }, "white space"},
		{"no listener", testSecret, "", func(s *Source) {}, "listen: required when pearld runs without a status listener"},
		{"listen without a status listener", testSecret, "", func(s *Source) { s.Listen = "127.0.0.1:0" }, ""},
		{"bad path", testSecret, "127.0.0.1:0", func(s *Source) { s.Path = "webhook" }, `path: "webhook"`},
		{"bad data type", testSecret, "127.0.0.1:0", func(s *Source) { s.Types = []string{"a:b"} }, `data_types: "a:b"`},
		{"max_body", testSecret, "127.0.0.1:0", func(s *Source) { s.MaxBody = 10 }, "max_body"},
		{"max_events", testSecret, "127.0.0.1:0", func(s *Source) { s.MaxEvents = 0 }, "max_events"},
		{"timeout", testSecret, "127.0.0.1:0", func(s *Source) { s.Timeout = 0 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(auth.SecretEnv, tt.env)
			s := New()
			tt.configure(s)
			env, closeEnv := engine.NewEnv(engine.EnvOptions{StatusAddr: tt.status, Listeners: engine.NewListeners(nil)})
			defer closeEnv(t.Context())
			err := s.Init(env)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestTokensNotConfigured checks that with service keys alone a token,
// even a valid admin one, is refused.
func TestTokensNotConfigured(t *testing.T) {
	h := newHarness(t, func(s *Source) { s.JWTSecret = "" }, nil)
	tok := mint(t, auth.Permissions{Admin: true}, nil)
	if r := h.post(okEvent, map[string]string{"Authorization": bearer(tok)}); r.code != http.StatusUnauthorized {
		t.Fatalf("token without configured tokens: %d %v", r.code, r.body)
	}
	if r := h.post(okEvent, map[string]string{ServiceKeyHeader: testKey}); r.code != http.StatusAccepted {
		t.Fatalf("service key: %d %v", r.code, r.body)
	}
}

func TestListenAndPath(t *testing.T) {
	h := newHarness(t, func(s *Source) { s.Listen = "127.0.0.1:0"; s.Path = "/hooks/pearl" }, nil)
	if !strings.HasSuffix(h.url, "/hooks/pearl") {
		t.Fatalf("url %s", h.url)
	}
	if r := h.post(okEvent, map[string]string{ServiceKeyHeader: testKey}); r.code != http.StatusAccepted {
		t.Fatalf("%d %v", r.code, r.body)
	}
}

func TestDataTypes(t *testing.T) {
	s := New()
	if got := s.DataTypes(); len(got) != 1 || got[0] != "*" {
		t.Errorf("default DataTypes = %v, want [*]", got)
	}
	s.Types = []string{"encoder_alarm", "stream_quality"}
	if got := s.DataTypes(); len(got) != 2 || got[1] != "stream_quality" {
		t.Errorf("DataTypes = %v", got)
	}
}

func TestPipelineConfig(t *testing.T) {
	reg := engine.NewRegistry()
	f, ok := engine.DefaultRegistry().Lookup(engine.KindSource, "webhook")
	if !ok {
		t.Fatal("webhook source not registered")
	}
	reg.Register(engine.KindSource, "webhook", f)
	src := `
[sources.ingest]
type         = "webhook"
listen       = ":3448"
path         = "/events"
service_keys = ["` + testKey + `"]
jwt_secret   = "` + testSecret + `"
algorithms   = ["HS256", "RS256"]
issuer       = "auth"
leeway       = "5s"
data_types   = ["encoder_alarm"]
max_body     = 4096
max_events   = 10
timeout      = "2s"
`
	p, err := engine.Load("test.toml", []byte(src), engine.LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Component("ingest").Value.(*Source)
	if s.Listen != ":3448" || s.Path != "/events" || len(s.ServiceKeys) != 1 || s.JWTSecret != testSecret ||
		len(s.Algorithms) != 2 || s.Issuer != "auth" || s.Leeway.D() != 5*time.Second || s.Types[0] != "encoder_alarm" ||
		s.MaxBody != 4096 || s.MaxEvents != 10 || s.Timeout.D() != 2*time.Second {
		t.Fatalf("decoded %+v", s)
	}
	d := New()
	if d.Path != "/webhook/event" || d.MaxBody != 65536 || d.MaxEvents != 100 || d.Timeout.D() != 5*time.Second || d.Listen != "" {
		t.Fatalf("defaults %+v", d)
	}
	if _, err := engine.Load("bad.toml", []byte(src+"bogus = 1\n"), engine.LoadOptions{Registry: reg}); err == nil ||
		!strings.Contains(err.Error(), `unknown key "sources.ingest.bogus"`) {
		t.Fatalf("unknown key: %v", err)
	}
}

// Metrics registered twice (a reload sharing the registry) are adopted.
func TestMetricsAdopted(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if a.requests != b.requests || a.events != b.events {
		t.Fatal("second registration did not adopt the first's collectors")
	}
}
