package plugins

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pearld/pearld/engine"
	pb "github.com/pearld/pearld/sdk/proto"
)

// DefaultDir is where plugins are looked up when pearld is not told
// otherwise (--plugins-dir).
const DefaultDir = "bin/plugins"

// describeTimeout bounds starting a plugin and reading its declaration.
const describeTimeout = 15 * time.Second

// Description is what a plugin declares about itself.
type Description struct {
	// Name is the plugin's name: its binary's file name.
	Name string `json:"name"`
	// Path is the binary's absolute path.
	Path        string   `json:"path"`
	Version     string   `json:"version"`
	Description string   `json:"description,omitempty"`
	DataTypes   []string `json:"data_types"`
	Fields      []Field  `json:"fields"`
}

// Field is a configuration key a plugin declares.
type Field struct {
	Name string `json:"name"`
	// Type is string, int, float, bool, duration or list.
	Type string `json:"type"`
	// Default is the default value as JSON, "" for none.
	Default     string `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required,omitempty"`
}

// field returns the declared field called name.
func (d *Description) field(name string) (Field, bool) {
	for _, f := range d.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

func (d *Description) fieldNames() string {
	if len(d.Fields) == 0 {
		return "no options"
	}
	names := make([]string, len(d.Fields))
	for i, f := range d.Fields {
		names[i] = f.Name
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

var fieldTypes = map[pb.FieldType]string{
	pb.FieldType_FIELD_TYPE_STRING:   "string",
	pb.FieldType_FIELD_TYPE_INT:      "int",
	pb.FieldType_FIELD_TYPE_FLOAT:    "float",
	pb.FieldType_FIELD_TYPE_BOOL:     "bool",
	pb.FieldType_FIELD_TYPE_DURATION: "duration",
	pb.FieldType_FIELD_TYPE_LIST:     "list",
}

// describe asks a running plugin for its declaration and checks it.
func (p *process) describe(ctx context.Context, path string) (*Description, error) {
	r, err := p.source.Describe(ctx, &pb.DescribeRequest{})
	if err != nil {
		return nil, fmt.Errorf("describing plugin %s: %w", p.name, err)
	}
	d := &Description{
		Name: r.GetName(), Path: path, Version: r.GetVersion(), Description: r.GetDescription(),
		DataTypes: slices.Clone(r.GetDataTypes()),
	}
	if d.Name != p.name {
		return nil, fmt.Errorf("describing plugin %s: the binary declares itself as %q; a plugin's binary must be named after it", p.name, d.Name)
	}
	if len(d.DataTypes) == 0 {
		return nil, fmt.Errorf("describing plugin %s: it declares no data types", p.name)
	}
	for _, f := range r.GetFields() {
		t, ok := fieldTypes[f.GetType()]
		if !ok {
			return nil, fmt.Errorf("describing plugin %s: field %q has an unknown type %v", p.name, f.GetName(), f.GetType())
		}
		if pb.IsReserved(f.GetName()) {
			return nil, fmt.Errorf("describing plugin %s: field %q is one of pearld's own keys", p.name, f.GetName())
		}
		d.Fields = append(d.Fields, Field{Name: f.GetName(), Type: t, Default: f.GetDefaultJson(),
			Description: f.GetDescription(), Required: f.GetRequired()})
	}
	return d, nil
}

var pluginName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

// resolve returns the absolute path of the binary of plugin name in dir,
// checking that it is an executable file.
func resolve(dir, name string) (string, error) {
	if !pluginName.MatchString(name) {
		return "", fmt.Errorf("plugin name %q: use 1-64 of a-z 0-9 _, starting with a letter", name)
	}
	if dir == "" {
		dir = DefaultDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding plugin %s: %w", name, err)
	}
	path := filepath.Join(abs, name)
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		found := "none"
		if names := binaries(abs); len(names) > 0 {
			found = strings.Join(names, ", ")
		}
		return "", fmt.Errorf("plugin %q not found in %s (found: %s); `make build` builds the shipped plugins, --plugins-dir sets the directory", name, abs, found)
	case err != nil:
		return "", fmt.Errorf("finding plugin %s: %w", name, err)
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("plugin %s: %s is not a regular file", name, path)
	case st.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("plugin %s: %s is not executable", name, path)
	}
	return path, nil
}

// binaries lists the names of the plugin binaries in dir.
func binaries(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 || !pluginName.MatchString(e.Name()) {
			continue
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// Describe starts the plugin called name in dir, reads its declaration
// and stops it.
func Describe(ctx context.Context, dir, name string, log *slog.Logger) (*Description, error) {
	path, err := resolve(dir, name)
	if err != nil {
		return nil, err
	}
	return describeBinary(ctx, name, path, nil, log, nil)
}

func describeBinary(ctx context.Context, name, path string, pin []byte, log *slog.Logger, junk *junkReporter) (*Description, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if junk == nil {
		junk = &junkReporter{log: log, count: func(string) {}}
	}
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	p, err := launch(ctx, launchOptions{name: name, path: path, pin: pin, log: log, junk: junk})
	if err != nil {
		return nil, err
	}
	defer p.kill()
	return p.describe(ctx, path)
}

// List describes every plugin binary in dir, in name order. A binary that
// cannot be described is reported in the joined error; the others are
// listed.
func List(ctx context.Context, dir string, log *slog.Logger) ([]*Description, error) {
	if dir == "" {
		dir = DefaultDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("listing plugins: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("listing plugins: %w", err)
	}
	var out []*Description
	var errs []error
	for _, name := range binaries(abs) {
		d, err := describeBinary(ctx, name, filepath.Join(abs, name), nil, log, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	return out, errors.Join(errs...)
}

// metrics are a plugin source's own series; the engine adds the pipeline
// and component labels.
type metrics struct {
	starts   prometheus.Counter
	up       prometheus.Gauge
	polls    *prometheus.CounterVec
	duration prometheus.Histogram
	output   *prometheus.CounterVec
	rejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		starts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_plugin_starts_total",
			Help: "Plugin processes started to run a source (restarts included).",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pearld_plugin_up",
			Help: "1 while the source's plugin process is serving, 0 while it is down or restarting.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_plugin_polls_total",
			Help: "Polls of a plugin by result: ok, device_error (the device failed), plugin_error (the plugin failed).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pearld_plugin_poll_duration_seconds",
			Help:    "Duration of a plugin's polls.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		output: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_plugin_output_lines_total",
			Help: "Lines a plugin wrote to stdout or stderr outside the protocol and its logger.",
		}, []string{"stream"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_plugin_rejected_events_total",
			Help: "Events of a plugin dropped because their data type or device was not the plugin's to emit.",
		}),
	}
	// Adopt the collectors of a replaced source after a reload.
	var errs []error
	adopt := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	m.starts, err = engine.RegisterCollector(reg, m.starts)
	adopt(err)
	m.up, err = engine.RegisterCollector(reg, m.up)
	adopt(err)
	m.polls, err = engine.RegisterCollector(reg, m.polls)
	adopt(err)
	m.duration, err = engine.RegisterCollector(reg, m.duration)
	adopt(err)
	m.output, err = engine.RegisterCollector(reg, m.output)
	adopt(err)
	m.rejected, err = engine.RegisterCollector(reg, m.rejected)
	adopt(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("registering plugin metrics: %w", errors.Join(errs...))
	}
	return m, nil
}
