package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePortRange returns a base port with n free consecutive ports after it.
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

// started is a run in progress.
type started struct {
	base           int
	stdout, stderr *syncBuffer
	done           chan error
	cancel         context.CancelFunc
}

// startRun runs pearl-sim with n devices on a free port range plus args,
// and waits until it has printed its n lines. It retries when a probed
// port was taken before run bound it.
func startRun(t *testing.T, n int, args ...string) *started {
	t.Helper()
	for attempt := 0; ; attempt++ {
		s := &started{base: freePortRange(t, n), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		s.cancel = cancel
		all := append([]string{"-n", fmt.Sprint(n), "-listen", fmt.Sprintf("127.0.0.1:%d", s.base)}, args...)
		go func() { s.done <- run(ctx, all, s.stdout, s.stderr) }()
		err := s.waitPrinted(n)
		if err == nil {
			return s
		}
		cancel()
		if attempt < 5 && strings.Contains(err.Error(), "address already in use") {
			continue
		}
		t.Fatalf("starting pearl-sim: %v; stderr %s", err, s.stderr)
	}
}

// waitPrinted waits up to 5s for n lines on stdout.
func (s *started) waitPrinted(n int) error {
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(s.stdout.String(), "\n") < n {
		select {
		case err := <-s.done:
			if err == nil {
				err = errors.New("no error")
			}
			return fmt.Errorf("run returned early: %w", err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("printed %q in 5s, want %d lines", s.stdout, n)
		}
	}
	return nil
}

func TestRunServesUntilCanceled(t *testing.T) {
	const n = 3
	r := startRun(t, n, "-password", "pw", "-tick", "5ms", "-control-delay", "1ms", "-seed", "4")
	defer r.cancel()
	base, stdout, stderr, done, cancel := r.base, r.stdout, r.stderr, r.done, r.cancel

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != n {
		t.Fatalf("stdout = %q, want %d lines", stdout.String(), n)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i, line := range lines {
		url := fmt.Sprintf("http://127.0.0.1:%d", base+i)
		if !strings.HasPrefix(line, url+" ") {
			t.Errorf("line %d = %q, want it to start with %s", i, line, url)
		}
		req, _ := http.NewRequest(http.MethodGet, url+"/api/v2.0/channels?publishers=true&publishers-status=true", nil)
		req.SetBasicAuth("admin", "pw")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			Status string `json:"status"`
			Result []struct {
				ID string `json:"id"`
			} `json:"result"`
		}
		err = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || env.Status != "ok" || len(env.Result) == 0 {
			t.Fatalf("device %d: %d %+v %v", i, resp.StatusCode, env, err)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for i := range n {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			t.Fatalf("port %d still bound after shutdown: %v", base+i, err)
		}
		ln.Close()
	}
	if !strings.Contains(stderr.String(), "shutting down") {
		t.Errorf("stderr = %q", stderr.String())
	}
}

func TestRunBadArguments(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantIs  error
	}{
		{name: "help", args: []string{"-h"}, wantIs: flag.ErrHelp},
		{name: "unknown flag", args: []string{"-bogus"}, wantIs: errUsage},
		{name: "bad duration", args: []string{"-tick", "soon"}, wantIs: errUsage},
		{name: "extra argument", args: []string{"extra"}, wantErr: `unexpected "extra"`},
		{name: "no devices", args: []string{"-n", "0"}, wantErr: "-n must be at least 1"},
		{name: "zero tick", args: []string{"-tick", "0s"}, wantErr: "-tick must be positive"},
		{name: "fault rate", args: []string{"-faults", "1.5"}, wantErr: "-faults must be between 0 and 1"},
		{name: "bad listen", args: []string{"-listen", "nowhere"}, wantErr: "parsing listen address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr syncBuffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			if err == nil {
				t.Fatal("run succeeded")
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v, want %v", err, tt.wantIs)
			}
			if tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if stdout.String() != "" {
				t.Errorf("stdout = %q", stdout.String())
			}
		})
	}
}
