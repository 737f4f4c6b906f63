package pearl

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

func newClient(t *testing.T, d *engine.Device) *Client {
	t.Helper()
	c, err := NewClient(d, ClientOptions{})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name, addr, base, host, err string
	}{
		{name: "host", addr: "192.168.1.100", base: "http://192.168.1.100/api/v2.0", host: "192.168.1.100"},
		{name: "host and port", addr: "pearl.local:8080", base: "http://pearl.local:8080/api/v2.0", host: "pearl.local"},
		{name: "http URL", addr: "http://10.0.0.5", base: "http://10.0.0.5/api/v2.0", host: "10.0.0.5"},
		{name: "https URL with port", addr: "https://10.0.0.5:8443/", base: "https://10.0.0.5:8443/api/v2.0", host: "10.0.0.5"},
		{name: "URL with the API path", addr: "http://10.0.0.5/api/v2.0/", base: "http://10.0.0.5/api/v2.0", host: "10.0.0.5"},
		{name: "reverse proxy prefix", addr: "https://proxy.example/pearls/a", base: "https://proxy.example/pearls/a/api/v2.0", host: "proxy.example"},
		{name: "bare IPv6", addr: "fe80::1", base: "http://[fe80::1]/api/v2.0", host: "fe80::1"},
		{name: "IPv6 with port", addr: "[fe80::1]:8080", base: "http://[fe80::1]:8080/api/v2.0", host: "fe80::1"},
		{name: "spaces", addr: "  10.0.0.5 ", base: "http://10.0.0.5/api/v2.0", host: "10.0.0.5"},
		{name: "empty", addr: " ", err: "empty"},
		{name: "other scheme", addr: "ftp://10.0.0.5", err: "scheme must be http or https"},
		{name: "no host", addr: "http://", err: "no host"},
		{name: "credentials", addr: "http://admin:pw@10.0.0.5", err: "put credentials in username and password"},
		{name: "query", addr: "http://10.0.0.5/?x=1", err: "no query"},
		{name: "bad port", addr: "10.0.0.5:99999", err: "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, host, err := parseAddress(tt.addr)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseAddress(%q) error = %v, want %q", tt.addr, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseAddress(%q): %v", tt.addr, err)
			}
			if base != tt.base || host != tt.host {
				t.Errorf("parseAddress(%q) = %q, %q; want %q, %q", tt.addr, base, host, tt.base, tt.host)
			}
		})
	}
}

