package restapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
	"github.com/pearld/pearld/sources/pearl"
)

func init() {
	engine.RegisterSink("rest_events", func() any { return New() })
}

// Interface guards.
var (
	_ engine.Sink        = (*API)(nil)
	_ engine.Initializer = (*API)(nil)
	_ engine.Closer      = (*API)(nil)
	_ engine.Rewirer     = (*API)(nil)
)

// Limits of the configuration.
const (
	maxMaxEvents = 1_000_000
	// maxLimit is the largest `limit` of GET /api/realtime/events.
	maxLimit     = 100
	defaultLimit = 50
)

// TypePublisherStatus is the data type the latest-state route serves.
const TypePublisherStatus = pearl.TypePublisherStatus

// API is the `rest_events` sink: it keeps the events it is written in a
// bounded store and serves them, the latest publisher state and publisher
// control over the REST routes of PROTOCOL.md. Its exported fields are its
// configuration; each documents its default.
type API struct {
	// Listen is the address the REST API's HTTP server listens on. Sinks
	// with the same address share one server, so with the hub's address
	// the REST routes and the WebSocket paths are served together. Default
	// ":3446".
	Listen string `toml:"listen"`

	// Config holds the token verification keys, the same as the hub's:
	// jwt_secret (default: the JWT_SECRET environment variable),
	// algorithms (default ["HS256"]), public_keys (default none), issuer
	// and audience (default unchecked) and leeway (default 30s). See
	// auth.Config for each.
	auth.Config

	// MaxEvents is how many events the store holds; beyond it the oldest
	// is evicted. At most 1000000. Default 1000.
	MaxEvents int `toml:"max_events"`
	// TTL is how long an event stays in the store after it was written;
	// expired events are no longer shown and are removed by the next
	// write or by POST /api/realtime/cleanup. Default 300s.
	TTL engine.Duration `toml:"ttl"`
	// ControlTimeout bounds a control call to a device, including the
	// wait for one of the device's request slots (the pollers share them).
	// Past it the call answers 504. Default 10s.
	ControlTimeout engine.Duration `toml:"control_timeout"`
	// AllowedOrigins are the Origin header values browsers may call the
	// API from, as path.Match patterns ("https://*.example.com"), compared
	// case-insensitively; "*" allows any. A request from another origin
	// gets 403 before anything else happens. Requests without an Origin
	// header (not from a browser) are always served. Listed origins may
	// send credentials (cookies: axios withCredentials); with any origin
	// allowed, answers carry `Access-Control-Allow-Origin: *` and no
	// credentials are allowed. Default: any origin, like the hub: tokens
	// travel in headers or the query, never in cookies, so a page from
	// another origin can do nothing without its user's token.
	AllowedOrigins []string `toml:"allowed_origins"`

	log      *slog.Logger
	verifier *auth.Verifier
	metrics  *metrics
	store    *store
	devices  map[string]*engine.Device
	clients  map[string]*pearl.Client
	now      func() time.Time
	// anyOrigin: AllowedOrigins is empty or holds "*".
	anyOrigin bool

	// upstream, when set, is the pipeline's cache of latest state; the
	// state route reads it. Otherwise the sink keeps latest itself.
	upstream engine.StateReader
	stateMu  sync.RWMutex
	latest   map[string]engine.Event // publisher_status key -> newest event

	closing context.Context // cancelled by Close
	cancel  context.CancelFunc
}

// New returns a rest_events sink with its defaults set.
func New() *API {
	return &API{
		Listen:         ":3446",
		Config:         auth.DefaultConfig(),
		MaxEvents:      1000,
		TTL:            engine.Duration(300 * time.Second),
		ControlTimeout: engine.Duration(10 * time.Second),
		now:            time.Now,
	}
}

// Init validates the configuration, builds the token verifier and the
// clients of the pipeline's devices, finds the upstream state cache and
// mounts the routes on Listen. It touches no network.
func (a *API) Init(env *engine.Env) error {
	if err := a.validate(); err != nil {
		return err
	}
	v, err := auth.NewVerifier(a.Config)
	if err != nil {
		return err
	}
	a.verifier = v
	a.log = env.Logger
	a.anyOrigin = len(a.AllowedOrigins) == 0 || slices.Contains(a.AllowedOrigins, "*")
	if a.metrics, err = newMetrics(env.Metrics); err != nil {
		return err
	}
	a.store = newStore(a.MaxEvents, a.TTL.D())
	a.devices = env.Devices
	a.clients = make(map[string]*pearl.Client, len(env.Devices))
	for name, d := range env.Devices {
		c, err := pearl.ClientFor(env, d)
		if err != nil {
			return err
		}
		a.clients[name] = c
	}
	a.useUpstream(env)
	a.closing, a.cancel = context.WithCancel(context.Background())
	for _, rt := range a.routes() {
		if err := env.Handle(a.Listen, rt.pattern, rt); err != nil {
			return err
		}
	}
	return nil
}

