package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Component states shown in /status.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateStopped    = "stopped"
)

// maxMerge bounds how many events a component's goroutine merges from its
// queue into one call.
const maxMerge = 1024

// Pipeline is one running pipeline file: its components wired by bounded
// queues.
type Pipeline struct {
	cfg       *PipelineConfig
	log       *slog.Logger
	nodes     []*node
	resources *resources
	reg       *trackingRegisterer // pipeline-wide metrics of shared resources
	listeners *Listeners
	metrics   *engineMetrics
	seq       *atomic.Uint64

	deps            Deps
	staged          *stagedMounts // mounts of a reload, committed once the old pipeline stopped
	sharesResources bool          // resources and pipeline metrics are the previous pipeline's
	resourcesTaken  bool          // a reload's new pipeline took over resources and pipeline metrics
	committed       bool          // the staged mounts are live

	stopSources context.CancelFunc
	hardCancel  context.CancelFunc
	done        chan struct{}
	started     time.Time
}

type node struct {
	p    *Pipeline
	cfg  *ComponentConfig
	env  *Env
	reg  *trackingRegisterer
	in   chan []Event
	outs []*node
	ups  atomic.Int32 // upstreams still running; in closes at zero
	// taken: the component was taken over from the previous pipeline by a
	// reload. handedOver: a reload's new pipeline took this component over,
	// so stopping this pipeline must not close it.
	taken, handedOver bool
	labels            prometheus.Labels

	received, sent, dropped, errs, restarts prometheus.Counter
	queued                                  prometheus.Gauge
	callTime                                prometheus.Observer

	mu      sync.Mutex
	state   string
	lastErr string
	errAt   time.Time
}

// Deps are what the engine shares between pipelines.
type Deps struct {
	Logger    *slog.Logger
	Metrics   prometheus.Registerer
	Listeners *Listeners
	Epoch     int64
	// StatusAddr is handed to components in Env.StatusAddr.
	StatusAddr string
	// PluginsDir is handed to components in Env.PluginsDir.
	PluginsDir string
	// Seq is the engine-wide sequence counter; nil gives the pipeline its own.
	Seq *atomic.Uint64

	engineMetrics *engineMetrics
	refs          *collectorRefs
}

// NewPipeline initialises every component of cfg in topological order. It
// does not start anything; on error nothing of the pipeline remains
// registered.
func NewPipeline(cfg *PipelineConfig, deps Deps) (*Pipeline, error) {
	return buildPipeline(cfg, deps, nil, nil)
}

