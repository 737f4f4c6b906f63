package plugins

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl"
	"go.uber.org/goleak"
)

// pluginsDir holds the binaries TestMain builds: stream_quality and the
// test plugin under each of its names.
var pluginsDir string

// testPlugins are the names the test plugin is installed under.
var testPlugins = []string{"counter", "hang", "freeze", "crashy", "junk"}

func TestMain(m *testing.M) {
	if file := os.Getenv(envDaemon); file != "" {
		os.Exit(runDaemon(file, os.Getenv(envDaemonDir)))
	}
	dir, err := os.MkdirTemp("", "pearld-plugins-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if err := buildPlugins(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		pluginsDir = dir
		code = runTests(m)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// runTests runs the tests and checks that they leave no goroutines behind:
// go-plugin's client keeps none once Kill returned, so nothing is ignored.
func runTests(m *testing.M) int {
	code := m.Run()
	if code != 0 {
		return code
	}
	if err := goleak.Find(); err != nil {
		fmt.Fprintln(os.Stderr, "goleak:", err)
		return 1
	}
	return 0
}

func buildPlugins(dir string) error {
	build := func(out, pkg string) error {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %w", pkg, err)
		}
		return nil
	}
	if err := build(filepath.Join(dir, "stream_quality"), "./stream_quality"); err != nil {
		return err
	}
	tp := filepath.Join(dir, ".testplugin")
	if err := build(tp, "./internal/testplugin"); err != nil {
		return err
	}
	for _, name := range testPlugins {
		if err := os.Link(tp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// registry has the plugin source (looking in pluginsDir), Pearl's
// publisher poller and a recording sink.
func registry(sink *recorder) *engine.Registry {
	reg := engine.NewRegistry()
	reg.Register(engine.KindSource, TypePlugin, func() any {
		s := NewSource()
		s.dir = pluginsDir
		return s
	})
	reg.Register(engine.KindSource, "pearl_publisher_status", func() any { return pearl.NewPublisherStatusSource() })
	reg.Register(engine.KindSink, "record", func() any { return sink })
	return reg
}

// recorder is a sink that keeps every event.
type recorder struct {
	Listen string `toml:"listen"`

	mu  sync.Mutex
	got []engine.Event
}

func (r *recorder) Write(_ context.Context, b []engine.Event) error {
	r.mu.Lock()
	r.got = append(r.got, b...)
	r.mu.Unlock()
	return nil
}

// events returns the events of a data type received so far.
func (r *recorder) events(typ string) []engine.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []engine.Event
	for _, e := range r.got {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func writeFile(t *testing.T, name, src string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startEngine runs pipeline src with rec as its "record" sink and returns
// the engine; the test's cleanup stops it.
func startEngine(t *testing.T, src string, rec *recorder, log *slog.Logger) *engine.Engine {
	t.Helper()
	file := writeFile(t, "test.toml", src)
	e := engine.New(engine.Options{Registry: registry(rec), PluginsDir: pluginsDir, Logger: log})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	})
	return e
}

// source returns the plugin source called name of the running test
// pipeline.
func source(t *testing.T, e *engine.Engine, name string) *Source {
	t.Helper()
	p := e.Pipeline("test")
	if p == nil {
		t.Fatal("pipeline test is not running")
	}
	return p.Config().Component(name).Value.(*Source)
}

// component returns the status of a component of the test pipeline.
func component(e *engine.Engine, name string) engine.ComponentStatus {
	for _, p := range e.Status(true).Pipelines {
		for _, c := range p.Components {
			if c.Name == name {
				return c
			}
		}
	}
	return engine.ComponentStatus{}
}

// state returns the state letter of process pid (R, S, T, Z, ...), 0 when
// there is no such process.
func state(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	s := state(pid)
	return s != 0 && s != 'Z'
}

// children returns the pids of the living children of pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			out = append(out, c)
		}
	}
	return out
}
