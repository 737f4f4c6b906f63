package restapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testSecret   = "0123456789abcdef0123456789abcdef-rest"
	testPassword = "pearl-password-never-shown"
)

// baseTime is the fake clock's start.
var baseTime = time.Date(2026, 11, 25, 20, 31, 12, 345e6, time.UTC)

// clock is a settable clock for the sink's now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stateUpstream is a fake ttl_cache upstream of the sink.
type stateUpstream struct {
	mu    sync.Mutex
	state map[string]engine.Event
}

func (u *stateUpstream) Latest(key string) (engine.Event, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.state[key]
	return e, ok
}

func (u *stateUpstream) Keys() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var keys []string
	for k := range u.state {
		keys = append(keys, k)
	}
	return keys
}

func (u *stateUpstream) set(e engine.Event) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state == nil {
		u.state = map[string]engine.Event{}
	}
	u.state[e.Key()] = e
}

// testDevices are the devices of the harness's pipeline, each a fake Pearl.
var testDevices = []string{"studio-a", "studio-b", "lobby"}

type harness struct {
	t       testing.TB
	api     *API
	base    string // http://127.0.0.1:PORT
	clock   *clock
	reg     *prometheus.Registry
	devs    map[string]*pearltest.Device
	servers map[string]*pearltest.Server
	http    *http.Client
}

// harnessOptions adjust a harness.
type harnessOptions struct {
	configure    func(a *API)
	upstream     []any
	controlDelay time.Duration
	// deviceTimeout bounds each request to a device; default 2s.
	deviceTimeout time.Duration
}

// newHarness starts a rest_events sink on a free port, with a fake clock
// and a fake Pearl per device of testDevices.
func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	hs := &harness{
		t: t, clock: &clock{t: baseTime}, reg: prometheus.NewRegistry(),
		devs: map[string]*pearltest.Device{}, servers: map[string]*pearltest.Server{},
		http: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	}
	devices := map[string]*engine.Device{}
	timeout := o.deviceTimeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	for _, name := range testDevices {
		d := pearltest.NewDevice(pearltest.Options{Password: testPassword, ControlDelay: o.controlDelay})
		s := pearltest.NewServer(d)
		t.Cleanup(s.Close)
		hs.devs[name], hs.servers[name] = d, s
		devices[name] = &engine.Device{Name: name, Address: s.URL, Password: testPassword, Timeout: engine.Duration(timeout)}
	}
	a := New()
	a.Listen = "127.0.0.1:0"
	a.JWTSecret = testSecret
	a.now = hs.clock.Now
	if o.configure != nil {
		o.configure(a)
	}
	ls := engine.NewListeners(nil)
	env, closeEnv := engine.NewEnv(engine.EnvOptions{
		Pipeline: "test", Name: "api", Type: "rest_events",
		Devices: devices, Upstream: o.upstream, Listeners: ls, Metrics: hs.reg,
	})
	if err := a.Init(env); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := ls.Start(); err != nil {
		t.Fatalf("starting listeners: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		ls.Shutdown(ctx)
		closeEnv(ctx)
		hs.http.CloseIdleConnections()
	})
	hs.api = a
	hs.base = "http://" + ls.Addr("127.0.0.1:0").String()
	return hs
}

func token(t testing.TB, perms auth.Permissions, devices []string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testSecret), auth.MintOptions{
		Subject: "dash", Permissions: perms, Devices: devices, TTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func readerToken(t testing.TB) string { return token(t, auth.Permissions{RealtimeData: true}, nil) }
func adminToken(t testing.TB) string  { return token(t, auth.Permissions{Admin: true}, nil) }
func controlToken(t testing.TB) string {
	return token(t, auth.Permissions{PublisherControl: true}, nil)
}

// answer is an HTTP answer read whole.
type answer struct {
	code   int
	header http.Header
	body   string
}

// json decodes the body.
func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(a.body), &m); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	return m
}

// do sends a request with the token as a Bearer header ("" for none) and
// extra headers as "Name: value".
func (hs *harness) do(method, path, tok string, headers ...string) answer {
	hs.t.Helper()
	req, err := http.NewRequest(method, hs.base+path, nil)
	if err != nil {
		hs.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := hs.http.Do(req)
	if err != nil {
		hs.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		hs.t.Fatal(err)
	}
	return answer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// expect sends a request and checks the status code.
func (hs *harness) expect(code int, method, path, tok string, headers ...string) answer {
	hs.t.Helper()
	a := hs.do(method, path, tok, headers...)
	if a.code != code {
		hs.t.Fatalf("%s %s: %d %s, want %d", method, path, a.code, a.body, code)
	}
	return a
}

func (hs *harness) write(events ...engine.Event) {
	hs.t.Helper()
	if err := hs.api.Write(context.Background(), events); err != nil {
		hs.t.Fatalf("Write: %v", err)
	}
}

// event builds an event observed seq seconds after baseTime.
func event(typ, device, channel string, seq uint64, data string) engine.Event {
	return engine.Event{Type: typ, Device: device, Channel: channel, Seq: seq, Hash: seq * 0x1001,
		Time: baseTime.Add(time.Duration(seq) * time.Second), Data: json.RawMessage(data)}
}

// publisherStatus builds a publisher_status event with one publisher.
func publisherStatus(device, channel string, seq uint64, state string) engine.Event {
	data := `{"publishers":[{"id":"0","name":"Stream 1","type":"rtmp","status":{"is_configured":true,"started":` +
		boolJSON(state != "stopped") + `,"state":"` + state + `"}}],"changes":[],"device_id":"` + device +
		`","device_ip":"127.0.0.1","channel":"` + channel + `","fetched_at":"2026-11-25T20:31:12.345Z"}`
	return event("publisher_status", device, channel, seq, data)
}

func boolJSON(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// metric returns the value of one series of the sink's registry: name and
// label pairs ("route", "/api/realtime/events", ...).
func (hs *harness) metric(name string, labels ...string) float64 {
	hs.t.Helper()
	mfs, err := hs.reg.Gather()
	if err != nil {
		hs.t.Fatal(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			return value(m)
		}
	}
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// compactJSON compacts s, failing the test when it is not JSON.
func compactJSON(t testing.TB, s string) string {
	t.Helper()
	var b strings.Builder
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not JSON: %s: %v", s, err)
	}
	out, _ := json.Marshal(v)
	b.Write(out)
	return b.String()
}

// sameJSON fails unless got and want are the same JSON value.
func sameJSON(t testing.TB, what, got, want string) {
	t.Helper()
	if g, w := compactJSON(t, got), compactJSON(t, want); g != w {
		t.Fatalf("%s =\n%s\nwant\n%s", what, g, w)
	}
}

// decodeArray decodes a JSON array of objects.
func decodeArray(t testing.TB, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		t.Fatalf("not a JSON array of objects: %s: %v", s, err)
	}
	return out
}

// jsonNumber formats a decoded JSON number as an integer.
func jsonNumber(v any) string {
	f, _ := v.(float64)
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// quote returns s as a JSON string.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
