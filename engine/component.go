package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source produces events. The runner calls Run once, in its own goroutine,
// after every component of the pipeline has been initialised. Run blocks
// until ctx is cancelled or the source fails; it calls emit for every event
// it observes, from any number of goroutines. emit may block while
// downstream buffers are full (back-pressure); it returns early once ctx is
// cancelled. A nil error after cancellation is a clean stop; any other
// error is logged and the source is restarted with backoff.
type Source interface {
	Run(ctx context.Context, emit func(Event)) error
}

// Processor transforms batches. The runner calls Process from a single
// goroutine per processor, never concurrently, with a non-empty batch that
// it must not modify. The returned batch, which may be empty, goes to every
// downstream component. An error drops the batch and is counted and logged.
type Processor interface {
	Process(ctx context.Context, batch []Event) ([]Event, error)
}

// Sink consumes batches. The runner calls Write from a single goroutine per
// sink, never concurrently, with a non-empty batch that it must not modify.
// An error is counted and logged; the batch is not retried.
type Sink interface {
	Write(ctx context.Context, batch []Event) error
}

// Initializer is implemented by components that validate their
// configuration and build their clients after decoding. Init must not touch
// the network: `pearld validate` calls it too. An error makes the pipeline
// invalid.
type Initializer interface {
	Init(env *Env) error
}

// Closer is implemented by components that hold resources. The runner
// calls Close once, after the component's inputs are drained (for sources:
// after Run returned), in reverse topological order. ctx bounds the time
// Close may take.
type Closer interface {
	Close(ctx context.Context) error
}

// Sequencer is implemented by sources whose events carry their own Seq,
// such as a Redis stream that several pearld instances read: every
// instance must give an event the same Seq so that a client can resume on
// any of them. The runner keeps the Seq such a source sets (it assigns one
// only where Seq is 0). SeqEpoch names the sequence space; sinks that
// report an epoch to clients use it instead of Env.Epoch.
type Sequencer interface {
	SeqEpoch() int64
}

// Replayer is implemented by components that can return past events of a
// key beyond what a sink keeps in memory (an event log). Replay returns
// the events of key with Seq greater than since, oldest first, at most
// max; ok is false when events after since may be missing from the log
// (it was trimmed), so the caller cannot promise a complete replay.
type Replayer interface {
	Replay(ctx context.Context, key string, since uint64, max int) (events []Event, ok bool, err error)
}

// Rewirer is implemented by components that keep references to upstream
// components found through Env.Upstream. When a reload keeps such a
// component running but replaces components upstream of it, the engine
// calls Rewire with the updated Env before events flow again. Rewire runs
// while the component may be serving requests (a hub's clients stay
// connected), so it must be safe for concurrent use. A component that
// does not implement Rewirer is restarted instead.
type Rewirer interface {
	Rewire(env *Env) error
}

// Flusher is implemented by processors that hold events back, such as a
// batcher. After every Process or Flush call the runner asks NextFlush for
// the time of the next flush (zero: nothing held) and calls Flush then, and
// once more after the processor's inputs are drained. Flush runs on the
// processor's goroutine, never concurrently with Process; what it returns
// goes downstream like Process's output.
type Flusher interface {
	Flush(ctx context.Context) ([]Event, error)
	NextFlush() time.Time
}

// DataTyper is implemented by sources that know which data types they
// emit. Sinks use it (through Env.Upstream) to refuse subscriptions to data
// types nothing produces. A list containing AnyDataType means the source
// may emit any data type (event ingest); a nil list declares nothing.
type DataTyper interface {
	DataTypes() []string
}

// AnyDataType in a DataTyper's list means "any data type".
const AnyDataType = "*"

// StateReader is implemented by components that hold the latest event per
// key, such as the ttl_cache processor. Sinks find it through
// Env.Upstream to answer new subscribers at once. Safe for concurrent use.
type StateReader interface {
	// Latest returns the latest event of key, if one is held.
	Latest(key string) (Event, bool)
	// Keys returns the keys currently held, in no particular order.
	Keys() []string
}

// Factory returns a new component with its defaults set. The returned value
// must be a pointer to a struct whose `toml` tags are the component's
// configuration schema, and must implement Source, Processor or Sink
// according to the kind it is registered as.
type Factory func() any

// Kind is the role a component plays in a pipeline.
type Kind string