// TestClientErrors checks that every fault of NOTES.md becomes the right
// kind of error with a message that says what to do.
func TestClientErrors(t *testing.T) {
	statusCall := func(ctx context.Context, c *Client) error { _, err := c.SystemStatus(ctx); return err }
	tests := []struct {
		name   string
		setup  func(*pearltest.Device, *pearltest.Server)
		call   func(context.Context, *Client) error
		kind   error
		reason string
		code   int
		msg    string
	}{
		{name: "slow beyond the timeout", setup: func(d *pearltest.Device, _ *pearltest.Server) {
			d.SetFaultDelay(2 * time.Second)
			d.SetFault(pearltest.FaultSlow)
		}, kind: ErrUnavailable, reason: ReasonTimeout, msg: "no answer within 200ms"},
		{name: "401 with WWW-Authenticate", setup: fault(pearltest.FaultUnauthorized),
			kind: ErrUnauthorized, reason: ReasonUnauthorized, code: 401, msg: "unauthorized (HTTP 401): wrong username or password"},
		{name: "password changed", setup: func(d *pearltest.Device, _ *pearltest.Server) { d.SetPassword("new") },
			kind: ErrUnauthorized, reason: ReasonUnauthorized, code: 401, msg: "HTTP 401"},
		{name: "403", setup: fault(pearltest.FaultForbidden),
			kind: ErrUnauthorized, reason: ReasonForbidden, code: 403, msg: `forbidden (HTTP 403): the account may not use the API: device says "Access denied"`},
		{name: "503 HTML while booting", setup: fault(pearltest.FaultUnavailable),
			kind: ErrUnavailable, reason: ReasonUnavailable, code: 503, msg: "device unavailable (HTTP 503 Service Unavailable): booting or overloaded"},
		{name: "garbage", setup: fault(pearltest.FaultGarbage),
			kind: ErrBadResponse, reason: ReasonBadResponse, code: 200, msg: "bad response: not JSON"},
		{name: "truncated", setup: fault(pearltest.FaultTruncated),
			kind: ErrBadResponse, reason: ReasonBadResponse, code: 200, msg: "bad response: truncated JSON"},
		{name: "empty", setup: fault(pearltest.FaultEmpty),
			kind: ErrBadResponse, reason: ReasonBadResponse, code: 200, msg: "bad response: empty body"},
		{name: "HTML with 200", setup: fault(pearltest.FaultHTML),
			kind: ErrBadResponse, reason: ReasonBadResponse, code: 200, msg: "bad response: HTML page where JSON was expected"},
		{name: "200 with status error", setup: fault(pearltest.FaultNotOK),
			kind: ErrRejected, reason: ReasonRejected, code: 200, msg: `device answered "error": Internal error`},
		{name: "connection refused", setup: func(_ *pearltest.Device, s *pearltest.Server) { s.SetRefused(true) },
			kind: ErrUnavailable, reason: ReasonRefused, msg: "device unavailable: connection refused"},
		{name: "firmware older than 4.24.1", setup: fault(pearltest.FaultNotFoundAPI),
			kind: ErrAPIMissing, reason: ReasonAPIMissing, code: 404, msg: "firmware older than 4.24.1 has no /api/v2.0"},
		{name: "unknown channel", call: func(ctx context.Context, c *Client) error { return c.StartPublishers(ctx, "99") },
			kind: ErrNotFound, reason: ReasonNotFound, code: 404, msg: `not found (HTTP 404): device says "channel '99' not found"`},
		{name: "unknown publisher", call: func(ctx context.Context, c *Client) error { return c.StopPublisher(ctx, "1", "7") },
			kind: ErrNotFound, reason: ReasonNotFound, code: 404, msg: "streamer '7' for channel '1' not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, srv := fakeDevice(t, pearltest.Options{})
			d := deviceConfig("a", srv)
			d.Timeout = engine.Duration(200 * time.Millisecond)
			c := newClient(t, d)
			if tt.setup != nil {
				tt.setup(dev, srv)
			}
			call := tt.call
			if call == nil {
				call = statusCall
			}
			err := call(context.Background(), c)
			if !errors.Is(err, tt.kind) {
				t.Fatalf("error = %v, want kind %v", err, tt.kind)
			}
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("error %T is not an *Error", err)
			}
			if e.Reason != tt.reason || e.StatusCode != tt.code {
				t.Errorf("reason, code = %q, %d; want %q, %d", e.Reason, e.StatusCode, tt.reason, tt.code)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not contain %q", err.Error(), tt.msg)
			}
		})
	}
}

func fault(f pearltest.Fault) func(*pearltest.Device, *pearltest.Server) {
	return func(d *pearltest.Device, _ *pearltest.Server) { d.SetFault(f) }
}

func TestClientTLS(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{Password: "secret"})
	tlsSrv := pearltest.NewTLSServer(dev)
	t.Cleanup(tlsSrv.Close)
	_, plainSrv := fakeDevice(t, pearltest.Options{})

	tests := []struct {
		name     string
		addr     string
		insecure bool
		msg      string // "" for success
	}{
		{name: "self-signed with the opt-in", addr: tlsSrv.URL, insecure: true},
		{name: "self-signed without the opt-in", addr: tlsSrv.URL, msg: "set insecure_skip_verify = true"},
		{name: "https to a plain HTTP device", addr: strings.Replace(plainSrv.URL, "http:", "https:", 1), insecure: true,
			msg: "does not speak HTTPS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, &engine.Device{Name: "a", Address: tt.addr, Password: "secret", InsecureSkipVerify: tt.insecure})
			_, err := c.SystemStatus(context.Background())
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("SystemStatus: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnavailable) || ReasonOf(err) != ReasonTLS || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error = %v (reason %q), want a TLS failure saying %q", err, ReasonOf(err), tt.msg)
			}
		})
	}
}

func TestClientCallerCancellation(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{})
	dev.SetFaultDelay(5 * time.Second)
	dev.SetFault(pearltest.FaultSlow)
	c := newClient(t, deviceConfig("a", srv))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Channels(ctx, ChannelsOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the caller's context.DeadlineExceeded", err)
	}
	if _, ok := errors.AsType[*Error](err); ok {
		t.Errorf("a cancelled call is not a device failure, got %#v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("call returned after %s, want promptly after cancellation", d)
	}
}

