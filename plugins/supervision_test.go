package plugins

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
	"github.com/prometheus/client_golang/prometheus"
)

func counterPID(t *testing.T, e engine.Event) int {
	t.Helper()
	var d struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.PID
}

// TestKilledPluginRestarts kills a plugin with SIGKILL: a new process must
// serve within 2s and its events flow, while a built-in source of the same
// pipeline keeps polling throughout.
func TestKilledPluginRestarts(t *testing.T) {
	dev := pearltest.NewDevice(pearltest.Options{})
	srv := pearltest.NewServer(dev)
	defer srv.Close()
	rec := &recorder{}
	e := startEngine(t, fmt.Sprintf(`
[devices.d]
address = %q

[sources.counter]
type     = "plugin"
plugin   = "counter"
interval = "50ms"
label    = "live"

[sources.publishers]
type     = "pearl_publisher_status"
interval = "50ms"

[sinks.out]
type   = "record"
inputs = ["counter", "publishers"]
`, srv.URL), rec, nil)
	src := source(t, e, "counter")
	waitFor(t, "counter events", 10*time.Second, func() bool { return len(rec.events("test_counter")) >= 3 })
	old := src.PID()
	if old == 0 {
		t.Fatal("no plugin process")
	}

	// Sample the built-in poller while the plugin is down.
	type sample struct {
		at       time.Time
		requests int
	}
	var samples []sample
	record := func() { samples = append(samples, sample{time.Now(), dev.Requests("/api/v2.0/channels")}) }
	record()
	killed := time.Now()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var restartedIn time.Duration
	waitFor(t, "a new plugin process", 5*time.Second, func() bool {
		record()
		pid := src.PID()
		if pid != 0 && pid != old {
			restartedIn = time.Since(killed)
			return true
		}
		return false
	})
	if restartedIn > 2*time.Second {
		t.Errorf("the plugin was restarted after %s, want within 2s", restartedIn)
	}
	waitFor(t, "events of the new process", 5*time.Second, func() bool {
		record()
		evs := rec.events("test_counter")
		return counterPID(t, evs[len(evs)-1]) == src.PID()
	})
	// The publisher poller never paused: its requests kept growing.
	last := samples[0]
	for _, s := range samples[1:] {
		if s.requests > last.requests {
			last = s
			continue
		}
		if gap := s.at.Sub(last.at); gap > 500*time.Millisecond {
			t.Fatalf("the built-in source made no request for %s while the plugin restarted", gap)
		}
	}
	if samples[len(samples)-1].requests <= samples[0].requests {
		t.Fatal("the built-in source made no request while the plugin restarted")
	}
	if c := component(e, "counter"); c.Restarts != 1 || !strings.Contains(c.LastError, "plugin process exited: signal: killed") {
		t.Errorf("status of the plugin source = %+v", c)
	}
	if c := component(e, "publishers"); c.Restarts != 0 || c.State != engine.StateRunning {
		t.Errorf("status of the built-in source = %+v", c)
	}
}

// TestPanicAtStart: a plugin that panics as it starts is restarted with
// backoff, the status and the metrics say so, and once it starts again its
// events flow.
func TestPanicAtStart(t *testing.T) {
	marker := filepath.Join(pluginsDir, "crashy.marker")
	rec := &recorder{}
	reg := registry(rec)
	file := writeFile(t, "test.toml", `
[devices.d]
address = "127.0.0.1:1"

[sources.crashy]
type     = "plugin"
plugin   = "crashy"
interval = "50ms"

[sinks.out]
type   = "record"
inputs = ["crashy"]
`)
	cfg, err := engine.LoadFile(file, engine.LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	metrics := prometheus.NewRegistry()
	p, err := engine.NewPipeline(cfg, engine.Deps{Metrics: metrics})
	if err != nil {
		t.Fatal(err) // Init starts the plugin once: it works
	}
	// From now on it panics at start.
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(marker)
	p.Start()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Stop(ctx)
	}()
	status := func() engine.ComponentStatus { return p.Status(true)[0] }
	waitFor(t, "two restarts", 10*time.Second, func() bool { return status().Restarts >= 2 })
	st := status()
	if st.State != engine.StateRestarting || !strings.Contains(st.LastError, "panic: crashy: boom at start") {
		t.Errorf("status = %+v, want restarting with the panic", st)
	}
	if got := restartsMetric(t, metrics, "crashy"); got < 2 {
		t.Errorf("pearld_component_restarts_total = %v", got)
	}
	// Backoff: the engine waits 0.5-1s, then 1-2s, then 2-4s.
	time.Sleep(1500 * time.Millisecond)
	if n := status().Restarts; n > 4 {
		t.Errorf("%d restarts within about 4s: no backoff", n)
	}

	os.Remove(marker)
	waitFor(t, "the plugin to run again", 15*time.Second, func() bool { return len(rec.events("test_counter")) > 0 })
	if st := status(); st.State != engine.StateRunning {
		t.Errorf("status after recovery = %+v", st)
	}
}

func restartsMetric(t *testing.T, g prometheus.Gatherer, component string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "pearld_component_restarts_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "component" && l.GetValue() == component {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestShutdownWithHungPlugins stops an engine whose plugins do not answer:
// one ignores cancellation, one is frozen by SIGSTOP. Stop must return in
// bounded time and leave no process behind.
func TestShutdownWithHungPlugins(t *testing.T) {
	rec := &recorder{}
	file := writeFile(t, "test.toml", `
[devices.d]
address = "127.0.0.1:1"

[sources.hang]
type     = "plugin"
plugin   = "hang"

[sources.freeze]
type     = "plugin"
plugin   = "freeze"

[sinks.out]
type   = "record"
inputs = ["hang", "freeze"]
`)
	e := engine.New(engine.Options{Registry: registry(rec)})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	hang, freeze := source(t, e, "hang"), source(t, e, "freeze")
	waitFor(t, "both plugins", 10*time.Second, func() bool { return hang.PID() != 0 && freeze.PID() != 0 })
	pids := []int{hang.PID(), freeze.PID()}
	waitFor(t, "the frozen plugin", 5*time.Second, func() bool { return state(pids[1]) == 'T' })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("Stop took %s with hung plugins", took)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("plugin process %d survived the shutdown", pid)
		}
	}
}
