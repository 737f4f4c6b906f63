package websocket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

func init() {
	engine.RegisterSink("websocket", func() any { return New() })
}

// Interface guards.
var (
	_ engine.Sink        = (*Hub)(nil)
	_ engine.Initializer = (*Hub)(nil)
	_ engine.Closer      = (*Hub)(nil)
)

// Hub is the `websocket` sink: it serves WebSocket clients and pushes
// every event it is written to the clients subscribed to its key. Its
// exported fields are its configuration; each documents its default.
type Hub struct {
	// Listen is the address the hub's HTTP server listens on. Sinks with
	// the same address share one server. Default ":3446".
	Listen string `toml:"listen"`
	// Paths are the exact URL paths that accept WebSocket upgrades; "/" is
	// the root only. Other requests to them get 426. Default
	// ["/", "/ws", "/ws/realtime"].
	Paths []string `toml:"paths"`

	// Config holds the token settings, keys of the hub's own table:
	// jwt_secret (default: the JWT_SECRET environment variable),
	// algorithms (default ["HS256"]), public_keys, issuer, audience and
	// leeway (default 30s). See auth.Config.
	auth.Config

	// SendQueue is how many frames may wait for one client. A client whose
	// queue is full is too slow: it is closed with 1013 ("Send queue
	// full") and never slows the others. Default 256.
	SendQueue int `toml:"send_queue"`
	// MaxMessageSize is the largest client message, in bytes, that is
	// read; a larger one gets an error frame with code too_large and the
	// connection stays open. Messages over 16 times this, and at least
	// 64 KiB, close the connection with 1009. Default 2048.
	MaxMessageSize int `toml:"max_message_size"`
	// MaxConnectionsPerIP limits concurrent connections from one client
	// address; the next is closed with 1008 "Connection limit exceeded".
	// 0 means no limit. Default 25.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// TrustedProxies are the addresses or CIDR prefixes of reverse proxies
	// whose X-Forwarded-For (or X-Real-IP) header names the client address
	// for MaxConnectionsPerIP. Default none: the peer address is used.
	TrustedProxies []string `toml:"trusted_proxies"`
	// MaxSubscriptions limits the subscriptions of one connection; the
	// next subscribe gets an error frame with code limit. Default 50.
	MaxSubscriptions int `toml:"max_subscriptions"`
	// AllowedOrigins are the Origin header values accepted, as path.Match
	// patterns ("https://*.example.com"), compared case-insensitively; a
	// refused origin gets 403 before the upgrade. Requests without an
	// Origin header (not from a browser) are accepted. Default: any origin.
	AllowedOrigins []string `toml:"allowed_origins"`
	// History is how many events per key are kept for clients that resume
	// with `since`. Default 100.
	History int `toml:"history"`
	// PingInterval is how often the hub pings each client; a client that
	// sends nothing, not even a pong, for two intervals is dropped. Default
	// 25s, under the 60s idle timeout of common reverse proxies.
	PingInterval engine.Duration `toml:"ping_interval"`
	// WriteTimeout bounds each write to a client; a client that cannot
	// take a write in time is dropped. Default 10s.
	WriteTimeout engine.Duration `toml:"write_timeout"`

	log      *slog.Logger
	epoch    int64
	verifier *auth.Verifier
	state    engine.StateReader
	replayer engine.Replayer // upstream event log for resumes; guarded by typesMu, like state
	metrics  *metrics
	upgrader websocket.Upgrader
	proxies  []netip.Prefix
	readBufs sync.Pool // *[]byte of MaxMessageSize+1
	outBufs  sync.Pool // *[]byte output buffers of the writers

	typesMu sync.RWMutex
	types   map[string]bool
	anyType bool // an upstream source does not limit its data types

	// writeMu serialises Write; it guards wakes, the clients whose writers
	// Write wakes when its batch is queued.
	writeMu   sync.Mutex
	wakes     []*client
	wakeEarly int // queued frames past which publish wakes a writer at once

	mu     sync.RWMutex
	topics map[string]*topic

	clientsMu sync.Mutex
	clients   map[*client]struct{}
	perIP     map[string]int
	nextSlot  int  // the pinger slot of the next client
	pinging   bool // the pinger runs (started with the first client)
	closed    bool
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
}

// New returns a hub with its defaults set.
func New() *Hub {
	return &Hub{
		Listen:              ":3446",
		Paths:               []string{"/", "/ws", "/ws/realtime"},
		Config:              auth.DefaultConfig(),
		SendQueue:           256,
		MaxMessageSize:      2048,
		MaxConnectionsPerIP: 25,
		MaxSubscriptions:    50,
		History:             100,
		PingInterval:        engine.Duration(25 * time.Second),
		WriteTimeout:        engine.Duration(10 * time.Second),
	}
}