// The component kinds, as they appear in pipeline files.
const (
	KindSource    Kind = "sources"
	KindProcessor Kind = "processors"
	KindSink      Kind = "sinks"
)

// Registry maps component type names to factories. The package-level
// registry (RegisterSource etc.) is what pipeline files use; tests may build
// their own.
type Registry struct {
	mu        sync.RWMutex
	factories map[Kind]map[string]Factory
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{factories: map[Kind]map[string]Factory{}}
}

// Register adds a factory. It panics when the name is already registered for
// that kind: registrations happen in init functions, where a duplicate is a
// programming error.
func (r *Registry) Register(kind Kind, name string, f Factory) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.factories[kind]
	if m == nil {
		m = map[string]Factory{}
		r.factories[kind] = m
	}
	if _, dup := m[name]; dup {
		panic(fmt.Sprintf("engine: %s type %q registered twice", kind, name))
	}
	m[name] = f
}

// Lookup returns the factory of a type name.
func (r *Registry) Lookup(kind Kind, name string) (Factory, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	f, ok := r.factories[kind][name]
	return f, ok
}

// Types lists the registered type names of a kind, sorted.
func (r *Registry) Types(kind Kind) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories[kind]))
	for n := range r.factories[kind] {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

var defaultRegistry = NewRegistry()

// DefaultRegistry returns the registry that components add themselves to
// in their init functions.
func DefaultRegistry() *Registry { return defaultRegistry }

// RegisterSource registers a source type in the default registry.
func RegisterSource(name string, f Factory) { defaultRegistry.Register(KindSource, name, f) }

// RegisterProcessor registers a processor type in the default registry.
func RegisterProcessor(name string, f Factory) { defaultRegistry.Register(KindProcessor, name, f) }

// RegisterSink registers a sink type in the default registry.
func RegisterSink(name string, f Factory) { defaultRegistry.Register(KindSink, name, f) }

// Device is a device of a pipeline's [devices] table.
type Device struct {
	// Name is the device id used in keys and events.
	Name string `toml:"-"`
	// Address is a host, host:port, or an http:// or https:// URL.
	Address string `toml:"address"`
	// Username for HTTP Basic auth; default "admin".
	Username string `toml:"username"`
	// Password for HTTP Basic auth; may be empty.
	Password string `toml:"password"`
	// InsecureSkipVerify accepts self-signed HTTPS certificates.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// Timeout bounds one request; default 5s.
	Timeout Duration `toml:"timeout"`
}

// Env is what the engine hands a component in Init: its identity, logger,
// metrics, the pipeline's devices and shared resources, and the HTTP
// listeners it may mount handlers on.
type Env struct {
	// Pipeline is the pipeline's name (its file name without extension).
	Pipeline string
	// Name is the component's name in the pipeline file.
	Name string
	// Type is the component's type name.
	Type string
	// Logger carries pipeline and component attributes.
	Logger *slog.Logger
	// Metrics registers the component's own metrics; pipeline and component
	// labels are added.
	Metrics prometheus.Registerer
	// PipelineMetrics registers metrics of resources shared by the
	// pipeline's components (see Resource); only the pipeline label is
	// added. What is registered here is unregistered when the pipeline stops.
	PipelineMetrics prometheus.Registerer
	// Devices are the pipeline's devices by name.
	Devices map[string]*Device
	// Epoch identifies this engine run; Seq values only grow within it.
	Epoch int64
	// StatusAddr is the address of the engine's status listener (/health,
	// /status, /metrics), "" when there is none. Components may mount
	// operator endpoints there with Handle.
	StatusAddr string
	// PluginsDir is where out-of-process plugins are looked up.
	PluginsDir string

	upstream     []any
	resources    *resources
	http         mounter
	usesDevices  atomic.Bool // the component asked for device resources
	usesUpstream atomic.Bool // the component looked at its upstream components
}

func asMounter(l *Listeners) mounter {
	if l == nil {
		return nil
	}
	return l
}

// stagedMounts holds the mounts of a pipeline being prepared by a reload,
// until the pipeline it replaces has stopped.
type stagedMounts struct {
	list []stagedMount
}

type stagedMount struct {
	addr, pattern, owner string
	h                    http.Handler
}

func (s *stagedMounts) Handle(addr, pattern string, h http.Handler, owner string) error {
	s.list = append(s.list, stagedMount{addr, pattern, owner, h})
	return nil
}

// commit mounts everything staged on l.
func (s *stagedMounts) commit(l *Listeners) error {
	var errs []error
	for _, m := range s.list {
		if err := l.Handle(m.addr, m.pattern, m.h, m.owner); err != nil {
			errs = append(errs, err)
		}
	}
	s.list = nil
	return errors.Join(errs...)
}

// mounter is where Env.Handle mounts: the engine's Listeners, or a staging
// list while a reload prepares a pipeline.
type mounter interface {
	Handle(addr, pattern string, h http.Handler, owner string) error
}

// Upstream returns every component this one receives events from, directly
// or through other components, nearest first.
func (e *Env) Upstream() []any {
	e.usesUpstream.Store(true)
	return e.upstream
}

// Resource returns the pipeline-wide resource stored under key, creating it
// with create on first use. It is how components share one client per
// device. Resources that implement Closer are closed when the pipeline stops.
func (e *Env) Resource(key string, create func() (any, error)) (any, error) {
	e.usesDevices.Store(true)
	return e.resources.get(key, create)
}

// Handle mounts h at pattern on the HTTP server listening on addr. Sinks on
// one address share one server. Nothing is bound until the pipeline starts.
func (e *Env) Handle(addr, pattern string, h http.Handler) error {
	if e.http == nil {
		return fmt.Errorf("mounting %s on %s: no HTTP listeners in this environment", pattern, addr)
	}
	return e.http.Handle(addr, pattern, h, e.Pipeline+"/"+e.Name)
}

// MatchDevices resolves names and glob patterns against the pipeline's
// devices. "*" or an empty list selects all. A pattern that matches nothing
// is an error naming it.
func (e *Env) MatchDevices(patterns []string) ([]*Device, error) {
	e.usesDevices.Store(true)
	names := make([]string, 0, len(e.Devices))
	for n := range e.Devices {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(patterns) == 0 {
		patterns = []string{"*"}
	}
	seen := map[string]bool{}
	var out []*Device
	for _, p := range patterns {
		matched := false
		for _, n := range names {
			ok, err := path.Match(p, n)
			if err != nil {
				return nil, fmt.Errorf("matching devices: bad pattern %q: %w", p, err)
			}
			if ok {
				matched = true
				if !seen[n] {
					seen[n] = true
					out = append(out, e.Devices[n])
				}
			}
		}
		if !matched {
			return nil, fmt.Errorf("matching devices: %q matches no device of the pipeline", p)
		}
	}
	return out, nil
}

type resources struct {
	mu    sync.Mutex
	items map[string]any
	order []string
}

func (r *resources) get(key string, create func() (any, error)) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.items[key]; ok {
		return v, nil
	}
	v, err := create()
	if err != nil {
		return nil, err
	}
	if r.items == nil {
		r.items = map[string]any{}
	}
	r.items[key] = v
	r.order = append(r.order, key)
	return v, nil
}

func (r *resources) close(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.order) - 1; i >= 0; i-- {
		if c, ok := r.items[r.order[i]].(Closer); ok {
			_ = c.Close(ctx)
		}
	}
	r.items, r.order = nil, nil
}

