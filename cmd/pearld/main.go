// Command pearld runs declarative pipelines that turn fleets of Epiphan
// Pearl encoders into live dashboards.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pearld/pearld/engine"

	// Components register themselves in the engine's registry.
	_ "github.com/pearld/pearld/engine/processors"
	_ "github.com/pearld/pearld/plugins"
	_ "github.com/pearld/pearld/sinks/redisstream"
	_ "github.com/pearld/pearld/sinks/restapi"
	_ "github.com/pearld/pearld/sinks/websocket"
	_ "github.com/pearld/pearld/sources/pearl"
	_ "github.com/pearld/pearld/sources/redisstream"
	_ "github.com/pearld/pearld/sources/webhook"
)

const usage = `pearld turns fleets of Epiphan Pearl encoders into live dashboards.

Usage:
  pearld run [--config PATH] [--status-addr ADDR]   run the pipelines of a file or directory (SIGHUP reloads)
  pearld validate PATH...                           check pipeline files; non-zero exit on any error
  pearld demo [--devices N] [--sim-port PORT]       a simulated fleet with pipelines/demo.toml
  pearld token --secret S --sub NAME [--perm P]...  mint a JWT for clients
  pearld plugins [--plugins-dir DIR] [--json]       list plugins, their data types and options
  pearld version                                    print the version

Run 'pearld COMMAND -h' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(rest, stdout, stderr)
	case "validate":
		err = cmdValidate(rest, stdout, stderr)
	case "demo":
		err = cmdDemo(rest, stdout, stderr)
	case "token":
		err = cmdToken(rest, stdout, stderr)
	case "plugins":
		err = cmdPlugins(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "pearld %s\n", engine.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "pearld: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "pearld %s: %v\n", cmd, err)
		return 1
	}
}

var errUsage = errors.New("usage")

// logFlags are the logging flags shared by the commands that run pipelines.
type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("parsing --log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, not %q", l.format)
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pearld "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

func cmdRun(args []string, _, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	config := fs.String("config", "pipelines/", "pipeline file or directory of *.toml files")
	statusAddr := fs.String("status-addr", defaultStatusAddr(), "address of /health, /status, /metrics and /webhook/event (default from REALTIME_STATUS_PORT)")
	grace := fs.Duration("shutdown-timeout", 15*time.Second, "how long a shutdown may take")
	pluginsDir := fs.String("plugins-dir", "bin/plugins", "directory of plugin binaries")
	watch := fs.Duration("watch", 0, "also reload when pipeline files change, checking at this period (e.g. 2s); SIGHUP always reloads")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	e := engine.New(engine.Options{Logger: log, StatusAddr: *statusAddr, PluginsDir: *pluginsDir, IsAdmin: statusAdmin()})
	return serve(e, log, runOptions{
		files:      func() ([]string, error) { return engine.PipelineFiles(*config) },
		grace:      *grace,
		watch:      *watch,
		statusAddr: *statusAddr,
	})
}

// runOptions say how serve runs the engine.
type runOptions struct {
	// files lists the pipeline files; called at start and on every reload,
	// so files added to a directory are picked up.
	files func() ([]string, error)
	// grace bounds a shutdown.
	grace time.Duration
	// watch, when positive, reloads when the files change, checked at that
	// period; SIGHUP always reloads.
	watch time.Duration
	// ready, when set, runs once the pipelines are up.
	ready func()
	// statusAddr, when set, is where the dashboard is served.
	statusAddr string
}

// serve starts the engine, reloads on SIGHUP (and file changes when
// watching), and blocks until SIGINT or SIGTERM, then stops it within the
// grace period.
func serve(e *engine.Engine, log *slog.Logger, o runOptions) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	files, err := o.files()
	if err != nil {
		return err
	}
	if err := e.Start(files); err != nil {
		if len(e.Status(false).Pipelines) == 0 {
			return err
		}
		// Some files are broken: report each, keep the others running.
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("pipeline not started", "err", line)
		}
	}
	if o.statusAddr != "" {
		if err := mountDashboard(e, o.statusAddr); err != nil {
			log.Error("serving the dashboard", "err", err)
		}
	}
	if o.ready != nil {
		o.ready()
	}
	var tick <-chan time.Time
	var seen string
	if o.watch > 0 {
		t := time.NewTicker(o.watch)
		defer t.Stop()
		tick = t.C
		seen = filesState(files)
	}
	reload := func(why string) {
		files, err := o.files()
		if err == nil {
			seen = filesState(files)
			err = e.Reload(files)
		}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				log.Error("reload: kept the running version", "trigger", why, "err", line)
			}
			return
		}
		log.Info("reloaded pipelines", "trigger", why, "files", len(files))
	}
	for running := true; running; {
		select {
		case <-hup:
			reload("SIGHUP")
		case <-tick:
			if files, err := o.files(); err == nil && filesState(files) != seen {
				reload("file change")
			}
		case <-ctx.Done():
			running = false
		}
	}
	log.Info("shutting down", "timeout", o.grace)
	sctx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := e.Stop(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	log.Info("stopped")
	return nil
}

// filesState summarises the names, sizes and modification times of files,
// to notice a change.
func filesState(files []string) string {
	var b strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return b.String()
}

// defaultStatusAddr is ":3447", or the port of REALTIME_STATUS_PORT, the
// variable the replaced system used.
func defaultStatusAddr() string {
	if p := os.Getenv("REALTIME_STATUS_PORT"); p != "" {
		return ":" + p
	}
	return ":3447"
}

func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", stderr)
	statusAddr := fs.String("status-addr", defaultStatusAddr(), "address of the status listener the pipelines would run with")
	pluginsDir := fs.String("plugins-dir", "bin/plugins", "directory of plugin binaries")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "pearld validate: name at least one pipeline file or directory")
		return errUsage
	}
	var files []string
	for _, a := range fs.Args() {
		fl, err := engine.PipelineFiles(a)
		if err != nil {
			return err
		}
		files = append(files, fl...)
	}
	e := engine.New(engine.Options{StatusAddr: *statusAddr, PluginsDir: *pluginsDir})
	if err := e.Validate(files); err != nil {
		n := strings.Count(err.Error(), "\n") + 1
		fmt.Fprintln(stderr, err)
		return fmt.Errorf("%d error(s) in %d file(s)", n, len(files))
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "%s: ok\n", f)
	}
	return nil
}
