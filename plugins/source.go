package plugins

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
	pb "github.com/pearld/pearld/sdk/proto"
)

// TypePlugin is the source type of plugin sources in pipeline files.
const TypePlugin = "plugin"

func init() {
	engine.RegisterSource(TypePlugin, func() any { return NewSource() })
}

// Interface guards.
var (
	_ engine.Source      = (*Source)(nil)
	_ engine.Initializer = (*Source)(nil)
	_ engine.DataTyper   = (*Source)(nil)
)

// Source is the `plugin` source: it runs a plugin binary and polls the
// pipeline's devices through it. Its table holds the keys below plus the
// plugin's own, which Init checks against what the plugin declares.
type Source struct {
	// Plugin is the plugin's name: the file name of its binary in the
	// plugins directory (--plugins-dir, default bin/plugins). Required.
	Plugin string `toml:"plugin"`
	// Devices are names or glob patterns of the pipeline's devices;
	// default (empty or "*") all.
	Devices []string `toml:"devices"`
	// Interval between polls of a device; default 5s.
	Interval engine.Duration `toml:"interval"`
	// MaxBackoff is the longest wait between polls of a failing device;
	// default 60s.
	MaxBackoff engine.Duration `toml:"max_backoff"`
	// SHA256, when set, pins the binary: a binary whose SHA-256 (hex) is
	// another is refused, at validation and at every start.
	SHA256 string `toml:"sha256"`
	// Options are the plugin's own keys, checked in Init.
	Options engine.Extra

	dir     string // plugins directory; "" means env.PluginsDir
	path    string
	pin     []byte
	desc    *Description
	options []byte // the plugin's keys as a JSON object
	devices []*engine.Device
	log     *slog.Logger
	metrics *metrics
	junk    *junkReporter

	mu   sync.Mutex
	proc *process
}

// NewSource returns the source with its defaults.
func NewSource() *Source {
	return &Source{
		Interval:   engine.Duration(5 * time.Second),
		MaxBackoff: engine.Duration(60 * time.Second),
	}
}

// Init finds the plugin binary, checks its pin, starts it to read its
// declaration and check the plugin's keys (an unknown key or a bad value
// is reported at its line), then stops it. It makes no request to any
// device.
func (s *Source) Init(env *engine.Env) error {
	switch {
	case s.Plugin == "":
		return errors.New(`missing plugin: name the plugin binary, such as plugin = "stream_quality"`)
	case s.Interval <= 0:
		return fmt.Errorf("interval must be positive, not %s", s.Interval)
	case s.MaxBackoff < s.Interval:
		return fmt.Errorf("max_backoff (%s) must not be less than interval (%s)", s.MaxBackoff, s.Interval)
	}
	if s.SHA256 != "" {
		pin, err := hex.DecodeString(strings.TrimSpace(s.SHA256))
		if err != nil || len(pin) != 32 {
			return fmt.Errorf("sha256 must be the 64 hex digits of the binary's SHA-256 (sha256sum prints them), not %q", s.SHA256)
		}
		s.pin = pin
	}
	devices, err := env.MatchDevices(s.Devices)
	if err != nil {
		return err
	}
	dir := s.dir
	if dir == "" {
		dir = env.PluginsDir
	}
	path, err := resolve(dir, s.Plugin)
	if err != nil {
		return err
	}
	m, err := newMetrics(env.Metrics)
	if err != nil {
		return err
	}
	log := env.Logger.With("plugin", s.Plugin)
	junk := &junkReporter{log: log, count: func(stream string) { m.output.WithLabelValues(stream).Inc() }}
	options, err := s.encodeOptions()
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), describeTimeout)
	defer cancel()
	p, err := launch(ctx, launchOptions{name: s.Plugin, path: path, pin: s.pin, log: log, junk: junk})
	if err != nil {
		return err
	}
	defer p.kill()
	desc, err := p.describe(ctx, path)
	if err != nil {
		return err
	}
	if err := s.checkOptions(ctx, p, desc, options); err != nil {
		return err
	}
	s.path, s.desc, s.options, s.devices = path, desc, options, devices
	s.log, s.metrics, s.junk = log, m, junk
	return nil
}

// encodeOptions returns the plugin's keys as the JSON object Configure
// takes.
func (s *Source) encodeOptions() ([]byte, error) {
	vals := make(map[string]any, len(s.Options))
	for k, v := range s.Options {
		vals[k] = v.Value
	}
	b, err := json.Marshal(vals)
	if err != nil {
		return nil, fmt.Errorf("encoding the plugin's options: %w", err)
	}
	return b, nil
}