func (a *API) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if a.Listen == "" {
		bad("listen: required")
	}
	if a.MaxEvents < 1 || a.MaxEvents > maxMaxEvents {
		bad("max_events: must be from 1 to %d, not %d", maxMaxEvents, a.MaxEvents)
	}
	if a.TTL <= 0 {
		bad("ttl: must be positive, not %s", a.TTL)
	}
	if a.ControlTimeout <= 0 {
		bad("control_timeout: must be positive, not %s", a.ControlTimeout)
	}
	for _, o := range a.AllowedOrigins {
		if _, err := path.Match(o, ""); err != nil {
			bad("allowed_origins: bad pattern %q", o)
		}
	}
	return errors.Join(errs...)
}

// eventJSON is an event as GET /api/realtime/events shows it.
type eventJSON struct {
	Type        string          `json:"type"`
	Device      string          `json:"device"`
	Channel     *string         `json:"channel"`      // null for device-level data
	PublisherID *string         `json:"publisher_id"` // null unless per publisher
	Data        json.RawMessage `json:"data"`
	Timestamp   string          `json:"timestamp"`
	// ChangeHash is Event.Hash as 16 hex digits: a uint64 does not fit a
	// JavaScript number.
	ChangeHash string `json:"changeHash"`
	Seq        uint64 `json:"seq"`
}

// Write stores each event, encoded once, and keeps the latest publisher
// state when no upstream cache does. It never blocks on HTTP clients. An
// event without type or device, or whose Data is not valid JSON, is
// skipped and reported in the error.
func (a *API) Write(_ context.Context, batch []engine.Event) error {
	var errs []error
	entries := make([]entry, 0, len(batch))
	for i := range batch {
		e := &batch[i]
		if e.Type == "" || e.Device == "" {
			errs = append(errs, fmt.Errorf("writing event seq %d: missing type or device", e.Seq))
			continue
		}
		var data json.RawMessage // empty Data is shown as null
		if len(e.Data) > 0 {
			data = e.Data
		}
		js, err := json.Marshal(eventJSON{
			Type: e.Type, Device: e.Device, Channel: optString(e.Channel), PublisherID: optString(e.Publisher),
			Data: data, Timestamp: isoTime(e.Time), ChangeHash: fmt.Sprintf("%016x", e.Hash), Seq: e.Seq,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("writing event %s seq %d: data is not valid JSON", e.Key(), e.Seq))
			continue
		}
		entries = append(entries, entry{seq: e.Seq, typ: e.Type, device: e.Device, channel: e.Channel, json: js})
		a.keepLatest(e)
	}
	evicted, expired := a.store.add(entries, a.now())
	a.metrics.evicted.Add(float64(evicted))
	a.metrics.expired.Add(float64(expired))
	a.metrics.stored.Set(float64(a.store.held()))
	return errors.Join(errs...)
}

// keepLatest remembers e as the latest state of its key when the sink
// keeps state itself: publisher_status of the pipeline's devices only, so
// that the map stays as small as devices times channels.
func (a *API) keepLatest(e *engine.Event) {
	if e.Type != TypePublisherStatus || a.devices[e.Device] == nil || len(e.Data) == 0 {
		return
	}
	k := e.Key()
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if a.latest == nil {
		return
	}
	if old, ok := a.latest[k]; !ok || old.Seq <= e.Seq {
		a.latest[k] = *e
	}
}

// latestState returns the latest event of key: from the upstream cache
// when the pipeline has one, from the sink's own memory otherwise.
func (a *API) latestState(key string) (engine.Event, bool) {
	a.stateMu.RLock()
	up := a.upstream
	e, ok := a.latest[key]
	a.stateMu.RUnlock()
	if up != nil {
		return up.Latest(key)
	}
	return e, ok
}

// useUpstream reads latest state from the first upstream cache, or keeps
// it itself when there is none.
func (a *API) useUpstream(env *engine.Env) {
	var up engine.StateReader
	for _, u := range env.Upstream() {
		if r, ok := u.(engine.StateReader); ok {
			up = r
			break
		}
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	a.upstream = up
	if up == nil && a.latest == nil {
		a.latest = map[string]engine.Event{}
	}
}

// Rewire follows a reload that replaced components upstream of the sink:
// latest state is read from the new cache. Stored events are kept.
func (a *API) Rewire(env *engine.Env) error {
	a.useUpstream(env)
	return nil
}

// Close cancels the control calls in flight, which then answer 503, so
// that a device that does not answer cannot hold up a shutdown. Reads keep
// working until the engine removes the routes.
func (a *API) Close(context.Context) error {
	if a.cancel != nil {
		a.cancel()
	}
	return nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// isoLayout is how answers write times, like JavaScript's
// Date.toISOString: "2026-11-25T20:31:12.345Z".
const isoLayout = "2006-01-02T15:04:05.000Z07:00"

func isoTime(t time.Time) string { return t.UTC().Format(isoLayout) }

// parseUint parses a query parameter that must be a non-negative integer.
func parseUint(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}