// Init validates the configuration, builds the token verifier, finds the
// upstream StateReader and data types, and mounts the hub on its paths.
// It touches no network.
func (h *Hub) Init(env *engine.Env) error {
	if err := h.validate(); err != nil {
		return err
	}
	v, err := auth.NewVerifier(h.Config)
	if err != nil {
		return err
	}
	h.verifier = v
	h.log = env.Logger
	if h.epoch, err = upstreamEpoch(env); err != nil {
		return err
	}
	h.types = map[string]bool{}
	h.useUpstream(env)
	h.wakeEarly = max(1, h.SendQueue/2)
	if h.metrics, err = newMetrics(env.Metrics); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	size := h.MaxMessageSize + 1
	h.readBufs.New = func() any { b := make([]byte, size); return &b }
	h.outBufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	h.upgrader = websocket.Upgrader{
		HandshakeTimeout: h.WriteTimeout.D(),
		// Small, as every idle connection holds it: only client messages
		// and control frames pass through it, and a message larger than
		// the buffer is read past it, straight into the hub's buffer.
		ReadBufferSize: 256,
		// gorilla's write buffer is never used (the hub frames its own
		// messages); a pool keeps gorilla from allocating one per client.
		WriteBufferPool: &sync.Pool{},
		// Origins are checked before the upgrade, in ServeHTTP.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	h.topics = map[string]*topic{}
	h.clients = map[*client]struct{}{}
	h.perIP = map[string]int{}
	h.done = make(chan struct{})
	for _, p := range h.Paths {
		pattern := "GET " + p
		if strings.HasSuffix(p, "/") {
			pattern += "{$}"
		}
		if err := env.Handle(h.Listen, pattern, h); err != nil {
			return err
		}
	}
	return nil
}

func (h *Hub) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if h.Listen == "" {
		bad("listen: required")
	}
	if len(h.Paths) == 0 {
		bad("paths: at least one path is required")
	}
	for _, p := range h.Paths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "{} \t") {
			bad("paths: %q is not a plain URL path starting with /", p)
		}
	}
	if h.SendQueue < 1 {
		bad("send_queue: must be at least 1")
	}
	if h.MaxMessageSize < 256 {
		bad("max_message_size: must be at least 256 bytes")
	}
	if h.MaxConnectionsPerIP < 0 {
		bad("max_connections_per_ip: must be 0 (no limit) or more")
	}
	if h.MaxSubscriptions < 1 {
		bad("max_subscriptions: must be at least 1")
	}
	if h.History < 1 {
		bad("history: must be at least 1")
	}
	if h.PingInterval.D() < 100*time.Millisecond {
		bad("ping_interval: must be at least 100ms")
	}
	if h.WriteTimeout <= 0 {
		bad("write_timeout: must be positive")
	}
	for _, o := range h.AllowedOrigins {
		if _, err := path.Match(o, ""); err != nil {
			bad("allowed_origins: bad pattern %q", o)
		}
	}
	h.proxies = h.proxies[:0]
	for _, s := range h.TrustedProxies {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				bad("trusted_proxies: %q is neither an address nor a CIDR prefix", s)
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		h.proxies = append(h.proxies, p.Masked())
	}
	return errors.Join(errs...)
}

// hardLimit is the message size past which reading stops and the
// connection is closed with 1009.
func (h *Hub) hardLimit() int { return max(16*h.MaxMessageSize, 64<<10) }

// pongWait is how long a client may stay silent.
func (h *Hub) pongWait() time.Duration { return 2 * h.PingInterval.D() }

// Write queues each event, encoded once, to the clients subscribed to its
// key, and records it for resume. Each client's writer is woken once, when
// the whole batch is queued, so that a client that keeps up gets the batch
// in one network write (writes of more than 64 KiB are split), and a
// client that asked for batch frames gets it as one `batch` frame; only a
// client that gets more than half its send_queue from one batch is woken
// before the end. Write never waits for a client. An event whose Data is
// not valid JSON, or whose device or channel id holds ':' (its key would
// be another's, see checkKeyParts), is skipped and reported in the error.
func (h *Hub) Write(_ context.Context, batch []engine.Event) error {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	defer h.wakeWriters()
	var errs []error
	for i := range batch {
		e := &batch[i]
		if len(e.Data) > 0 && !json.Valid(e.Data) {
			errs = append(errs, fmt.Errorf("writing event %s seq %d: data is not valid JSON", e.Key(), e.Seq))
			continue
		}
		if e.Type == "" || e.Device == "" {
			errs = append(errs, fmt.Errorf("writing event seq %d: missing type or device", e.Seq))
			continue
		}
		if err := checkKeyParts(e.Device, e.Channel); err != nil {
			errs = append(errs, fmt.Errorf("writing event %s seq %d: %w", e.Key(), e.Seq, err))
			continue
		}
		k := subKey{KeyParts: engine.KeyParts{Type: e.Type, Device: e.Device, Channel: e.Channel, Publisher: e.Publisher}, key: e.Key()}
		h.addType(e.Type)
		h.publish(&k, e, eventFrame(typeDataUpdate, k.key, e, false))
	}
	return errors.Join(errs...)
}

// Close closes every client with 1001 "Server shutting down", after the
// frames already queued to it, and waits for the connections to end
// within ctx; past it, the remaining connections are dropped.
func (h *Hub) Close(ctx context.Context) error {
	if h.done == nil {
		return nil // never initialised
	}
	h.clientsMu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	clients := make([]*client, 0, len(h.clients))
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.clientsMu.Unlock()
	for _, c := range clients {
		c.close(websocket.CloseGoingAway, reasonShutdown)
	}

	finished := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
	}
	h.clientsMu.Lock()
	for c := range h.clients {
		_ = c.nc.Close()
	}
	h.clientsMu.Unlock()
	<-finished
	return fmt.Errorf("closing websocket clients: %w", ctx.Err())
}
