package pearltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain fails the package when a test leaves a server, fleet or HTTP
// goroutine behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines waits up to timeout for every goroutine running code of
// this package or of an HTTP server or client connection to end, and
// returns the stacks of those left.
func leakedGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "leakedGoroutines") || strings.Contains(g, "testing.(*T).Run") ||
				strings.Contains(g, "testing.tRunner") {
				continue
			}
			for _, marker := range []string{"pearltest.", "net/http.(*conn).serve", "net/http.(*persistConn)", "net/http.(*Server).Serve"} {
				if strings.Contains(g, marker) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 2, 14, 13, 41, 9, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// envelope is the API's answer: {"status":...,"result":...} or
// {"status":...,"message":...}.
type envelope struct {
	Status  string          `json:"status"`
	Message string          `json:"message"`
	Result  json.RawMessage `json:"result"`
}

// apiChannel and the types below follow the spec's schemas; ids are
// strings, so a numeric id fails to decode.
type apiChannel struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Publishers   []apiPublisher  `json:"publishers"`
	Encoders     []apiEncoder    `json:"encoders"`
	ActiveLayout json.RawMessage `json:"active_layout"`
}

type apiPublisher struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Name     string          `json:"name"`
	Status   *apiStatus      `json:"status"`
	Settings json.RawMessage `json:"settings"`
}

type apiStatus struct {
	IsConfigured  bool            `json:"is_configured"`
	Started       bool            `json:"started"`
	State         string          `json:"state"`
	Description   string          `json:"description"`
	Duration      *int64          `json:"duration"`
	Since         *int64          `json:"since"`
	Statistics    json.RawMessage `json:"statistics"`
	Reconnections *int            `json:"reconnections"`
	Warnings      []struct {
		Text string `json:"text"`
	} `json:"warnings"`
}

type apiEncoder struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Name       string `json:"name"`
	Resolution string `json:"resolution"`
	Framerate  int    `json:"framerate"`
	Bitrate    int    `json:"bitrate"`
	Channels   int    `json:"channels"`
}

type apiSystem struct {
	Date             any   `json:"date"`
	Uptime           int64 `json:"uptime"`
	CPULoad          int   `json:"cpuload"`
	CPULoadHigh      bool  `json:"cpuload_high"`
	CPUTemp          int   `json:"cputemp"`
	CPUTempThreshold int   `json:"cputemp_threshold"`
}

// do sends a request to h with Basic auth admin:"" and returns the answer.
func do(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	r.SetBasicAuth("admin", "")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// result decodes an ok answer's result into a T, failing on anything else.
func result[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var out T
	if w.Code != http.StatusOK {
		t.Fatalf("code = %d, want 200; body %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var env envelope
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		t.Fatalf("decoding envelope %s: %v", w.Body, err)
	}
	if env.Status != "ok" {
		t.Fatalf("status = %q, want ok; body %s", env.Status, w.Body)
	}
	if err := json.Unmarshal(env.Result, &out); err != nil {
		t.Fatalf("decoding result %s into %T: %v", env.Result, out, err)
	}
	return out
}

// getResult GETs path from h and decodes the result.
func getResult[T any](t *testing.T, h http.Handler, path string) T {
	t.Helper()
	return result[T](t, do(t, h, http.MethodGet, path))
}

// wantError checks an error envelope.
func wantError(t *testing.T, w *httptest.ResponseRecorder, code int, status string) envelope {
	t.Helper()
	if w.Code != code {
		t.Fatalf("code = %d, want %d; body %s", w.Code, code, w.Body)
	}
	var env envelope
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil {
		t.Fatalf("decoding error envelope %s: %v", w.Body, err)
	}
	if env.Status != status || env.Message == "" {
		t.Fatalf("envelope = %+v, want status %q and a message", env, status)
	}
	return env
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t *testing.T, got []byte, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("decoding %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("decoding want %s: %v", want, err)
	}
	return reflect.DeepEqual(g, w)
}

// testClient returns an HTTP client whose connections are closed when the
// test ends.
func testClient(t *testing.T, tr *http.Transport) *http.Client {
	t.Helper()
	if tr == nil {
		tr = &http.Transport{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// apiGet GETs url with Basic auth through c.
func apiGet(c *http.Client, url, user, pass string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, bytes.TrimSpace(body), err
}

// freePortRange returns a base port such that base..base+n-1 could all be
// bound on 127.0.0.1 just now. It stays below the usual ephemeral range so
// outgoing connections are unlikely to take a port in between.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(12000-n)
		var lns []net.Listener
		for i := range n {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
		if len(lns) == n {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports found", n)
	return 0
}
