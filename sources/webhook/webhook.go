package webhook

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"
)

func init() {
	engine.RegisterSource("webhook", func() any { return New() })
}

// Interface guards.
var (
	_ engine.Source      = (*Source)(nil)
	_ engine.Initializer = (*Source)(nil)
	_ engine.Closer      = (*Source)(nil)
	_ engine.DataTyper   = (*Source)(nil)
)

// Defaults.
const (
	DefaultPath      = "/webhook/event"
	DefaultMaxBody   = 64 << 10
	DefaultMaxEvents = 100
	DefaultTimeout   = 5 * time.Second
)

// ServiceKeyHeader is the request header that carries a service key.
const ServiceKeyHeader = "X-Service-Key"

// minServiceKey is the shortest service key accepted: 128 bits of
// printable text, enough that guessing one is hopeless.
const minServiceKey = 16

// anyDataType is what DataTypes returns when data_types is not set: the
// convention, documented in the websocket sink, for "any data type".
const anyDataType = engine.AnyDataType

var (
	idPattern       = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)
	dataTypePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// Source is the `webhook` source: it accepts events that other services
// POST, authenticated by a service key or an admin token, and emits them
// into the pipeline. Its exported fields are its configuration; each
// documents its default.
type Source struct {
	// Listen is the address the endpoint is served on. Default: the
	// engine's status listener (--status-addr), next to /health and
	// /metrics; without one, listen is required.
	Listen string `toml:"listen"`
	// Path is the URL path of the endpoint. Default "/webhook/event".
	Path string `toml:"path"`

	// ServiceKeys are the keys accepted in the X-Service-Key header, each
	// at least 16 bytes (generate one with `openssl rand -base64 32`). A
	// request that carries the header is judged by it alone. Default none.
	ServiceKeys []string `toml:"service_keys"`

	// Config holds the token settings, the same keys as the hub's:
	// jwt_secret (default: the JWT_SECRET environment variable),
	// algorithms (default ["HS256"]), public_keys, issuer, audience and
	// leeway (default 30s). See auth.Config. Tokens are accepted when a
	// secret or public_keys is configured, and must grant `admin`.
	auth.Config

	// Types (data_types) limits the data types accepted; events of other
	// types are refused with 400. Default: any data type.
	Types []string `toml:"data_types"`
	// MaxBody is the largest request body, in bytes; a larger one is
	// refused with 413. Default 65536.
	MaxBody int `toml:"max_body"`
	// MaxEvents is how many events one request may carry as a JSON array;
	// more are refused with 413. Default 100.
	MaxEvents int `toml:"max_events"`
	// Timeout bounds reading a request's body, and then waiting for the
	// pipeline to take its events while it applies back-pressure; past it
	// the answer is 503 and nothing of the request was emitted. Default 5s.
	Timeout engine.Duration `toml:"timeout"`

	log        *slog.Logger
	verifier   *auth.Verifier // nil when tokens are not accepted
	keyDigests [][sha256.Size]byte
	types      map[string]bool // nil: any
	metrics    *metrics
	handoff    chan []engine.Event // Run takes a request's events from it
	closed     chan struct{}       // closed by Close
	closeOnce  sync.Once
}

// New returns a webhook source with its defaults set.
func New() *Source {
	return &Source{
		Path:      DefaultPath,
		Config:    auth.DefaultConfig(),
		MaxBody:   DefaultMaxBody,
		MaxEvents: DefaultMaxEvents,
		Timeout:   engine.Duration(DefaultTimeout),
	}
}

