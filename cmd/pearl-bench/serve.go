package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/engine/auth"

	// The components pearld registers, so that `serve` runs the same
	// pipelines as `pearld run`.
	_ "github.com/pearld/pearld/engine/processors"
	_ "github.com/pearld/pearld/plugins"
	_ "github.com/pearld/pearld/sinks/restapi"
	_ "github.com/pearld/pearld/sinks/websocket"
	_ "github.com/pearld/pearld/sources/pearl"
	_ "github.com/pearld/pearld/sources/webhook"
)

// cmdServe is `pearl-bench serve`: the engine of `pearld run`, in this
// binary, with /debug/pprof/ on the status listener for callers with an
// admin token signed with JWT_SECRET. The bench runs it instead of pearld
// with -self, to profile the server under load. It takes the flags of
// `pearld run` that the bench passes.
func cmdServe(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("pearl-bench serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "pipeline file or directory")
	statusAddr := fs.String("status-addr", "127.0.0.1:3447", "status listener, with /debug/pprof/")
	level := fs.String("log-level", "warn", "log level")
	pluginsDir := fs.String("plugins-dir", "bin/plugins", "directory of plugin binaries")
	grace := fs.Duration("shutdown-timeout", 5*time.Second, "how long a shutdown may take")
	_ = fs.Bool("pprof", true, "serve /debug/pprof/ (always on in serve; accepted for the flags of pearld run)")
	memRate := fs.Int("memprofilerate", 0, "runtime.MemProfileRate, for exact heap profiles (0: the default); also from PEARL_BENCH_MEMPROFILERATE")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if v, err := strconv.Atoi(os.Getenv("PEARL_BENCH_MEMPROFILERATE")); err == nil && *memRate == 0 {
		*memRate = v
	}
	if *memRate > 0 {
		runtime.MemProfileRate = *memRate
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("parsing -log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	files, err := engine.PipelineFiles(*config)
	if err != nil {
		return err
	}
	secret := os.Getenv("JWT_SECRET")
	if secret == "" {
		return errors.New("serve: JWT_SECRET must be set: /debug/pprof/ needs an admin token")
	}
	e := engine.New(engine.Options{Logger: log, StatusAddr: *statusAddr, PluginsDir: *pluginsDir})
	guard, err := adminOnly(secret, pprofMux())
	if err != nil {
		return err
	}
	if err := e.Listeners().Handle(*statusAddr, "/debug/pprof/", guard, "pprof"); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := e.Start(files); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	return e.Stop(sctx)
}

// pprofMux serves net/http/pprof under /debug/pprof/.
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// adminOnly lets through requests with an admin token signed with secret.
func adminOnly(secret string, next http.Handler) (http.Handler, error) {
	v, err := auth.NewVerifier(auth.Config{JWTSecret: secret, Algorithms: []string{auth.HS256}})
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Authenticate(r)
		if err != nil || !c.IsAdmin() {
			http.Error(w, "admin token required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	}), nil
}