// TestClientMaxInFlight hammers one client from many goroutines: the
// device never sees more than two requests at once, and callers whose
// context ends while waiting for a slot return at once.
func TestClientMaxInFlight(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{})
	dev.SetFaultDelay(20 * time.Millisecond)
	dev.SetFault(pearltest.FaultSlow)
	c := newClient(t, deviceConfig("a", srv))

	ctx := context.Background()
	calls := []func() error{
		func() error { _, err := c.Channels(ctx, ChannelsOptions{Status: true}); return err },
		func() error { _, err := c.SystemStatus(ctx); return err },
		func() error { _, err := c.Ident(ctx); return err },
		func() error { _, err := c.Firmware(ctx); return err },
		func() error { return c.StopPublishers(ctx, "1") },
	}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := range 20 {
		wg.Go(func() {
			if err := calls[i%len(calls)](); err != nil {
				failures.Add(1)
				t.Errorf("call %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if got := dev.MaxInFlight(); got != MaxInFlight {
		t.Errorf("device saw at most %d requests in flight, want %d", got, MaxInFlight)
	}
	if dev.TotalRequests() != 20 {
		t.Errorf("device got %d requests, want 20", dev.TotalRequests())
	}

	// Two slow calls hold the slots; a third gives up with its context.
	dev.SetFaultDelay(300 * time.Millisecond)
	for range MaxInFlight {
		wg.Go(func() { _, _ = c.SystemStatus(context.Background()) })
	}
	eventually(t, "both slots taken", func() bool { return len(c.slots) == MaxInFlight })
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := c.SystemStatus(short); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for a request slot") {
		t.Errorf("waiting caller error = %v, want a slot wait ended by its context", err)
	}
	wg.Wait()
}

// TestClientKeepAlive checks that sequential requests reuse one connection.
func TestClientKeepAlive(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{Password: "secret"})
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(dev)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, &engine.Device{Name: "a", Address: srv.URL, Password: "secret"})
	for range 10 {
		if _, err := c.Channels(context.Background(), ChannelsOptions{Status: true}); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("10 sequential requests opened %d connections, want 1", n)
	}
}

