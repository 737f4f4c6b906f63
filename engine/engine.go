package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure an Engine.
type Options struct {
	Logger *slog.Logger
	// Registry resolves component types; nil means DefaultRegistry().
	Registry *Registry
	// LookupEnv resolves ${VAR} in pipeline files; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// StatusAddr is where /health, /status and /metrics are served; "" serves
	// them nowhere.
	StatusAddr string
	// PluginsDir is where plugin components look for plugin binaries.
	PluginsDir string
	// IsAdmin tells whether a /status caller may see error details; nil
	// means nobody may.
	IsAdmin func(*http.Request) bool
}

// Engine runs the pipelines of a config path and serves their status.
type Engine struct {
	opts      Options
	log       *slog.Logger
	reg       *prometheus.Registry
	metrics   *engineMetrics
	refs      collectorRefs
	listeners *Listeners
	epoch     int64
	seq       atomic.Uint64
	started   time.Time

	reloadMu   sync.Mutex // serialises Reload
	mu         sync.Mutex
	pipelines  map[string]*Pipeline
	loadErrors []error
}

// New returns an engine with nothing running.
func New(opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = defaultRegistry
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e := &Engine{
		opts:      opts,
		log:       opts.Logger,
		reg:       reg,
		metrics:   newEngineMetrics(reg),
		listeners: NewListeners(opts.Logger),
		epoch:     time.Now().UnixMilli(),
		started:   time.Now(),
		pipelines: map[string]*Pipeline{},
	}
	// Seq starts from the epoch's milliseconds times 1000, so values keep
	// growing across restarts (unless a run averaged over 1000 events per
	// millisecond) and a client resuming with an old seq is never mistaken
	// for an up-to-date one. The values stay below 2^53, exact in
	// JavaScript, until the year 2255.
	e.seq.Store(uint64(e.epoch) * 1000)
	return e
}

// Epoch identifies this engine run; clients compare it to know whether
// their seq values still mean anything.
func (e *Engine) Epoch() int64 { return e.epoch }

// Listeners returns the engine's HTTP servers.
func (e *Engine) Listeners() *Listeners { return e.listeners }

// Gatherer returns the engine's metrics registry.
func (e *Engine) Gatherer() prometheus.Gatherer { return e.reg }

// PipelineFiles lists the pipeline files of path: the file itself, or every
// *.toml file directly in the directory, sorted.
func PipelineFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading pipelines: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	files, err := filepath.Glob(filepath.Join(path, "*.toml"))
	if err != nil {
		return nil, fmt.Errorf("listing pipelines in %s: %w", path, err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("reading pipelines: no *.toml files in %s", path)
	}
	return files, nil
}

// Validate loads and initialises every file without starting anything;
// the error joins every problem of every file.
func (e *Engine) Validate(files []string) error {
	var errs []error
	for _, f := range files {
		cfg, err := LoadFile(f, LoadOptions{Registry: e.opts.Registry, LookupEnv: e.opts.LookupEnv})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p, err := e.newPipeline(cfg, NewListeners(nil), prometheus.NewRegistry())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.release(context.Background())
	}
	return errors.Join(errs...)
}

func (e *Engine) newPipeline(cfg *PipelineConfig, l *Listeners, reg prometheus.Registerer) (*Pipeline, error) {
	deps := Deps{Logger: e.log, Metrics: reg, Listeners: l, Epoch: e.epoch, Seq: &e.seq, StatusAddr: e.opts.StatusAddr, PluginsDir: e.opts.PluginsDir}
	if reg == prometheus.Registerer(e.reg) {
		deps.engineMetrics = e.metrics
		deps.refs = &e.refs
	}
	return NewPipeline(cfg, deps)
}

