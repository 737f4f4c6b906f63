package engine

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rewiringSink mounts a handler, counts closes and rewires.
type rewiringSink struct {
	testSink
	Listen string `toml:"listen"`
	Label  string `toml:"label"`

	rewired atomic.Int32
	closes  atomic.Int32
	ups     atomic.Int32
}

func (s *rewiringSink) Init(env *Env) error {
	s.ups.Store(int32(len(env.Upstream())))
	return env.Handle(s.Listen, "GET /label", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, s.Label)
	}))
}

func (s *rewiringSink) Rewire(env *Env) error {
	s.rewired.Add(1)
	s.ups.Store(int32(len(env.Upstream())))
	return nil
}

func (s *rewiringSink) Close(ctx context.Context) error {
	s.closes.Add(1)
	return s.testSink.Close(ctx)
}

func reloadRegistry() *Registry {
	r := testRegistry()
	r.Register(KindSink, "rewiring", func() any { return &rewiringSink{} })
	return r
}

const reloadPipeline = `
[sources.s]
type = "pearl_publisher_status"
count = %d

[processors.p]
type = "dedup"
inputs = ["s"]

[sinks.live]
type = "rewiring"
inputs = ["p"]
listen = "127.0.0.1:0"
label = "%s"

[sinks.plain]
type = "websocket"
inputs = ["p"]
`

func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "main.toml")
	write := func(src string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(sprintf(reloadPipeline, 3, "one"))
	e := New(Options{Registry: reloadRegistry()})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Stop(ctx)
	}()
	get := func() string {
		t.Helper()
		resp, err := http.Get("http://" + e.Listeners().Addr("127.0.0.1:0").String() + "/label")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	p1 := e.Pipeline("main")
	live := p1.cfg.Component("live").Value.(*rewiringSink)
	plain1 := p1.cfg.Component("plain").Value.(*testSink)
	waitFor(t, "the first events", func() bool { return len(live.events()) == 3 })

	// Unchanged: nothing happens.
	if err := e.Reload([]string{file}); err != nil {
		t.Fatal(err)
	}
	if e.Pipeline("main") != p1 {
		t.Fatal("an unchanged file replaced its pipeline")
	}

	// The source changes: it restarts; the components downstream are kept
	// (the one that looked at its upstream rewires), open and mounted.
	write(sprintf(reloadPipeline, 5, "one"))
	if err := e.Reload([]string{file}); err != nil {
		t.Fatal(err)
	}
	p2 := e.Pipeline("main")
	if p2 == p1 {
		t.Fatal("a changed file kept its pipeline")
	}
	if p2.cfg.Component("live").Value != live {
		t.Fatal("the rewiring sink was not kept")
	}
	if live.closes.Load() != 0 || live.rewired.Load() != 1 || live.ups.Load() != 2 {
		t.Errorf("kept sink: closes %d, rewired %d, upstream %d", live.closes.Load(), live.rewired.Load(), live.ups.Load())
	}
	// The plain sink never looked at its upstream: the runner's new queues
	// are all it needs, so it is kept too.
	if p2.cfg.Component("plain").Value != plain1 || plain1.closed {
		t.Error("a sink that does not depend on its upstream components was restarted")
	}
	if get() != "one" {
		t.Error("the kept sink's handler is gone")
	}
	waitFor(t, "the new source's events at the kept sink", func() bool { return len(live.events()) == 3+5 })

	// A broken file leaves the running version in place.
	write(sprintf(reloadPipeline, 5, "one") + "\n[sinks.bad]\ntype = \"nope\"\n")
	err := e.Reload([]string{file})
	if err == nil || !strings.Contains(err.Error(), `unknown sink type "nope"`) {
		t.Fatalf("reload of a broken file: %v", err)
	}
	if e.Pipeline("main") != p2 || get() != "one" {
		t.Fatal("a broken file replaced the running pipeline")
	}
	if st := e.Status(true); st.FailedFiles != 1 || !strings.Contains(strings.Join(st.Errors, "\n"), "nope") {
		t.Errorf("status after a broken reload: %+v", st)
	}

	// The kept sink's own table changes: it restarts, its handler follows.
	write(sprintf(reloadPipeline, 5, "two"))
	if err := e.Reload([]string{file}); err != nil {
		t.Fatal(err)
	}
	if live.closes.Load() != 1 {
		t.Errorf("the changed sink was closed %d times, want 1", live.closes.Load())
	}
	if get() != "two" {
		t.Errorf("handler answers %q after the sink changed, want two", get())
	}

	// A new file starts, a removed one stops.
	other := filepath.Join(dir, "other.toml")
	if err := os.WriteFile(other, []byte("[sources.s]\ntype = \"pearl_publisher_status\"\n[sinks.k]\ntype = \"websocket\"\ninputs = [\"s\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload([]string{file, other}); err != nil {
		t.Fatal(err)
	}
	if e.Pipeline("other") == nil {
		t.Fatal("a new file did not start")
	}
	if err := e.Reload([]string{file}); err != nil {
		t.Fatal(err)
	}
	if e.Pipeline("other") != nil {
		t.Fatal("a removed file kept running")
	}
}

func sprintf(format string, args ...any) string {
	return strings.TrimSpace(fmtSprintf(format, args...)) + "\n"
}

var fmtSprintf = fmt.Sprintf

// upstreamSink looks at its upstream in Init and cannot rewire.
type upstreamSink struct{ testSink }

func (s *upstreamSink) Init(env *Env) error { _ = env.Upstream(); return nil }

func TestReloadRestartsWhatCannotRewire(t *testing.T) {
	reg := testRegistry()
	reg.Register(KindSink, "upstream", func() any { return &upstreamSink{} })
	dir := t.TempDir()
	file := filepath.Join(dir, "p.toml")
	src := "[sources.s]\ntype = \"pearl_publisher_status\"\ncount = %d\n[sinks.k]\ntype = \"upstream\"\ninputs = [\"s\"]\n"
	if err := os.WriteFile(file, []byte(fmtSprintf(src, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := New(Options{Registry: reg})
	if err := e.Start([]string{file}); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(context.Background())
	k1 := e.Pipeline("p").cfg.Component("k").Value.(*upstreamSink)
	if err := os.WriteFile(file, []byte(fmtSprintf(src, 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.Reload([]string{file}); err != nil {
		t.Fatal(err)
	}
	if e.Pipeline("p").cfg.Component("k").Value == k1 || !k1.closed {
		t.Error("a sink holding upstream references without Rewire was kept")
	}
}
