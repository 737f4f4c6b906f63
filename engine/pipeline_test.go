package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startPipeline(t *testing.T, src string) *Pipeline {
	t.Helper()
	cfg, err := Load("p.toml", []byte(src), LoadOptions{Registry: testRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	return p
}

func TestPipelineFanOutAndDrain(t *testing.T) {
	p := startPipeline(t, `
[sources.s]
type = "pearl_publisher_status"
count = 500
[processors.p]
type = "dedup"
inputs = ["s"]
buffer = 2
[sinks.a]
type = "websocket"
inputs = ["p"]
[sinks.b]
type = "websocket"
inputs = ["p", "s"]
delay = "1ms"
`)
	a := p.cfg.Component("a").Value.(*testSink)
	b := p.cfg.Component("b").Value.(*testSink)
	waitFor(t, "sink a to get all events", func() bool { return len(a.events()) == 500 })
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Stop drains: b, slow as it is, still gets both copies of everything.
	if got := len(b.events()); got != 1000 {
		t.Errorf("sink b got %d events, want 1000 (500 from each input)", got)
	}
	if !a.closed || !b.closed {
		t.Error("sinks were not closed")
	}
	// Seq is assigned once per event, in emission order, without gaps.
	for i, e := range a.events() {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
		if e.Time.IsZero() {
			t.Fatal("event time not set")
		}
	}
	st := p.Status(false)
	for _, c := range st {
		if c.State != StateStopped {
			t.Errorf("%s state %s after stop", c.Name, c.State)
		}
	}
}

func TestPipelineDropNewest(t *testing.T) {
	p := startPipeline(t, `
[sources.s]
type = "pearl_publisher_status"
count = 200
[sinks.slow]
type = "websocket"
inputs = ["s"]
buffer = 1
when_full = "drop_newest"
delay = "20ms"
`)
	slow := p.cfg.Component("slow").Value.(*testSink)
	waitFor(t, "the source to finish emitting", func() bool {
		st := p.Status(false)
		return st[0].Sent == 200
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	got := len(slow.events())
	dropped := p.Status(false)[1].Dropped
	if got == 0 || got >= 200 || uint64(got)+dropped != 200 {
		t.Errorf("slow sink got %d, dropped %d: want some dropped, none lost from the count", got, dropped)
	}
}

func TestPipelineRestartsFailedSource(t *testing.T) {
	p := startPipeline(t, `
[sources.s]
type = "pearl_publisher_status"
count = 1
fail = true
[sinks.k]
type = "websocket"
inputs = ["s"]
`)
	src := p.cfg.Component("s").Value.(*testSource)
	waitFor(t, "a restart", func() bool { return src.runs.Load() >= 2 })
	st := p.Status(true)
	if st[0].Restarts < 1 || st[0].LastError == "" {
		t.Errorf("status after a failure: %+v", st[0])
	}
	if p.Status(false)[0].LastError != "" {
		t.Error("error text shown without detail")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

type panicSource struct{}

func (*panicSource) Run(context.Context, func(Event)) error { panic("boom") }

func TestPipelineSurvivesPanic(t *testing.T) {
	reg := testRegistry()
	reg.Register(KindSource, "panicky", func() any { return &panicSource{} })
	cfg, err := Load("p.toml", []byte(`
[sources.bad]
type = "panicky"
[sources.good]
type = "pearl_publisher_status"
count = 3
[sinks.k]
type = "websocket"
inputs = ["bad", "good"]
`), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	k := cfg.Component("k").Value.(*testSink)
	waitFor(t, "the good source's events", func() bool { return len(k.events()) == 3 })
	waitFor(t, "the panic to be recorded", func() bool { return strings.Contains(p.Status(true)[0].LastError, "panic: boom") })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEngineRunsGoodFilesAndReportsBroken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.toml", `
[sources.s]
type = "pearl_publisher_status"
count = 2
[sinks.k]
type = "websocket"
inputs = ["s"]
`)
	write("broken.toml", `
[sources.s]
type = "pearl_publisher_status"
colour = "blue"
`)
	files, err := PipelineFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Registry: testRegistry(), StatusAddr: "127.0.0.1:0", IsAdmin: func(r *http.Request) bool { return r.Header.Get("X-Admin") == "1" }})
	err = e.Start(files)
	if err == nil || !strings.Contains(err.Error(), `broken.toml:4: sources.s: unknown key "sources.s.colour"`) {
		t.Fatalf("Start error = %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Error(err)
		}
	}()
	if e.Pipeline("good") == nil || e.Pipeline("broken") != nil {
		t.Fatal("good pipeline should run, broken one not")
	}
	base := "http://" + e.Listeners().Addr("127.0.0.1:0").String()
	get := func(path string, admin bool) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		if admin {
			req.Header.Set("X-Admin", "1")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/health", false)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"failed_files":1`) {
		t.Errorf("/health = %d %s, want 503 with the broken file counted", code, body)
	}
	code, body = get("/status", false)
	var st StatusReport
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("/status = %d %s", code, body)
	}
	if len(st.Pipelines) != 1 || st.Pipelines[0].Name != "good" || len(st.Errors) != 0 || st.Pipelines[0].File != "" {
		t.Errorf("/status without admin = %+v", st)
	}
	_, body = get("/status", true)
	if !strings.Contains(body, "colour") {
		t.Errorf("/status for an admin lacks the load error: %s", body)
	}
	code, body = get("/metrics", false)
	if code != 200 || !strings.Contains(body, `pearld_component_sent_events_total{component="s",pipeline="good",type="pearl_publisher_status"} 2`) {
		t.Errorf("/metrics = %d, missing the source counter:\n%s", code, body)
	}
}

func TestEngineValidate(t *testing.T) {
	e := New(Options{Registry: testRegistry(), LookupEnv: envOf(map[string]string{"PEARL_PASSWORD": "x"})})
	if err := e.Validate([]string{"testdata/design.toml"}); err != nil {
		t.Fatal(err)
	}
	e = New(Options{Registry: testRegistry(), LookupEnv: envOf(nil)})
	err := e.Validate([]string{"testdata/design.toml"})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "design.toml:4: environment variable PEARL_PASSWORD is not set") {
		t.Fatalf("Validate = %v", err)
	}
}

// holdProc holds events back and releases them in a flush after delay.
type holdProc struct {
	Delay Duration `toml:"delay"`

	held  []Event
	due   time.Time
	calls int
}

func (h *holdProc) Process(_ context.Context, b []Event) ([]Event, error) {
	if len(h.held) == 0 {
		h.due = time.Now().Add(h.Delay.D())
	}
	h.held = append(h.held, b...)
	return nil, nil
}

func (h *holdProc) Flush(context.Context) ([]Event, error) {
	h.calls++
	out := h.held
	h.held = nil
	h.due = time.Time{}
	return out, nil
}

func (h *holdProc) NextFlush() time.Time { return h.due }

func TestPipelineFlusher(t *testing.T) {
	reg := testRegistry()
	reg.Register(KindProcessor, "hold", func() any { return &holdProc{} })
	cfg, err := Load("p.toml", []byte(`
[sources.s]
type = "pearl_publisher_status"
count = 5
[processors.h]
type = "hold"
inputs = ["s"]
delay = "50ms"
[sinks.k]
type = "websocket"
inputs = ["h"]
`), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Start()
	k := cfg.Component("k").Value.(*testSink)
	waitFor(t, "the flushed events", func() bool { return len(k.events()) == 5 })
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("events arrived after %s, before the flush was due", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if h := cfg.Component("h").Value.(*holdProc); h.calls < 2 {
		t.Errorf("flush calls = %d, want the timed one and the final one", h.calls)
	}
}
