package chaos

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pearld/pearld/engine/auth"

	// The components of the pipelines, as cmd/pearld registers them.
	_ "github.com/pearld/pearld/engine/processors"
	_ "github.com/pearld/pearld/plugins"
	_ "github.com/pearld/pearld/sinks/restapi"
	_ "github.com/pearld/pearld/sinks/websocket"
	_ "github.com/pearld/pearld/sources/pearl"
)

const secret = "chaos-test-secret-of-at-least-32-bytes!"

// pluginsDir holds the stream_quality binary TestMain builds.
var pluginsDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pearld-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "stream_quality"), "github.com/pearld/pearld/plugins/stream_quality")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building stream_quality: %v\n%s", err, out)
	} else {
		pluginsDir = dir
		code = m.Run()
		// Every test stopped what it started: nothing may be left running
		// in this process (the in-process variant of goleak).
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func mint(t *testing.T, sub string, perms auth.Permissions, devices []string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(secret), auth.MintOptions{Subject: sub, Permissions: perms, Devices: devices, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logBuffer keeps the engine's log records for a failing test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 4<<20 {
		l.buf.Reset() // keep the tail only
	}
	return l.buf.Write(p)
}

func (l *logBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(l.buf.String()), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// restClient calls the REST API with a token; it owns its connections so
// that none outlives the test.
type restClient struct {
	base  string
	token string
	http  *http.Client
}

func newRESTClient(base, token string) *restClient {
	return &restClient{base: base, token: token, http: &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}}
}

func (r *restClient) get(path string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, r.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (r *restClient) close() { r.http.CloseIdleConnections() }

// gauge returns the value of a gauge of a gatherer, summed over labels.
func gauge(g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return -1
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			}
		}
	}
	return sum
}

// childPIDs returns the pids of the living children of this process whose
// command name is comm, from /proc.
func childPIDs(comm string) []int {
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if s[open+1:end] == comm && len(f) > 1 && f[1] == self && f[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

// waitFor polls cond every 20ms until it holds or d passed.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