// buildPipeline builds and initialises a pipeline. With prev, it prepares
// prev's replacement for a reload: the components named in keep are taken
// over from prev (instance, state, metrics) instead of being initialised
// again, mounts are staged until prev has stopped, and prev's resources are
// shared when the devices did not change.
func buildPipeline(cfg *PipelineConfig, deps Deps, prev *Pipeline, keep map[string]bool) (*Pipeline, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Metrics == nil {
		deps.Metrics = prometheus.NewRegistry()
	}
	if deps.engineMetrics == nil {
		deps.engineMetrics = newEngineMetrics(deps.Metrics)
	}
	if deps.Seq == nil {
		deps.Seq = new(atomic.Uint64)
	}
	if deps.refs == nil {
		deps.refs = &collectorRefs{}
	}
	p := &Pipeline{
		cfg:       cfg,
		deps:      deps,
		log:       deps.Logger.With("pipeline", cfg.Name),
		resources: &resources{},
		reg:       newTrackingRegisterer(prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": cfg.Name}, deps.Metrics), deps.refs),
		listeners: deps.Listeners,
		metrics:   deps.engineMetrics,
		seq:       deps.Seq,
		done:      make(chan struct{}),
	}
	mount := asMounter(deps.Listeners)
	if prev != nil {
		p.staged = &stagedMounts{}
		mount = p.staged
		if prev.cfg.DevicesFingerprint == cfg.DevicesFingerprint {
			p.resources, p.reg = prev.resources, prev.reg
			p.sharesResources = true
		}
	}
	byName := map[string]*node{}
	for _, c := range cfg.Components {
		n := &node{p: p, cfg: c, state: StateStarting}
		n.labels = prometheus.Labels{"pipeline": cfg.Name, "component": c.Name, "type": c.Type}
		m := deps.engineMetrics
		n.received = m.received.With(n.labels)
		n.sent = m.sent.With(n.labels)
		n.dropped = m.dropped.With(n.labels)
		n.errs = m.errors.With(n.labels)
		n.restarts = m.restarts.With(n.labels)
		n.queued = m.queued.With(n.labels)
		n.callTime = m.duration.With(n.labels)
		if c.Kind != KindSource {
			n.in = make(chan []Event, c.Buffer)
			n.ups.Store(int32(len(c.Inputs)))
			for _, in := range c.Inputs {
				byName[in].outs = append(byName[in].outs, n)
			}
		}
		n.reg = newTrackingRegisterer(prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": cfg.Name, "component": c.Name}, deps.Metrics), deps.refs)
		var old *node
		if keep[c.Name] {
			old = prev.node(c.Name)
			c.Value = old.cfg.Value
			n.reg = old.reg
			n.taken = true
		}
		n.env = &Env{
			Pipeline:        cfg.Name,
			Name:            c.Name,
			Type:            c.Type,
			Logger:          p.log.With("component", c.Name, "type", c.Type),
			Metrics:         n.reg,
			PipelineMetrics: p.reg,
			Devices:         cfg.Devices,
			Epoch:           deps.Epoch,
			StatusAddr:      deps.StatusAddr,
			PluginsDir:      deps.PluginsDir,
			upstream:        upstreamOf(c, cfg),
			resources:       p.resources,
			http:            mount,
		}
		if old != nil {
			n.env.usesDevices.Store(old.env.usesDevices.Load())
			n.env.usesUpstream.Store(old.env.usesUpstream.Load())
		}
		byName[c.Name] = n
		p.nodes = append(p.nodes, n)
	}
	for _, n := range p.nodes {
		var err error
		switch c := n.cfg.Value.(type) {
		case Rewirer:
			if n.taken {
				err = c.Rewire(n.env)
				break
			}
			if in, ok := c.(Initializer); ok {
				err = in.Init(n.env)
			}
		case Initializer:
			if !n.taken {
				err = c.Init(n.env)
			}
		}
		if err != nil {
			p.release(context.Background())
			return nil, &ConfigError{File: cfg.File, Line: errorLine(n.cfg, err), Component: string(n.cfg.Kind) + "." + n.cfg.Name, Msg: err.Error()}
		}
	}
	return p, nil
}

func (p *Pipeline) node(name string) *node {
	for _, n := range p.nodes {
		if n.cfg.Name == name {
			return n
		}
	}
	return nil
}

// errorLine is the line an Init error is reported at: the key's, for a
// KeyError about a key the loader collected, else the component's.
func errorLine(c *ComponentConfig, err error) int {
	var ke *KeyError
	if !errors.As(err, &ke) {
		return c.Line
	}
	v := reflect.ValueOf(c.Value).Elem()
	for i := 0; i < v.NumField(); i++ {
		if ex, ok := v.Field(i).Interface().(Extra); ok && v.Type().Field(i).IsExported() {
			if x, ok := ex[ke.Key]; ok && x.Line > 0 {
				return x.Line
			}
		}
	}
	return c.Line
}

// upstreamOf lists the values of every component c reads from, directly or
// not, nearest first.
func upstreamOf(c *ComponentConfig, cfg *PipelineConfig) []any {
	names := upstreamWalk(c, cfg)
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = cfg.Component(n).Value
	}
	return out
}

// upstreamWalk lists the names of every component c reads from, directly
// or not, nearest first.
func upstreamWalk(c *ComponentConfig, cfg *PipelineConfig) []string {
	var out []string
	seen := map[string]bool{}
	queue := append([]string{}, c.Inputs...)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, name)
		queue = append(queue, cfg.Component(name).Inputs...)
	}
	return out
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.cfg.Name }

