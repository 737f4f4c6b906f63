package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `pearl-bench measures pearld: fan-out, memory, connects, polling, latency.

Usage:
  pearl-bench fanout  [flags]   N clients on one key, M events through the webhook
  pearl-bench idle    [flags]   memory per idle connection at 1k and 10k connections
  pearl-bench connect [flags]   connect+subscribe rate, then a reconnect storm
  pearl-bench poll    [flags]   K simulated devices: server CPU, requests per device
  pearl-bench e2e     [flags]   device change and control command to client receipt
  pearl-bench cluster [flags]   1, 2, 3 hub instances on one Redis: deliveries/s
  pearl-bench all     [flags]   a short run of each (make bench)
  pearl-bench serve   [flags]   the engine of 'pearld run' with /debug/pprof/ (used by -self)

Run 'pearl-bench SCENARIO -h' for the flags of a scenario.
`

// pinnedEnv marks a bench process that already runs under taskset.
const pinnedEnv = "PEARL_BENCH_PINNED"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	if cmd == "serve" {
		if err := cmdServe(args, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "pearl-bench serve:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cmd, args, os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "pearl-bench %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// common are the flags every scenario takes.
type common struct {
	pearld     string
	self       bool
	pin        int
	clientCPU  int
	out        string
	profileDir string
	profileFor time.Duration
	verbose    bool
	timeout    time.Duration
	quiet      float64
	serverEnv  stringList
	quietWait  time.Duration

	stdout, stderr io.Writer
	command        string
	tmp            string // temporary directory of the run (the built pearld)
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.pearld, "pearld", "", "pearld binary to run (default: go build ./cmd/pearld into a temporary directory)")
	fs.BoolVar(&c.self, "self", false, "run the server as 'pearl-bench serve' (same engine, with /debug/pprof/) instead of pearld")
	fs.IntVar(&c.pin, "pin", -1, "CPU to pin the server to with taskset; the bench moves itself to another CPU (-1: no pinning)")
	fs.IntVar(&c.clientCPU, "client-cpu", -1, "CPU of the bench with -pin (default: the first other CPU)")
	fs.StringVar(&c.out, "out", "", "append each result as a JSON line to this file")
	fs.StringVar(&c.profileDir, "profile", "", "write server CPU and heap profiles of the measured phase to this directory; runs the server with --pprof (pearld needs that flag; -self has it)")
	fs.DurationVar(&c.profileFor, "profile-seconds", 10*time.Second, "length of the CPU profile with -profile")
	fs.BoolVar(&c.verbose, "v", false, "show the server's log")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on the whole scenario")
	fs.Var(&c.serverEnv, "server-env", "NAME=VALUE for the server's environment, repeatable (e.g. GOGC=50, GODEBUG=...)")
	fs.Float64Var(&c.quiet, "quiet", 0, "before each measurement, wait until other processes use less than this percent of a CPU (0: do not wait); for shared machines")
	fs.DurationVar(&c.quietWait, "quiet-wait", 3*time.Minute, "with -quiet, the longest wait; then measure anyway")
}

// serverOptions returns how to run the server.
func (c *common) serverOptions(ctx context.Context) (serverOptions, error) {
	o := serverOptions{Binary: c.pearld, Self: c.self, Pin: c.pin, Verbose: c.verbose, Env: c.serverEnv, Pprof: c.profileDir != ""}
	if !c.self && o.Binary == "" {
		if c.tmp == "" {
			dir, err := os.MkdirTemp("", "pearl-bench-build-")
			if err != nil {
				return o, err
			}
			c.tmp = dir
		}
		p := filepath.Join(c.tmp, "pearld")
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintln(c.stderr, "building pearld ...")
			if p, err = buildPearld(ctx, c.tmp); err != nil {
				return o, err
			}
		}
		o.Binary = p
		c.pearld = p
	}
	return o, nil
}

func (c *common) cleanup() {
	if c.tmp != "" {
		_ = os.RemoveAll(c.tmp)
	}
}

// Result is what every scenario prints, as one JSON line.
type Result struct {
	Scenario string         `json:"scenario"`
	Time     time.Time      `json:"time"`
	Command  string         `json:"command"`
	Machine  Machine        `json:"machine"`
	Server   string         `json:"server"`
	Pinned   string         `json:"pinned"`
	Params   map[string]any `json:"params"`
	Results  any            `json:"results"`
	Summary  string         `json:"summary"`
}