// Start loads every file, starts each pipeline that is valid and binds the
// listeners. A broken file is reported in the returned error and in
// /status; the others run. Start fails outright only when no pipeline runs
// or a listener cannot be bound.
func (e *Engine) Start(files []string) error {
	if e.opts.StatusAddr != "" {
		if err := e.mountStatus(); err != nil {
			return err
		}
	}
	var errs []error
	var started []*Pipeline
	for _, f := range files {
		cfg, err := LoadFile(f, LoadOptions{Registry: e.opts.Registry, LookupEnv: e.opts.LookupEnv})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		e.mu.Lock()
		_, dup := e.pipelines[cfg.Name]
		e.mu.Unlock()
		if dup {
			errs = append(errs, &ConfigError{File: f, Msg: fmt.Sprintf("a pipeline named %q is already running", cfg.Name)})
			continue
		}
		p, err := e.newPipeline(cfg, e.listeners, e.reg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		started = append(started, p)
		e.mu.Lock()
		e.pipelines[cfg.Name] = p
		e.mu.Unlock()
	}
	e.mu.Lock()
	e.loadErrors = errs
	e.mu.Unlock()
	if len(started) == 0 {
		return errors.Join(append([]error{errors.New("no pipeline could be started")}, errs...)...)
	}
	if err := e.listeners.Start(); err != nil {
		for _, p := range started {
			p.release(context.Background())
		}
		e.mu.Lock()
		e.pipelines = map[string]*Pipeline{}
		e.mu.Unlock()
		return err
	}
	for _, p := range started {
		p.Start()
	}
	return errors.Join(errs...)
}

// Pipeline returns a running pipeline by name.
func (e *Engine) Pipeline(name string) *Pipeline {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pipelines[name]
}

// Stop stops every pipeline (sources first, then draining, then sinks
// close their clients) and the listeners, within ctx.
func (e *Engine) Stop(ctx context.Context) error {
	e.mu.Lock()
	ps := make([]*Pipeline, 0, len(e.pipelines))
	for _, p := range e.pipelines {
		ps = append(ps, p)
	}
	e.pipelines = map[string]*Pipeline{}
	e.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = p.Stop(ctx) }()
	}
	wg.Wait()
	e.listeners.Shutdown(ctx)
	return errors.Join(errs...)
}

func (e *Engine) mountStatus() error {
	for pattern, h := range map[string]http.Handler{
		"GET /health":  http.HandlerFunc(e.serveHealth),
		"GET /status":  http.HandlerFunc(e.serveStatus),
		"GET /metrics": promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{Registry: e.reg}),
	} {
		if err := e.listeners.Handle(e.opts.StatusAddr, pattern, h, "engine"); err != nil {
			return err
		}
	}
	return nil
}

// PipelineStatus is a pipeline's entry in /status.
type PipelineStatus struct {
	Name       string            `json:"name"`
	File       string            `json:"file,omitempty"`
	State      string            `json:"state"`
	Components []ComponentStatus `json:"components"`
}

// StatusReport is the body of /status.
type StatusReport struct {
	Status        string           `json:"status"`
	Version       string           `json:"version"`
	Epoch         int64            `json:"epoch"`
	UptimeSeconds int64            `json:"uptime_seconds"`
	Pipelines     []PipelineStatus `json:"pipelines"`
	FailedFiles   int              `json:"failed_files"`
	Errors        []string         `json:"errors,omitempty"`
}

// Status reports the engine's state; detail adds error texts and file
// paths, which only admins may see.
func (e *Engine) Status(detail bool) StatusReport {
	e.mu.Lock()
	ps := make([]*Pipeline, 0, len(e.pipelines))
	for _, p := range e.pipelines {
		ps = append(ps, p)
	}
	loadErrs := e.loadErrors
	e.mu.Unlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name() < ps[j].Name() })
	r := StatusReport{
		Status: "ok", Version: Version, Epoch: e.epoch,
		UptimeSeconds: int64(time.Since(e.started).Seconds()),
		Pipelines:     []PipelineStatus{}, FailedFiles: len(loadErrs),
	}
	for _, p := range ps {
		s := PipelineStatus{Name: p.Name(), State: StateRunning, Components: p.Status(detail)}
		if detail {
			s.File = p.cfg.File
		}
		for _, c := range s.Components {
			if c.State != StateRunning {
				s.State = "degraded"
				r.Status = "degraded"
			}
		}
		r.Pipelines = append(r.Pipelines, s)
	}
	if len(loadErrs) > 0 {
		r.Status = "degraded"
	}
	if detail {
		for _, err := range loadErrs {
			r.Errors = append(r.Errors, strings.Split(err.Error(), "\n")...)
		}
	}
	return r
}

func (e *Engine) serveStatus(w http.ResponseWriter, r *http.Request) {
	detail := e.opts.IsAdmin != nil && e.opts.IsAdmin(r)
	writeJSON(w, http.StatusOK, e.Status(detail))
}

func (e *Engine) serveHealth(w http.ResponseWriter, r *http.Request) {
	s := e.Status(false)
	code := http.StatusOK
	status := "healthy"
	if s.Status != "ok" || len(s.Pipelines) == 0 {
		code = http.StatusServiceUnavailable
		status = "unhealthy"
	}
	writeJSON(w, code, map[string]any{"status": status, "version": Version, "pipelines": len(s.Pipelines), "failed_files": s.FailedFiles})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
