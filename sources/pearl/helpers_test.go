package pearl

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is how long a test waits for something that should happen within
// a few polls; generous so that -race on a busy machine does not flake.
const wait = 5 * time.Second

// fakeDevice starts a pearltest device behind a server, closed at the
// end of the test.
func fakeDevice(t *testing.T, opts pearltest.Options) (*pearltest.Device, *pearltest.Server) {
	t.Helper()
	if opts.Password == "" {
		opts.Password = "secret"
	}
	dev := pearltest.NewDevice(opts)
	srv := pearltest.NewServer(dev)
	t.Cleanup(srv.Close)
	return dev, srv
}

// deviceConfig is the pipeline's view of a fake device.
func deviceConfig(name string, srv *pearltest.Server) *engine.Device {
	return &engine.Device{
		Name:     name,
		Address:  srv.URL,
		Username: pearltest.DefaultUsername,
		Password: "secret",
		Timeout:  engine.Duration(time.Second),
	}
}

// newEnv returns an environment with the given devices and a private
// registry; its resources (the clients) are closed at the end of the test.
func newEnv(t *testing.T, devices ...*engine.Device) (*engine.Env, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := map[string]*engine.Device{}
	for _, d := range devices {
		m[d.Name] = d
	}
	env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test", Name: t.Name(), Metrics: reg, Devices: m})
	t.Cleanup(func() { closeEnv(context.Background()) })
	return env, reg
}

// recorder collects emitted events; tests read them in order with next.
type recorder struct {
	mu     sync.Mutex
	events []engine.Event
	cursor int
	added  chan struct{} // closed and replaced on every emit
}

func newRecorder() *recorder { return &recorder{added: make(chan struct{})} }

func (r *recorder) emit(ev engine.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	close(r.added)
	r.added = make(chan struct{})
}

// next returns the first event after the cursor that matches pred and
// moves the cursor past it; it fails the test when none comes in time.
func (r *recorder) next(t *testing.T, what string, pred func(engine.Event) bool) engine.Event {
	t.Helper()
	deadline := time.After(wait)
	for {
		r.mu.Lock()
		for i := r.cursor; i < len(r.events); i++ {
			if pred(r.events[i]) {
				r.cursor = i + 1
				ev := r.events[i]
				r.mu.Unlock()
				return ev
			}
		}
		added := r.added
		r.mu.Unlock()
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("no event %s within %s; got %s", what, wait, r.describe())
			return engine.Event{}
		}
	}
}

// since returns the events after the cursor and moves the cursor to the end.
func (r *recorder) since() []engine.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]engine.Event(nil), r.events[r.cursor:]...)
	r.cursor = len(r.events)
	return out
}

// skip moves the cursor past every event recorded so far.
func (r *recorder) skip() { _ = r.since() }

func (r *recorder) describe() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for i, ev := range r.events {
		mark := " "
		if i == r.cursor {
			mark = ">"
		}
		b.WriteString("\n" + mark + " " + ev.Key() + " " + string(ev.Data))
	}
	return b.String()
}

// run initialises src in env and runs it until the end of the test; the
// cleanup fails the test if Run does not return promptly once cancelled.
func run(t *testing.T, src engine.Source, env *engine.Env) *recorder {
	t.Helper()
	if err := src.(engine.Initializer).Init(env); err != nil {
		t.Fatalf("Init: %v", err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, rec.emit) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Run did not return within 2s of cancellation")
		}
	})
	return rec
}

// eventually polls cond until it holds or the wait ends.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func publisherData(t *testing.T, ev engine.Event) PublisherStatusData {
	t.Helper()
	var d PublisherStatusData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("decoding %s: %v", ev.Data, err)
	}
	return d
}

func healthData(t *testing.T, ev engine.Event) DeviceHealthData {
	t.Helper()
	var d DeviceHealthData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("decoding %s: %v", ev.Data, err)
	}
	return d
}

// ofType matches events of a data type, and of a channel when given.
func ofType(typ string, channel ...string) func(engine.Event) bool {
	return func(ev engine.Event) bool {
		return ev.Type == typ && (len(channel) == 0 || ev.Channel == channel[0])
	}
}

// healthIs matches device_health events with the given status.
func healthIs(t *testing.T, status string) func(engine.Event) bool {
	return func(ev engine.Event) bool {
		return ev.Type == TypeDeviceHealth && healthData(t, ev).Status == status
	}
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run with -update to create it): %v", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the golden file:\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// indent pretty-prints JSON for golden files, keeping the key order.
func indent(t *testing.T, raw []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		t.Fatalf("indenting %s: %v", raw, err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
