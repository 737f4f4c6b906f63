package pearltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// newTestFleet starts a fleet on a free range of consecutive ports,
// retrying when a port was taken between the probe and the bind.
func newTestFleet(t *testing.T, opts FleetOptions) (*Fleet, int) {
	t.Helper()
	var lastErr error
	for range 10 {
		base := freePortRange(t, opts.N)
		opts.Listen = fmt.Sprintf("127.0.0.1:%d", base)
		f, err := NewFleet(opts)
		if err == nil {
			t.Cleanup(f.Close)
			return f, base
		}
		lastErr = err
	}
	t.Fatalf("starting fleet: %v", lastErr)
	return nil, 0
}

func TestFleetConsecutivePorts(t *testing.T) {
	f, base := newTestFleet(t, FleetOptions{N: 4, Password: "pw", Seed: 1})
	servers, devices := f.Servers(), f.Devices()
	if len(servers) != 4 || len(devices) != 4 {
		t.Fatalf("%d servers, %d devices", len(servers), len(devices))
	}
	c := testClient(t, nil)
	var layouts [][]string
	for i, s := range servers {
		if want := fmt.Sprintf("http://127.0.0.1:%d", base+i); s.URL != want || s.Device != devices[i] {
			t.Errorf("server %d URL = %q, want %q", i, s.URL, want)
		}
		resp, body, err := apiGet(c, s.URL+"/api/v2.0/channels?publishers=true&publishers-status=true&encoders=true", "admin", "pw")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("device %d: %v %v", i, resp, err)
		}
		var ids []string
		chans := decodeResult[[]apiChannel](t, body)
		for _, ch := range chans {
			ids = append(ids, ch.ID)
			if len(ch.Publishers) == 0 || len(ch.Encoders) != 2 {
				t.Errorf("device %d channel %s: %d publishers, %d encoders", i, ch.ID, len(ch.Publishers), len(ch.Encoders))
			}
			for _, p := range ch.Publishers {
				if p.Type != TypeRTMP && p.Type != TypeSRT || p.Status == nil {
					t.Errorf("device %d publisher %s/%s: %+v", i, ch.ID, p.ID, p)
				}
			}
		}
		layouts = append(layouts, ids)
	}
	if !slices.Equal(layouts[1], []string{"4", "5", "6"}) || !slices.Equal(layouts[0], []string{"1", "2"}) {
		t.Errorf("channel ids = %v, want some devices with ids not 1..N", layouts)
	}
}

// decodeResult decodes an ok envelope's result from body.
func decodeResult[T any](t *testing.T, body []byte) T {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || env.Status != "ok" {
		t.Fatalf("envelope %s: %v", body, err)
	}
	var out T
	if err := json.Unmarshal(env.Result, &out); err != nil {
		t.Fatalf("result %s: %v", env.Result, err)
	}
	return out
}

