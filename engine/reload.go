package engine

import (
	"context"
	"errors"
	"slices"
	"time"
)

// ReloadTimeout bounds how long a reload waits for a replaced pipeline to
// drain.
const ReloadTimeout = 15 * time.Second

// Reload applies the pipeline files as they are now: new files start,
// removed files stop, changed files restart only the components whose
// configuration changed (with everything downstream of them that cannot
// rewire itself), and unchanged pipelines are left alone. A file that no
// longer loads or initialises leaves its running version in place; the
// returned error names every such file. Reload is safe to call while the
// engine runs, not concurrently with itself, Start or Stop.
func (e *Engine) Reload(files []string) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()

	var errs []error
	wanted := map[string]bool{}
	var started []*Pipeline
	for _, f := range files {
		name := PipelineName(f)
		wanted[name] = true
		cfg, err := LoadFile(f, LoadOptions{Registry: e.opts.Registry, LookupEnv: e.opts.LookupEnv})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		old := e.Pipeline(name)
		switch {
		case old == nil:
			p, err := e.newPipeline(cfg, e.listeners, e.reg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.setPipeline(name, p)
			started = append(started, p)
			e.log.Info("pipeline added", "pipeline", name, "file", f)
		case old.cfg.sameAs(cfg):
			// Unchanged.
		default:
			p, err := e.replace(old, cfg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.setPipeline(name, p)
		}
	}
	// Pipelines whose files are gone stop.
	e.mu.Lock()
	var gone []*Pipeline
	for name, p := range e.pipelines {
		if !wanted[name] {
			gone = append(gone, p)
			delete(e.pipelines, name)
		}
	}
	e.mu.Unlock()
	for _, p := range gone {
		ctx, cancel := context.WithTimeout(context.Background(), ReloadTimeout)
		if err := p.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
		e.log.Info("pipeline removed", "pipeline", p.Name())
	}
	if err := e.listeners.Start(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range started {
		p.Start()
	}
	e.mu.Lock()
	e.loadErrors = errs
	e.mu.Unlock()
	return errors.Join(errs...)
}

func (e *Engine) setPipeline(name string, p *Pipeline) {
	e.mu.Lock()
	e.pipelines[name] = p
	e.mu.Unlock()
}

// sameAs tells whether two loads of a pipeline configure the same thing.
func (c *PipelineConfig) sameAs(o *PipelineConfig) bool {
	if c.DevicesFingerprint != o.DevicesFingerprint || len(c.Components) != len(o.Components) {
		return false
	}
	for _, x := range c.Components {
		y := o.Component(x.Name)
		if y == nil || y.Type != x.Type || y.Kind != x.Kind || y.Fingerprint != x.Fingerprint {
			return false
		}
	}
	return true
}

// replace swaps old for a pipeline built from cfg. Components whose table
// is unchanged are taken over with their state (a hub keeps its clients)
// unless something they depend on changed and they cannot rewire
// themselves; the rest are initialised anew. When that fails, old keeps
// running untouched.
func (e *Engine) replace(old *Pipeline, cfg *PipelineConfig) (*Pipeline, error) {
	keep := old.keepable(cfg)
	p, err := buildPipeline(cfg, Deps{
		Logger: e.log, Metrics: e.reg, Listeners: e.listeners, Epoch: e.epoch, Seq: &e.seq,
		StatusAddr: e.opts.StatusAddr, PluginsDir: e.opts.PluginsDir,
		engineMetrics: e.metrics, refs: &e.refs,
	}, old, keep)
	if err != nil {
		return nil, err
	}
	// Hand over: the old pipeline drains and stops, but the components taken
	// over stay open, mounted and registered.
	for _, n := range old.nodes {
		n.handedOver = keep[n.cfg.Name]
	}
	old.resourcesTaken = p.sharesResources
	ctx, cancel := context.WithTimeout(context.Background(), ReloadTimeout)
	defer cancel()
	if err := old.Stop(ctx); err != nil {
		e.log.Warn("replaced pipeline did not drain in time", "pipeline", old.Name(), "err", err)
	}
	p.committed = true
	if err := p.staged.commit(e.listeners); err != nil {
		// The new components' routes conflict: run without them rather than
		// not at all, and say so.
		e.log.Error("mounting handlers after reload", "pipeline", p.Name(), "err", err)
	}
	p.Start()
	var kept, renewed []string
	for _, n := range p.nodes {
		if n.taken {
			kept = append(kept, n.cfg.Name)
		} else {
			renewed = append(renewed, n.cfg.Name)
		}
	}
	e.log.Info("pipeline reloaded", "pipeline", p.Name(), "kept", kept, "restarted", renewed)
	return p, nil
}

// keepable decides which components of old a reload to cfg takes over:
// same name, type and table; not depending on changed devices; and, if it
// looked at its upstream components, either the same upstream, all of it
// kept, or able to rewire itself.
func (old *Pipeline) keepable(cfg *PipelineConfig) map[string]bool {
	devicesChanged := old.cfg.DevicesFingerprint != cfg.DevicesFingerprint
	keep := map[string]bool{}
	for _, c := range cfg.Components { // topological order
		o := old.node(c.Name)
		if o == nil || o.cfg.Type != c.Type || o.cfg.Kind != c.Kind || o.cfg.Fingerprint != c.Fingerprint {
			continue
		}
		if devicesChanged && (c.Kind == KindSource || o.env.usesDevices.Load()) {
			continue
		}
		newUp := upstreamNames(c, cfg)
		sameUp := slices.Equal(newUp, upstreamNames(o.cfg, old.cfg))
		for _, u := range newUp {
			sameUp = sameUp && keep[u]
		}
		if !sameUp && o.env.usesUpstream.Load() {
			// Queues are rewired by the runner; references the component
			// took from Env.Upstream must be renewed by the component.
			if _, ok := o.cfg.Value.(Rewirer); !ok {
				continue
			}
		}
		keep[c.Name] = true
	}
	return keep
}

// upstreamNames lists the names of everything c reads from, sorted.
func upstreamNames(c *ComponentConfig, cfg *PipelineConfig) []string {
	out := upstreamWalk(c, cfg)
	slices.Sort(out)
	return out
}