// Config returns the configuration the pipeline runs.
func (p *Pipeline) Config() *PipelineConfig { return p.cfg }

// Start launches every component. Sources run under a context that Stop
// cancels; processors and sinks run until their inputs are drained.
func (p *Pipeline) Start() {
	srcCtx, stopSources := context.WithCancel(context.Background())
	hardCtx, hardCancel := context.WithCancel(context.Background())
	p.stopSources, p.hardCancel = stopSources, hardCancel
	p.started = time.Now()
	var wg sync.WaitGroup
	for _, n := range p.nodes {
		wg.Add(1)
		switch n.cfg.Kind {
		case KindSource:
			go func() { defer wg.Done(); n.runSource(srcCtx, hardCtx) }()
		default:
			go func() { defer wg.Done(); n.runStage(hardCtx) }()
		}
	}
	go func() {
		wg.Wait()
		close(p.done)
	}()
	p.log.Info("pipeline started", "file", p.cfg.File, "components", len(p.nodes))
}

// Stop stops the sources, lets every queued event reach the sinks, closes
// the components and releases the pipeline's listeners and resources. When
// ctx ends first, queued events are dropped and blocked calls are
// cancelled.
func (p *Pipeline) Stop(ctx context.Context) error {
	if p.stopSources == nil {
		p.release(ctx)
		return nil
	}
	p.stopSources()
	var err error
	select {
	case <-p.done:
	case <-ctx.Done():
		err = fmt.Errorf("stopping pipeline %s: %w", p.cfg.Name, ctx.Err())
		p.hardCancel()
		select {
		case <-p.done:
		case <-time.After(time.Second):
			p.log.Error("components did not stop after cancellation")
		}
	}
	p.hardCancel()
	p.release(ctx)
	p.log.Info("pipeline stopped")
	return err
}

// Done is closed once every component of a started pipeline has stopped.
func (p *Pipeline) Done() <-chan struct{} { return p.done }

func (p *Pipeline) release(ctx context.Context) {
	// A reload's replacement that never ran: the pipeline it was to
	// replace still owns the names, routes, series and shared resources.
	unborn := p.staged != nil && !p.committed
	for _, n := range p.nodes {
		if n.handedOver || (unborn && n.taken) {
			continue
		}
		if !unborn {
			if p.listeners != nil {
				p.listeners.RemoveOwner(p.cfg.Name + "/" + n.cfg.Name)
			}
			p.metrics.forgetComponent(p.cfg.Name, n.cfg.Name)
		}
		n.reg.unregisterAll()
	}
	if !(unborn && p.sharesResources) && !p.resourcesTaken {
		p.resources.close(ctx)
		p.reg.unregisterAll()
	}
}

func (n *node) setState(s string, err error) {
	n.mu.Lock()
	n.state = s
	if err != nil {
		n.lastErr = err.Error()
		n.errAt = time.Now()
	}
	n.mu.Unlock()
}