func TestFleetSameSeedSameFleet(t *testing.T) {
	layout := func(seed int64) []string {
		f, err := NewFleet(FleetOptions{N: 3, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for range 20 {
			f.Step()
		}
		var out []string
		for _, d := range f.Devices() {
			for _, ch := range d.Channels() {
				for _, p := range ch.Publishers {
					out = append(out, strings.Join([]string{ch.ID, ch.Name, p.ID, p.Type, p.Mode, p.Name,
						fmt.Sprint(p.Status.IsConfigured), p.Status.State}, "/"))
				}
			}
			out = append(out, fmt.Sprint(d.System().CPULoad))
		}
		return out
	}
	a, b, c := layout(7), layout(7), layout(8)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different fleets:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("different seeds, same fleet: %v", a)
	}
}

func TestFleetTransitions(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f, err := NewFleet(FleetOptions{N: 6, Seed: 3, ControlDelay: time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	loads := map[int]bool{}
	temps := map[int]bool{}
	maxReconnections := 0
	for range 400 {
		f.Step()
		time.Sleep(50 * time.Microsecond)
		for _, d := range f.Devices() {
			s := d.System()
			loads[s.CPULoad], temps[s.CPUTemp] = true, true
			if s.CPULoad < 0 || s.CPULoad > 100 || s.CPULoadHigh != (s.CPULoad > 85) || s.CPUTemp > s.CPUTempThreshold+8 {
				t.Fatalf("system out of bounds: %+v", s)
			}
			for _, ch := range d.Channels() {
				for _, p := range ch.Publishers {
					st := p.Status
					seen[st.State] = true
					if st.State == StateError && st.Description == "" {
						t.Fatalf("error without description: %+v", st)
					}
					maxReconnections = max(maxReconnections, st.Reconnections)
					if st.State == StateStopped && st.Started {
						t.Fatalf("stopped but started: %+v", st)
					}
				}
			}
		}
	}
	for _, state := range []string{StateStarting, StateStarted, StateStopped, StateError, StateListening} {
		if !seen[state] {
			t.Errorf("state %q never seen; seen %v", state, seen)
		}
	}
	if maxReconnections == 0 {
		t.Error("no publisher ever reconnected")
	}
	for _, want := range []string{"from=stopped to=starting", "from=started to=error", "from=error to=starting", "to=stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no change %q logged", want)
		}
	}
	if len(loads) < 10 || len(temps) < 5 {
		t.Errorf("CPU load took %d values, temperature %d: no drift", len(loads), len(temps))
	}
}

func TestFleetRun(t *testing.T) {
	f, err := NewFleet(FleetOptions{N: 2, Seed: 5, Tick: 2 * time.Millisecond, ControlDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := f.Devices()[0].System().CPULoad
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor(t, func() bool { return f.Devices()[0].System().CPULoad != before })
	if err := f.Run(ctx); err == nil {
		t.Error("second concurrent Run succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}

	// Close stops a running Run too.
	go func() { done <- f.Run(context.Background()) }()
	waitFor(t, func() bool {
		f.runMu.Lock()
		defer f.runMu.Unlock()
		return f.running
	})
	f.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run after Close = %v", err)
	}
	if err := f.Run(context.Background()); err == nil {
		t.Error("Run on a closed fleet succeeded")
	}
}

func TestFleetFaults(t *testing.T) {
	f, err := NewFleet(FleetOptions{N: 1, Seed: 9, FaultRate: 1, FaultDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := f.Servers()[0]
	c := testClient(t, nil)
	failures := 0
	for range 20 {
		f.Step()
		resp, body, err := apiGet(c, s.URL+"/api/v2.0/system/status", "admin", "")
		var env envelope
		if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &env) != nil || env.Status != "ok" {
			failures++
		}
	}
	if failures < 5 {
		t.Fatalf("%d of 20 requests failed with a fault rate of 1", failures)
	}
}

func TestFleetReboot(t *testing.T) {
	f, err := NewFleet(FleetOptions{N: 1, Seed: 2, RebootRate: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, d := f.Servers()[0], f.Devices()[0]
	url := s.URL + "/api/v2.0/system/status"
	if d.System().Uptime < 3600 {
		t.Fatalf("initial uptime %d, want at least an hour", d.System().Uptime)
	}
	f.Step()
	if !s.Refused() {
		t.Fatal("device not refusing after a reboot")
	}
	if _, _, err := apiGet(testClient(t, nil), url, "admin", ""); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("during reboot: %v, want connection refused", err)
	}
	var phases []string
	for range 10 {
		f.Step()
		resp, _, err := apiGet(testClient(t, nil), url, "admin", "")
		switch {
		case err != nil:
			phases = append(phases, "refused")
		case resp.StatusCode == 503:
			phases = append(phases, "booting")
		case resp.StatusCode == 200:
			phases = append(phases, "up")
		}
		if resp != nil && resp.StatusCode == 200 {
			break
		}
	}
	if !slices.Contains(phases, "booting") || phases[len(phases)-1] != "up" {
		t.Fatalf("phases after reboot = %v, want refused, booting, up", phases)
	}
	if up := d.System().Uptime; up > 5 {
		t.Errorf("uptime after reboot = %d", up)
	}
	for _, ch := range d.Channels() {
		for _, p := range ch.Publishers {
			if p.Status.State != StateStopped && p.Status.State != StateStarting && p.Status.State != StateError {
				t.Errorf("publisher %s/%s = %q right after reboot", ch.ID, p.ID, p.Status.State)
			}
		}
	}
}

func TestFleetCloseFreesPortsAndGoroutines(t *testing.T) {
	f, base := newTestFleet(t, FleetOptions{N: 3, Tick: time.Millisecond, TLS: true, FaultRate: 0.5})
	go func() { _ = f.Run(context.Background()) }()
	for _, s := range f.Servers() {
		if !strings.HasPrefix(s.URL, "https://") {
			t.Fatalf("TLS fleet URL %q", s.URL)
		}
		if _, _, err := apiGet(s.Client(), s.URL+"/api/v2.0/system/ident", "admin", ""); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	f.Close()
	for i := range 3 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			t.Fatalf("port %d still bound after Close: %v", base+i, err)
		}
		ln.Close()
	}
	if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
		t.Fatalf("goroutines left after Close:\n%s", leaked)
	}
}

func TestNewFleetErrors(t *testing.T) {
	free := freePortRange(t, 2)
	busy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", free+1))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := free + 1

	tests := []struct {
		name    string
		opts    FleetOptions
		wantErr string
	}{
		{name: "no devices", opts: FleetOptions{N: 0}, wantErr: "at least one device"},
		{name: "bad address", opts: FleetOptions{N: 1, Listen: "nonsense"}, wantErr: "parsing listen address"},
		{name: "bad port", opts: FleetOptions{N: 1, Listen: "127.0.0.1:http"}, wantErr: "invalid port"},
		{name: "ports past 65535", opts: FleetOptions{N: 3, Listen: "127.0.0.1:65534"}, wantErr: "invalid port"},
		{name: "port in use", opts: FleetOptions{N: 2, Listen: fmt.Sprintf("127.0.0.1:%d", busyPort-1)}, wantErr: "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFleet(tt.opts)
			if err == nil {
				f.Close()
				t.Fatal("NewFleet succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "creating fleet: ") {
				t.Fatalf("error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	// The device bound before the failure was closed again.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", busyPort-1))
	if err != nil {
		t.Fatalf("port before the busy one left bound: %v", err)
	}
	ln.Close()
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
