package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Listeners is the set of HTTP servers components mount handlers on, one
// server per listen address. Handlers can be added and removed while the
// servers run (a pipeline that is stopped takes its handlers with it).
type Listeners struct {
	log *slog.Logger

	mu      sync.Mutex
	servers map[string]*listener
}

type route struct {
	handler http.Handler
	owner   string
}

type listener struct {
	addr   string
	routes map[string]route
	mux    atomic.Pointer[http.ServeMux]
	srv    *http.Server
	bound  net.Addr
}

// NewListeners returns an empty set of servers.
func NewListeners(log *slog.Logger) *Listeners {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listeners{log: log, servers: map[string]*listener{}}
}

// Handle mounts h at pattern (http.ServeMux syntax) on the server for addr.
// owner names who mounted it, for error messages and RemoveOwner. Mounting
// a pattern another owner holds is an error.
func (l *Listeners) Handle(addr, pattern string, h http.Handler, owner string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.servers[addr]
	if s == nil {
		s = &listener{addr: addr, routes: map[string]route{}}
		l.servers[addr] = s
	}
	if r, ok := s.routes[pattern]; ok && r.owner != owner {
		return fmt.Errorf("mounting %s on %s: already served by %s", pattern, addr, r.owner)
	}
	s.routes[pattern] = route{handler: h, owner: owner}
	if err := s.rebuild(); err != nil {
		delete(s.routes, pattern)
		_ = s.rebuild()
		return fmt.Errorf("mounting %s on %s: %w", pattern, addr, err)
	}
	return nil
}

// RemoveOwner removes every handler that owner mounted, on every address.
func (l *Listeners) RemoveOwner(owner string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.servers {
		changed := false
		for p, r := range s.routes {
			if r.owner == owner {
				delete(s.routes, p)
				changed = true
			}
		}
		if changed {
			_ = s.rebuild()
		}
	}
}

func (s *listener) rebuild() (err error) {
	mux := http.NewServeMux()
	patterns := make([]string, 0, len(s.routes))
	for p := range s.routes {
		patterns = append(patterns, p)
	}
	sort.Strings(patterns)
	defer func() {
		// ServeMux panics on conflicting patterns; report it as an error.
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	for _, p := range patterns {
		mux.Handle(p, s.routes[p].handler)
	}
	s.mux.Store(mux)
	return nil
}

func (s *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.Load().ServeHTTP(w, r)
}

// Start binds every address that has handlers and is not yet bound.
func (l *Listeners) Start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for addr, s := range l.servers {
		if s.srv != nil || len(s.routes) == 0 {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		s.bound = ln.Addr()
		s.srv = &http.Server{
			Handler:           s,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		}
		l.log.Info("listening", "addr", ln.Addr().String())
		go func(srv *http.Server) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				l.log.Error("serving http", "addr", addr, "err", err)
			}
		}(s.srv)
	}
	return nil
}

// Addr returns the bound address of the server configured for addr, or nil
// before Start. With port 0 in addr it tells the port actually chosen.
func (l *Listeners) Addr(addr string) net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.servers[addr]; s != nil {
		return s.bound
	}
	return nil
}

// Shutdown stops every server: listeners close at once, active requests
// get until ctx is done. Hijacked connections (WebSockets) are the
// business of the components that hijacked them.
func (l *Listeners) Shutdown(ctx context.Context) {
	l.mu.Lock()
	srvs := make([]*http.Server, 0, len(l.servers))
	for _, s := range l.servers {
		if s.srv != nil {
			srvs = append(srvs, s.srv)
			s.srv = nil
			s.bound = nil
		}
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		}()
	}
	wg.Wait()
}
