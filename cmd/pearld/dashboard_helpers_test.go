package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// demoProcess is one run of `pearld demo`.
type demoProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	url  string        // the dashboard URL it printed, with its token
}

// startDemo runs the built binary as `make demo` does, on fixed ports, and
// waits for the dashboard URL it prints.
func startDemo(t *testing.T, bin string, hub, status, sim int) *demoProcess {
	t.Helper()
	cmd := exec.Command(bin, "demo",
		"--listen", fmt.Sprintf("127.0.0.1:%d", hub),
		"--status-addr", fmt.Sprintf("127.0.0.1:%d", status),
		"--sim-port", strconv.Itoa(sim), "--tick", "500ms", "--seed", "7", "--log-level", "warn")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "JWT_SECRET="+dashboardSecret)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &demoProcess{cmd: cmd, done: make(chan struct{})}
	urlRE := regexp.MustCompile(`http://\S+/#token=\S+`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u := urlRE.FindString(sc.Text()); u != "" && len(found) == 0 {
				found <- u
			}
		}
		close(found)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t, syscall.SIGKILL) })

	select {
	case u, ok := <-found:
		if !ok {
			t.Fatal("pearld demo exited without printing a dashboard URL (http://.../#token=...): " +
				"mount cmd/pearld/internal/dashboard on the status listener and print its URL")
		}
		p.url = u
	case <-time.After(30 * time.Second):
		t.Fatal("pearld demo printed no dashboard URL (http://.../#token=...) within 30s: " +
			"mount cmd/pearld/internal/dashboard on the status listener and print its URL")
	}
	return p
}

// stop signals the process and waits for it to exit; it is a no-op once
// the process has exited.
func (p *demoProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("pearld demo did not exit within 20s of %v", sig)
	}
}

// wsGate is the HTTP proxy the test's browser uses: it passes page and
// REST requests, and WebSocket connections (which browsers tunnel through
// a proxy with CONNECT) unless told to refuse them, as proxies that do
// not pass WebSockets do. It forwards to loopback addresses only.
type wsGate struct {
	srv *httptest.Server

	mu      sync.Mutex
	blocked bool
	tunnels map[net.Conn]struct{}
}

func newWSGate(t *testing.T) *wsGate {
	g := &wsGate{tunnels: map[net.Conn]struct{}{}}
	g.srv = httptest.NewServer(g)
	t.Cleanup(func() {
		g.block(true)
		g.srv.Close()
	})
	return g
}

// block refuses new WebSocket tunnels and cuts the open ones, or lets
// them through again.
func (g *wsGate) block(b bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blocked = b
	if b {
		for c := range g.tunnels {
			c.Close()
		}
	}
}

func (g *wsGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil || (host != "127.0.0.1" && host != "localhost") {
		http.Error(w, "the test proxy forwards to loopback only", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodConnect {
		r.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		return
	}
	g.mu.Lock()
	blocked := g.blocked
	g.mu.Unlock()
	if blocked {
		http.Error(w, "WebSockets are not allowed through this proxy", http.StatusForbidden)
		return
	}
	up, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		up.Close()
		return
	}
	g.mu.Lock()
	g.tunnels[c] = struct{}{}
	g.mu.Unlock()
	_, _ = c.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
	go func() {
		_, _ = io.Copy(up, c)
		up.Close()
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	g.mu.Lock()
	delete(g.tunnels, c)
	g.mu.Unlock()
}

// outputDir is where tests leave files for people: $TEST_OUTPUT_DIR, or
// out/ at the repository's root (git-ignored).
func outputDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_OUTPUT_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "out")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// pubState is a publisher's state as the server and the page know it.
type pubState struct {
	seq    uint64
	states map[string]string // publisher id -> state
}

func (s pubState) String() string { return fmt.Sprintf("seq %d %v", s.seq, s.states) }

// serverState reads a channel's latest publisher_status over REST.
func serverState(t *testing.T, api, token, device, channel string) (pubState, bool) {
	t.Helper()
	var a struct {
		Seq        uint64 `json:"seq"`
		Publishers []struct {
			ID     string `json:"id"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		} `json:"publishers"`
	}
	if code := getJSON(t, fmt.Sprintf("%s/api/device-state/devices/%s/channels/%s/publishers/status", api, device, channel), token, &a); code != http.StatusOK {
		return pubState{}, false
	}
	s := pubState{seq: a.Seq, states: map[string]string{}}
	for _, p := range a.Publishers {
		s.states[p.ID] = p.Status.State
	}
	return s, true
}

// getJSON GETs url with a bearer token and decodes a 200 answer into v;
// it returns the status code, 0 when the server does not answer.
func getJSON(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("decoding %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func postControl(t *testing.T, api, token, device, channel, publisher, action string) {
	t.Helper()
	url := fmt.Sprintf("%s/api/devices/%s/channels/%s/publishers/%s/control/%s", api, device, channel, publisher, action)
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, body)
	}
}

// metricValue reads the sum of a Prometheus counter's series whose labels
// include all of labels.
func metricValue(t *testing.T, statusURL, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(statusURL + "/metrics")
	if err != nil {
		t.Fatalf("reading metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// devicePublisherState asks a simulated Pearl itself for a publisher's
// state.
func devicePublisherState(t *testing.T, simPort int, channel, publisher string) (state string, started bool) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/api/v2.0/channels/%s/publishers/%s/status", simPort, channel, publisher)
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.SetBasicAuth("admin", "demo")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("asking the device: %v", err)
	}
	defer resp.Body.Close()
	var a struct {
		Result struct {
			State   string `json:"state"`
			Started bool   `json:"started"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatalf("decoding the device's answer: %v", err)
	}
	return a.Result.State, a.Result.Started
}