// checkOptions reports the first (by line) key the plugin does not
// declare, a missing required key, and what the plugin says of the values.
func (s *Source) checkOptions(ctx context.Context, p *process, desc *Description, options []byte) error {
	keys := make([]string, 0, len(s.Options))
	for k := range s.Options {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if li, lj := s.Options[keys[i]].Line, s.Options[keys[j]].Line; li != lj {
			return li < lj
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		if _, ok := desc.field(k); !ok {
			return &engine.KeyError{Key: k, Err: fmt.Errorf("unknown option of plugin %q (it declares: %s)", s.Plugin, desc.fieldNames())}
		}
	}
	for _, f := range desc.Fields {
		if _, set := s.Options[f.Name]; f.Required && !set {
			return fmt.Errorf("plugin %q requires the key %q: %s", s.Plugin, f.Name, f.Description)
		}
	}
	r, err := p.source.Configure(ctx, &pb.ConfigureRequest{OptionsJson: options, ValidateOnly: true})
	if err != nil {
		return fmt.Errorf("checking the options of plugin %s: %w", s.Plugin, err)
	}
	if r.GetError() != "" {
		if k := r.GetKey(); k != "" {
			return &engine.KeyError{Key: k, Err: errors.New(r.GetError())}
		}
		return fmt.Errorf("plugin %s rejects its options: %s", s.Plugin, r.GetError())
	}
	return nil
}

// DataTypes returns the data types the plugin declares.
func (s *Source) DataTypes() []string {
	if s.desc == nil {
		return nil
	}
	return slices.Clone(s.desc.DataTypes)
}

// Description returns the plugin's declaration, read in Init.
func (s *Source) Description() *Description { return s.desc }

// PID returns the process id of the running plugin, 0 while none runs.
func (s *Source) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.PID()
}

// errStuck is the cause of a restart for a plugin that stopped answering.
var errStuck = errors.New("plugin stopped answering polls")

// Run starts the plugin, configures it and polls every device from its own
// goroutine until ctx ends. When the plugin process dies, or stops
// answering, Run stops it and returns an error: the engine restarts the
// source with backoff, and the rest of the pipeline keeps running.
func (s *Source) Run(ctx context.Context, emit func(engine.Event)) error {
	if s.desc == nil {
		return errors.New("running plugin source: not initialised")
	}
	p, err := s.start(ctx)
	if err != nil {
		return err
	}
	s.setProc(p)
	s.metrics.up.Set(1)
	defer func() {
		s.metrics.up.Set(0)
		s.setProc(nil)
		p.kill()
	}()

	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	for _, d := range s.devices {
		w := &deviceWatcher{s: s, p: p, d: d, emit: emit, fail: stop, log: s.log.With("device", d.Name)}
		wg.Go(func() { w.run(runCtx) })
	}
	select {
	case <-runCtx.Done():
	case <-p.exited():
		stop(fmt.Errorf("plugin process exited: %s", p.runner.death()))
	}
	stop(nil)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("running plugin %s: %w", s.Plugin, context.Cause(runCtx))
}

// start launches the plugin, checks that it is still the one Init
// described, and configures it.
func (s *Source) start(ctx context.Context) (*process, error) {
	sctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	s.metrics.starts.Inc()
	p, err := launch(sctx, launchOptions{name: s.Plugin, path: s.path, pin: s.pin, log: s.log, junk: s.junk})
	if err != nil {
		return nil, err
	}
	desc, err := p.describe(sctx, s.path)
	if err == nil && !slices.Equal(desc.DataTypes, s.desc.DataTypes) {
		err = fmt.Errorf("plugin %s now declares the data types %v, not %v: restart pearld to use the new binary", s.Plugin, desc.DataTypes, s.desc.DataTypes)
	}
	if err == nil {
		var r *pb.ConfigureResponse
		r, err = p.source.Configure(sctx, &pb.ConfigureRequest{OptionsJson: s.options})
		if err == nil && r.GetError() != "" {
			err = fmt.Errorf("configuring plugin %s: %s", s.Plugin, r.GetError())
			if k := r.GetKey(); k != "" {
				err = fmt.Errorf("configuring plugin %s: option %s: %s", s.Plugin, k, r.GetError())
			}
		}
	}
	if err != nil {
		p.kill()
		return nil, err
	}
	s.log.Info("plugin started", "pid", p.PID(), "version", desc.Version)
	return p, nil
}

func (s *Source) setProc(p *process) {
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
}