// Init validates the configuration, builds the token verifier and mounts
// the endpoint. It refuses a configuration that would leave the endpoint
// open: without service keys, tokens must be configured. It touches no
// network.
func (s *Source) Init(env *engine.Env) error {
	addr := s.Listen
	if addr == "" {
		addr = env.StatusAddr
	}
	if err := s.validate(addr); err != nil {
		return err
	}
	if s.tokensConfigured() {
		v, err := auth.NewVerifier(s.Config)
		if err != nil {
			return err
		}
		s.verifier = v
	} else if len(s.ServiceKeys) == 0 {
		return fmt.Errorf("no authentication configured: set service_keys, or jwt_secret (or the %s environment variable) or public_keys for admin tokens; the endpoint is never open", auth.SecretEnv)
	}
	s.keyDigests = make([][sha256.Size]byte, len(s.ServiceKeys))
	for i, k := range s.ServiceKeys {
		s.keyDigests[i] = sha256.Sum256([]byte(k))
	}
	if len(s.Types) > 0 {
		s.types = make(map[string]bool, len(s.Types))
		for _, t := range s.Types {
			s.types[t] = true
		}
	}
	var err error
	if s.metrics, err = newMetrics(env.Metrics); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	s.log = env.Logger
	s.handoff = make(chan []engine.Event)
	s.closed = make(chan struct{})
	pattern := s.Path
	if strings.HasSuffix(pattern, "/") {
		pattern += "{$}"
	}
	return env.Handle(addr, pattern, s)
}

func (s *Source) validate(addr string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if addr == "" {
		bad("listen: required when pearld runs without a status listener")
	}
	if !strings.HasPrefix(s.Path, "/") || strings.ContainsAny(s.Path, "{} \t") {
		bad("path: %q is not a plain URL path starting with /", s.Path)
	}
	for i, k := range s.ServiceKeys {
		switch {
		case strings.TrimSpace(k) != k:
			bad("service_keys[%d]: has leading or trailing white space", i)
		case len(k) < minServiceKey:
			bad("service_keys[%d]: %d bytes, at least %d needed; generate one with `openssl rand -base64 32`", i, len(k), minServiceKey)
		}
	}
	for _, t := range s.Types {
		if !dataTypePattern.MatchString(t) {
			bad("data_types: %q is not a data type: use 1-64 of A-Z a-z 0-9 . _ -", t)
		}
	}
	if s.MaxBody < 256 {
		bad("max_body: must be at least 256 bytes")
	}
	if s.MaxEvents < 1 {
		bad("max_events: must be at least 1")
	}
	if s.Timeout <= 0 {
		bad("timeout: must be positive")
	}
	return errors.Join(errs...)
}

// tokensConfigured reports whether a key to verify tokens with is
// configured: a secret, in the file or the environment, or public keys.
func (s *Source) tokensConfigured() bool {
	return s.JWTSecret != "" || len(s.PublicKeys) > 0 || os.Getenv(auth.SecretEnv) != ""
}

// DataTypes returns the configured data_types, or ["*"] (any data type)
// when none are configured.
func (s *Source) DataTypes() []string {
	if len(s.Types) == 0 {
		return []string{anyDataType}
	}
	return slices.Clone(s.Types)
}

// Run emits the events of accepted requests, one request after the other,
// until ctx is cancelled. While emit waits for room downstream, requests
// wait for Run (at most the timeout); that is how back-pressure reaches
// the services posting events.
func (s *Source) Run(ctx context.Context, emit func(engine.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case events := <-s.handoff:
			for _, e := range events {
				if ctx.Err() != nil {
					// Stopping: emit would drop them anyway.
					return nil
				}
				emit(e)
			}
		}
	}
}

// Close makes requests that arrive from now on fail at once with 503
// instead of waiting for a Run that will not come.
func (s *Source) Close(context.Context) error {
	if s.closed != nil {
		s.closeOnce.Do(func() { close(s.closed) })
	}
	return nil
}

// errStopped and errBusy are why a request's events were not taken.
var (
	errStopped = errors.New("the pipeline is stopping")
	errBusy    = errors.New("the pipeline is busy")
)

// submit hands events to Run, waiting at most until ctx ends.
func (s *Source) submit(ctx context.Context, events []engine.Event) error {
	select {
	case <-s.closed:
		return errStopped
	default:
	}
	select {
	case s.handoff <- events:
		return nil
	case <-s.closed:
		return errStopped
	case <-ctx.Done():
		return errBusy
	}
}