func (n *node) runSource(ctx, hard context.Context) {
	src := n.cfg.Value.(Source)
	log := n.env.Logger
	_, ownSeq := src.(Sequencer)
	emit := func(e Event) {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		if !ownSeq || e.Seq == 0 {
			e.Seq = n.p.seq.Add(1)
		}
		n.sent.Inc()
		n.forward(ctx, []Event{e})
	}
	backoff := time.Second
	for {
		n.setState(StateRunning, nil)
		started := time.Now()
		err := runGuarded(func() error { return src.Run(ctx, emit) })
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = errors.New("source returned without being stopped")
		}
		n.errs.Inc()
		n.restarts.Inc()
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		log.Error("source failed; restarting", "err", err, "in", wait.Round(time.Millisecond))
		n.setState(StateRestarting, err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		if ctx.Err() != nil {
			break
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	n.finish(hard)
}

// runGuarded turns a panic in a component into an error, so one broken
// component cannot take the daemon down.
func runGuarded(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

func (n *node) runStage(ctx context.Context) {
	n.setState(StateRunning, nil)
	flusher, _ := n.cfg.Value.(Flusher)
	var timer *time.Timer
	var timerC <-chan time.Time
	// arm sets the timer to the flusher's next deadline, if any.
	arm := func() {
		if flusher == nil {
			return
		}
		if timer != nil {
			timer.Stop()
			timerC = nil
		}
		if at := flusher.NextFlush(); !at.IsZero() {
			timer = time.NewTimer(time.Until(at))
			timerC = timer.C
		}
	}
	for {
		select {
		case batch, ok := <-n.in:
			if !ok {
				if flusher != nil {
					n.flush(ctx, flusher)
				}
				if timer != nil {
					timer.Stop()
				}
				n.finish(ctx)
				return
			}
			n.queued.Set(float64(len(n.in)))
			batch = n.merge(batch)
			n.received.Add(float64(len(batch)))
			n.call(ctx, batch)
			arm()
		case <-timerC:
			timerC = nil
			n.flush(ctx, flusher)
			arm()
		}
	}
}

// call hands one batch to the processor or sink and forwards a
// processor's output.
func (n *node) call(ctx context.Context, batch []Event) {
	start := time.Now()
	switch c := n.cfg.Value.(type) {
	case Processor:
		var out []Event
		err := runGuarded(func() error {
			var err error
			out, err = c.Process(ctx, batch)
			return err
		})
		n.callTime.Observe(time.Since(start).Seconds())
		if err != nil {
			n.errs.Inc()
			n.dropped.Add(float64(len(batch)))
			n.setState(StateRunning, err)
			n.env.Logger.Error("processing batch", "err", err, "events", len(batch))
			return
		}
		n.emitOut(ctx, out)
	case Sink:
		err := runGuarded(func() error { return c.Write(ctx, batch) })
		n.callTime.Observe(time.Since(start).Seconds())
		if err != nil {
			n.errs.Inc()
			n.setState(StateRunning, err)
			n.env.Logger.Error("writing batch", "err", err, "events", len(batch))
		}
	}
}

func (n *node) flush(ctx context.Context, f Flusher) {
	var out []Event
	err := runGuarded(func() error {
		var err error
		out, err = f.Flush(ctx)
		return err
	})
	if err != nil {
		n.errs.Inc()
		n.setState(StateRunning, err)
		n.env.Logger.Error("flushing", "err", err)
		return
	}
	n.emitOut(ctx, out)
}

func (n *node) emitOut(ctx context.Context, out []Event) {
	if len(out) > 0 {
		n.sent.Add(float64(len(out)))
		n.forward(ctx, out)
	}
}

// merge appends batches already waiting in the queue to first, up to
// maxMerge events, so a busy component makes fewer, larger calls.
func (n *node) merge(first []Event) []Event {
	if len(n.in) == 0 || len(first) >= maxMerge {
		return first
	}
	out := append(make([]Event, 0, 2*len(first)), first...)
	for len(out) < maxMerge {
		select {
		case more, ok := <-n.in:
			if !ok {
				return out
			}
			out = append(out, more...)
			continue
		default:
		}
		break
	}
	return out
}

// forward hands batch to every downstream queue. With when_full = block it
// waits for room until ctx ends; with drop_newest a full queue drops it.
func (n *node) forward(ctx context.Context, batch []Event) {
	for _, out := range n.outs {
		if out.cfg.WhenFull == whenFullDropNew {
			select {
			case out.in <- batch:
			default:
				out.dropped.Add(float64(len(batch)))
			}
			continue
		}
		select {
		case out.in <- batch:
		case <-ctx.Done():
			out.dropped.Add(float64(len(batch)))
		}
	}
}

// finish closes the component and tells its downstreams one input is done.
func (n *node) finish(ctx context.Context) {
	if c, ok := n.cfg.Value.(Closer); ok && !n.handedOver {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stop := context.AfterFunc(ctx, cancel)
		if err := c.Close(cctx); err != nil {
			n.env.Logger.Error("closing component", "err", err)
		}
		stop()
		cancel()
	}
	n.setState(StateStopped, nil)
	for _, out := range n.outs {
		if out.ups.Add(-1) == 0 {
			close(out.in)
		}
	}
}
