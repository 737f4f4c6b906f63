package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pearld/pearld/engine/auth"
)

// server is a pearld process the bench started, with the pipeline file it
// runs.
type server struct {
	cmd        *exec.Cmd
	pid        int
	dir        string // temporary directory: pipeline file, log
	listen     string // hub and REST address, 127.0.0.1:port
	statusAddr string // status listener, 127.0.0.1:port
	secret     string // JWT_SECRET of the process
	logPath    string
	exited     chan struct{} // closed when the process has exited
	exitErr    error         // valid after exited is closed
	http       *http.Client
}

// serverOptions say how to run the server.
type serverOptions struct {
	Binary  string   // path of pearld; with Self, ignored
	Self    bool     // run `pearl-bench serve` (this binary) instead: pprof on the status listener
	Pin     int      // CPU to pin the server to; -1: no pinning
	Env     []string // extra environment
	Verbose bool     // pass the server's log to the bench's stderr as well
	Pprof   bool     // pass --pprof: /debug/pprof/ on the status listener, for admin tokens
}

// startServer writes the pipeline, starts the server and waits until it
// answers /health and accepts connections on the hub's address.
func startServer(ctx context.Context, o serverOptions, spec func(listen string) pipelineSpec) (*server, error) {
	dir, err := os.MkdirTemp("", "pearl-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating temporary directory: %w", err)
	}
	s := &server{dir: dir, exited: make(chan struct{}), http: &http.Client{Timeout: 30 * time.Second}}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	s.listen = "127.0.0.1:" + strconv.Itoa(ports[0])
	s.statusAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	s.secret = randomHex(32)
	text, err := spec(s.listen).render()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, "bench.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return nil, fmt.Errorf("writing pipeline: %w", err)
	}

	var argv []string
	if o.Self {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the bench binary: %w", err)
		}
		argv = []string{exe, "serve"}
	} else {
		argv = []string{o.Binary, "run"}
	}
	argv = append(argv, "--config", file, "--status-addr", s.statusAddr, "--log-level", "warn",
		"--plugins-dir", filepath.Join(dir, "plugins"), "--shutdown-timeout", "5s")
	if o.Pprof {
		argv = append(argv, "--pprof")
	}
	if o.Pin >= 0 {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("pinning the server needs taskset (util-linux): %w", err)
		}
		argv = append([]string{ts, "-c", strconv.Itoa(o.Pin)}, argv...)
	}
	s.logPath = filepath.Join(dir, "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating server log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "JWT_SECRET="+s.secret)
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if o.Verbose {
		cmd.Stderr = io.MultiWriter(logf, os.Stderr)
	}
	// Its own process group, so that a ^C to the bench reaches the server
	// only through the bench's orderly stop; killed with the bench if the
	// bench dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid // taskset execs the server: same pid
	go func() {
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, 15*time.Second); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// waitReady waits until /health answers 200 and the hub accepts TCP.
func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("server exited at start (%v): %s", s.exitErr, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server not ready within %v: %s", limit, s.logTail())
		}
		if resp, err := s.http.Get("http://" + s.statusAddr + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if c, err := net.DialTimeout("tcp", s.listen, time.Second); err == nil {
					c.Close()
					return nil
				}
			}
		}
		sleepCtx(ctx, 20*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// logTail returns the end of the server's log, for error messages.
func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop asks the server to stop (SIGTERM), kills it after a grace period,
// and removes its directory. It is safe to call on a partly started
// server and twice.
func (s *server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-s.pid, syscall.SIGKILL)
				<-s.exited
			}
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
	}
	s.http.CloseIdleConnections()
}

// alive reports an error when the server has exited.
func (s *server) alive() error {
	select {
	case <-s.exited:
		return fmt.Errorf("server exited (%v): %s", s.exitErr, s.logTail())
	default:
		return nil
	}
}

// token mints a token for the server's secret.
func (s *server) token(sub string, p auth.Permissions) (string, error) {
	return auth.Mint([]byte(s.secret), auth.MintOptions{Subject: sub, Permissions: p, TTL: 24 * time.Hour})
}

// metrics fetches and parses the server's /metrics.
func (s *server) metrics(ctx context.Context) (map[string]float64, error) {
	b, err := s.get(ctx, "/metrics", "")
	if err != nil {
		return nil, err
	}
	return parseMetrics(b)
}

// get fetches a path of the status listener, with a bearer token if set.
func (s *server) get(ctx context.Context, path, token string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.statusAddr+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s: %s", path, resp.Status, bytes.TrimSpace(b[:min(len(b), 200)]))
	}
	return b, nil
}

// hasPprof reports whether the server serves /debug/pprof/ to an admin.
func (s *server) hasPprof(ctx context.Context) bool {
	tok, err := s.token("pearl-bench", auth.Permissions{Admin: true})
	if err != nil {
		return false
	}
	_, err = s.get(ctx, "/debug/pprof/cmdline", tok)
	return err == nil
}

// cpuProfile fetches a CPU profile of the given length into file.
func (s *server) cpuProfile(ctx context.Context, d time.Duration, file string) error {
	tok, err := s.token("pearl-bench", auth.Permissions{Admin: true})
	if err != nil {
		return err
	}
	secs := max(int(d.Seconds()), 1)
	b, err := s.get(ctx, "/debug/pprof/profile?seconds="+strconv.Itoa(secs), tok)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// heapProfile fetches a heap profile, after a GC, into file.
func (s *server) heapProfile(ctx context.Context, file string) error {
	tok, err := s.token("pearl-bench", auth.Permissions{Admin: true})
	if err != nil {
		return err
	}
	b, err := s.get(ctx, "/debug/pprof/heap?gc=1", tok)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// liveHeap forces a GC through pprof and returns the live heap
// (HeapAlloc) it reports; ok is false without pprof.
func (s *server) liveHeap(ctx context.Context) (int64, bool) {
	tok, err := s.token("pearl-bench", auth.Permissions{Admin: true})
	if err != nil {
		return 0, false
	}
	b, err := s.get(ctx, "/debug/pprof/heap?gc=1&debug=1", tok)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// freePorts returns n distinct free TCP ports of 127.0.0.1. They are free
// when returned; the server binds them a moment later.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// buildPearld builds cmd/pearld into dir and returns its path.
func buildPearld(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "pearld")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/pearld/pearld/cmd/pearld")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building pearld (run the bench inside the module, or give -pearld): %w", err)
	}
	return out, nil
}

// raiseNoFile raises the soft limit of open files to the hard limit, and
// reports the result. Children inherit it: the server gets it too.
func raiseNoFile(need int) (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
		}
	}
	if r.Cur < uint64(need) {
		return r.Cur, errors.New("RLIMIT_NOFILE hard limit " + strconv.FormatUint(r.Max, 10) +
			" is below the " + strconv.Itoa(need) + " files needed; raise it (ulimit -Hn, limits.conf) or use fewer clients")
	}
	return r.Cur, nil
}