// TestClientAnswers checks answers pearltest does not produce: oversized
// bodies, redirects, bodies that are JSON but not an envelope.
func TestClientAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		kind    error
		msg     string
	}{
		{name: "body over the limit", kind: ErrBadResponse, msg: "body larger than 4 MiB",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(`{"status":"ok","result":"`))
				_, _ = w.Write([]byte(strings.Repeat("x", MaxBodySize)))
				_, _ = w.Write([]byte(`"}`))
			}},
		{name: "redirect to https", kind: ErrBadResponse, msg: "redirect (HTTP 302) to https://pearl.example/api/v2.0/system/status: use that address",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://pearl.example"+r.URL.Path, http.StatusFound)
			}},
		{name: "JSON that is not an envelope", kind: ErrBadResponse, msg: "JSON that is not the API's envelope",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`[1,2,3]`)) }},
		{name: "envelope without status", kind: ErrBadResponse, msg: "JSON without a status",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"result":{}}`)) }},
		{name: "ok without result", kind: ErrBadResponse, msg: "no result in the answer",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) }},
		{name: "result of the wrong shape", kind: ErrBadResponse, msg: "decoding result",
			handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok","result":[1]}`)) }},
		{name: "500 with an error envelope", kind: ErrUnavailable, msg: `HTTP 500 Internal Server Error): device says "disk full"`,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte(`{"status":"error","message":"disk full"}`))
			}},
		{name: "400 badrequest", kind: ErrRejected, msg: `rejected (HTTP 400 badrequest): device says "bad id"`,
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"status":"badrequest","message":"bad id"}`))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			c := newClient(t, &engine.Device{Name: "a", Address: srv.URL})
			_, err := c.SystemStatus(context.Background())
			if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error = %v, want %v saying %q", err, tt.kind, tt.msg)
			}
		})
	}
}

// TestClientDecodesQuirks decodes answers with numeric ids, numbers as
// strings, epoch and odd dates, unknown states, types and fields; the
// decoded values are compared with golden files.
func TestClientDecodesQuirks(t *testing.T) {
	tests := []struct {
		name, file string
		call       func(*Client) (any, error)
	}{
		{name: "channels", file: "channels_quirks.json", call: func(c *Client) (any, error) {
			return c.Channels(context.Background(), ChannelsOptions{Status: true, Encoders: true, IDs: []string{"4", "10"}})
		}},
		{name: "system status ISO date", file: "system_status_iso.json", call: func(c *Client) (any, error) { return c.SystemStatus(context.Background()) }},
		{name: "system status epoch date", file: "system_status_epoch.json", call: func(c *Client) (any, error) { return c.SystemStatus(context.Background()) }},
		{name: "system status odd values", file: "system_status_odd.json", call: func(c *Client) (any, error) { return c.SystemStatus(context.Background()) }},
		{name: "four-part firmware", file: "firmware_four_part.json", call: func(c *Client) (any, error) { return c.Firmware(context.Background()) }},
		{name: "ident with empty name", file: "ident_empty_name.json", call: func(c *Client) (any, error) { return c.Ident(context.Background()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", "answers", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var query string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				query = r.URL.RawQuery
				_, _ = w.Write(body)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, &engine.Device{Name: "a", Address: srv.URL})
			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("decoding %s: %v", tt.file, err)
			}
			if tt.name == "channels" && query != "publishers=true&publishers-status=true&encoders=true&ids=4,10" {
				t.Errorf("query = %q", query)
			}
			out, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "decoded_"+strings.TrimSuffix(tt.file, ".json")+".json", append(out, '\n'))
		})
	}
}

func TestClientForSharesOneClientAndMetrics(t *testing.T) {
	_, srvA := fakeDevice(t, pearltest.Options{})
	_, srvB := fakeDevice(t, pearltest.Options{})
	a, b := deviceConfig("a", srvA), deviceConfig("b", srvB)
	env, reg := newEnv(t, a, b)

	c1, err := ClientFor(env, a)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := ClientFor(env, a)
	cb, _ := ClientFor(env, b)
	if c1 != c2 || c1 == cb {
		t.Fatalf("ClientFor: want one client per device")
	}
	// A second NewMetrics on the same registerer (a reload) reuses the
	// collectors instead of failing.
	if _, err := NewMetrics(reg); err != nil {
		t.Fatalf("NewMetrics again: %v", err)
	}
	ctx := context.Background()
	for range 3 {
		if _, err := c1.Channels(ctx, ChannelsOptions{Status: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cb.SystemStatus(ctx); err != nil {
		t.Fatal(err)
	}
	_ = cb.StartPublisher(ctx, "9", "0") // not found

	want := map[string]float64{
		`pearld_pearl_requests_total{code="200",device="a",path="/channels"}`:                                                    3,
		`pearld_pearl_requests_total{code="200",device="b",path="/system/status"}`:                                               1,
		`pearld_pearl_requests_total{code="404",device="b",path="/channels/{cid}/publishers/{pid}/control/start"}`:               1,
		`pearld_pearl_request_errors_total{device="b",path="/channels/{cid}/publishers/{pid}/control/start",reason="not_found"}`: 1,
		`pearld_pearl_request_duration_seconds{device="a",path="/channels"}`:                                                     3,
		`pearld_pearl_requests_in_flight{device="a"}`:                                                                            0,
	}
	got := gather(t, reg)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}

	if _, err := ClientFor(env, &engine.Device{Name: "bad", Address: "ftp://x"}); err == nil {
		t.Errorf("ClientFor with a bad address: want an error")
	}
}

// gather flattens a registry into "name{labels}" -> value (the sample
// count for histograms).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestControlKicksOnlyWhenAccepted(t *testing.T) {
	_, srv := fakeDevice(t, pearltest.Options{})
	c := newClient(t, deviceConfig("a", srv))
	ctx := context.Background()
	tests := []struct {
		name   string
		call   func() error
		kicked bool
	}{
		{name: "start all", call: func() error { return c.StartPublishers(ctx, "1") }, kicked: true},
		{name: "stop all", call: func() error { return c.StopPublishers(ctx, "1") }, kicked: true},
		{name: "start one", call: func() error { return c.StartPublisher(ctx, "1", "0") }, kicked: true},
		{name: "stop one", call: func() error { return c.StopPublisher(ctx, "1", "0") }, kicked: true},
		{name: "unknown channel", call: func() error { return c.StartPublishers(ctx, "nope") }},
		{name: "empty channel id", call: func() error { return c.StartPublishers(ctx, "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kicked := c.Kicked()
			err := tt.call()
			if (err == nil) != tt.kicked {
				t.Fatalf("error = %v", err)
			}
			select {
			case <-kicked:
				if !tt.kicked {
					t.Errorf("kicked after a failed command")
				}
			default:
				if tt.kicked {
					t.Errorf("not kicked after an accepted command")
				}
			}
		})
	}
}