// EnvOptions builds an Env outside a running pipeline, for tests and tools.
type EnvOptions struct {
	Pipeline, Name, Type string
	Logger               *slog.Logger          // nil: discard
	Metrics              prometheus.Registerer // nil: a fresh private registry
	Devices              map[string]*Device
	Epoch                int64
	StatusAddr           string
	PluginsDir           string
	// Upstream lists the components the new one reads from, nearest first.
	Upstream []any
	// Listeners receives Handle calls; nil makes Handle fail.
	Listeners *Listeners
}

// NewEnv returns an Env for a component outside a running pipeline. Its
// shared resources are closed by the returned function.
func NewEnv(o EnvOptions) (*Env, func(context.Context)) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = prometheus.NewRegistry()
	}
	if o.Devices == nil {
		o.Devices = map[string]*Device{}
	}
	r := &resources{}
	return &Env{
		Pipeline: o.Pipeline, Name: o.Name, Type: o.Type,
		Logger: o.Logger, Metrics: o.Metrics, PipelineMetrics: o.Metrics, Devices: o.Devices, Epoch: o.Epoch, StatusAddr: o.StatusAddr, PluginsDir: o.PluginsDir,
		upstream: o.Upstream, resources: r, http: asMounter(o.Listeners),
	}, r.close
}