// report prints r as a JSON line and its summary, and appends it to -out.
func (c *common) report(r Result) error {
	r.Time = time.Now().UTC().Truncate(time.Second)
	r.Command = c.command
	r.Machine = machine()
	r.Server = "pearld"
	if c.self {
		r.Server = "pearl-bench serve"
	}
	r.Pinned = "no"
	if c.pin >= 0 {
		r.Pinned = fmt.Sprintf("server on CPU %d, bench on CPU %s", c.pin, os.Getenv(pinnedEnv+"_CPU"))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s\n%s: %s\n", b, r.Scenario, r.Summary)
	if c.out != "" {
		f, err := os.OpenFile(c.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
		defer f.Close()
		if _, err := f.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("writing results: %w", err)
		}
	}
	return nil
}

// progress prints a progress line on stderr.
func (c *common) progress(format string, args ...any) {
	fmt.Fprintf(c.stderr, "  "+format+"\n", args...)
}

// scenario is one runnable scenario.
type scenario struct {
	name  string
	flags func(fs *flag.FlagSet) func(ctx context.Context, c *common) error
}

var scenarios = []scenario{
	{"fanout", fanoutFlags},
	{"idle", idleFlags},
	{"connect", connectFlags},
	{"poll", pollFlags},
	{"e2e", e2eFlags},
	{"cluster", clusterFlags},
	{"all", allFlags},
}

func run(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	switch name {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	var sc *scenario
	for i := range scenarios {
		if scenarios[i].name == name {
			sc = &scenarios[i]
		}
	}
	if sc == nil {
		fmt.Fprintf(stderr, "pearl-bench: unknown scenario %q\n\n%s", name, usage)
		return errUsage
	}
	fs := flag.NewFlagSet("pearl-bench "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &common{stdout: stdout, stderr: stderr}
	c.register(fs)
	runFn := sc.flags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pearl-bench %s: unexpected arguments %q\n", name, fs.Args())
		return errUsage
	}
	c.command = "pearl-bench " + name + " " + strings.Join(args, " ")
	if c.pin >= 0 && os.Getenv(pinnedEnv) == "" {
		return reexecPinned(c)
	}
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return err
		}
	}
	defer c.cleanup()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return runFn(ctx, c)
}

// reexecPinned runs the bench again under taskset on the client CPU, so
// that every thread of the load generator stays off the server's CPU.
func reexecPinned(c *common) error {
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return fmt.Errorf("-pin needs taskset (util-linux): %w", err)
	}
	n := runtime.NumCPU()
	if c.pin >= n {
		return fmt.Errorf("-pin %d: this machine has CPUs 0-%d", c.pin, n-1)
	}
	cpu := c.clientCPU
	if cpu < 0 {
		for i := range n {
			if i != c.pin {
				cpu = i
				break
			}
		}
	}
	if cpu < 0 || cpu == c.pin {
		return fmt.Errorf("-pin %d: no other CPU for the bench (give -client-cpu)", c.pin)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	argv := append([]string{ts, "-c", strconv.Itoa(cpu), exe}, os.Args[1:]...)
	env := append(os.Environ(), pinnedEnv+"=1", pinnedEnv+"_CPU="+strconv.Itoa(cpu))
	return syscall.Exec(ts, argv, env)
}

// withServer starts a server for spec, runs fn, and stops the server.
func (c *common) withServer(ctx context.Context, spec func(listen string) pipelineSpec, fn func(s *server) error) error {
	o, err := c.serverOptions(ctx)
	if err != nil {
		return err
	}
	s, err := startServer(ctx, o, spec)
	if err != nil {
		return err
	}
	defer s.stop()
	return fn(s)
}

// profile collects a CPU profile of the server for -profile-seconds in
// the background when -profile is set and the server serves pprof; the
// returned function waits for it and writes a heap profile.
func (c *common) profile(ctx context.Context, s *server, name string) func() {
	if c.profileDir == "" {
		return func() {}
	}
	if !s.hasPprof(ctx) {
		c.progress("no /debug/pprof/ on the server: no profile (use -self)")
		return func() {}
	}
	done := make(chan struct{})
	cpuFile := filepath.Join(c.profileDir, name+".cpu.pprof")
	go func() {
		defer close(done)
		if err := s.cpuProfile(ctx, c.profileFor, cpuFile); err != nil {
			c.progress("CPU profile: %v", err)
		}
	}()
	return func() {
		<-done
		heapFile := filepath.Join(c.profileDir, name+".heap.pprof")
		if err := s.heapProfile(ctx, heapFile); err != nil {
			c.progress("heap profile: %v", err)
		}
		c.progress("profiles: %s, %s", cpuFile, heapFile)
	}
}

// waitQuiet waits, with -quiet, until the machine's CPU use by others than
// the server and the bench stays under the threshold for a second.
func (c *common) waitQuiet(ctx context.Context, s *server) {
	if c.quiet <= 0 {
		return
	}
	deadline := time.Now().Add(c.quietWait)
	for ctx.Err() == nil {
		m, err := startCPUMeter(s.pid, c.pin)
		if err != nil {
			return
		}
		sleepCtx(ctx, time.Second)
		u, _, err := m.stop()
		if err != nil || u.Others < c.quiet {
			return
		}
		if time.Now().After(deadline) {
			c.progress("the machine stayed busy (others at %.0f%% of a CPU): measuring anyway", u.Others)
			return
		}
		c.progress("waiting for a quiet machine: others at %.0f%% of a CPU", u.Others)
	}
}
