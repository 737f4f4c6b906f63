package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/redisstream"
	"github.com/pearld/pearld/sources/redisstream/redistest"
)

func newSink(t *testing.T, url, prefix string, configure func(*Sink)) (*Sink, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test", Name: "out", Type: "redis_stream", Metrics: reg})
	t.Cleanup(func() { closeEnv(context.Background()) })
	s := New()
	s.Redis, s.Prefix = url, prefix
	if configure != nil {
		configure(s)
	}
	if err := s.Init(env); err != nil {
		t.Fatal(err)
	}
	return s, reg
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name      string
		configure func(*Sink)
		want      string
	}{
		{"no redis", func(s *Sink) { s.Redis = "" }, `redis: required, such as "redis://127.0.0.1:6379/0"`},
		{"not redis", func(s *Sink) { s.Redis = "http://127.0.0.1:6379" }, `parsing redis URL: scheme must be redis, rediss or unix, not "http"`},
		{"password stays secret", func(s *Sink) { s.Redis = "redis://:hunter2@127.0.0.1:6379/x" }, `parsing redis URL redis://:xxxxx@127.0.0.1:6379/x: redis: invalid database number: "x"`},
		{"short stream", func(s *Sink) { s.MaxLen = 10 }, "max_len must be at least 1000, not 10"},
		{"no history", func(s *Sink) { s.History = 0 }, "history must be at least 1, not 0"},
		{"negative ttl", func(s *Sink) { s.HistoryTTL = -1 }, "history_ttl must not be negative"},
		{"no timeout", func(s *Sink) { s.Timeout = 0 }, "timeout must be positive, not 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test"})
			defer closeEnv(context.Background())
			s := New()
			s.Redis = "redis://127.0.0.1:6379/0"
			tt.configure(s)
			err := s.Init(env)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Init: %v\nwant: %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error shows the password")
			}
		})
	}
}

func event(device, channel string, i int, at time.Time) engine.Event {
	return engine.Event{Type: "publisher_status", Device: device, Channel: channel, Time: at,
		Data: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`), Hash: uint64(i + 1)}
}

func TestWrite(t *testing.T) {
	r := redistest.New(t)
	s, reg := newSink(t, r.URL, r.Prefix, nil)
	t0 := time.Now()
	batch := []engine.Event{
		event("a", "1", 1, t0),
		{Type: "publisher_status", Device: "a", Channel: "2", Time: t0, Data: json.RawMessage(`{not json`)},
		{Type: "", Device: "a", Time: t0},
		event("a", "1", 2, t0.Add(time.Millisecond)),
		event("b", "", 3, t0),
	}
	err := s.Write(context.Background(), batch)
	if err == nil || !strings.Contains(err.Error(), "publisher_status:a:2 seq 0: data is not valid JSON") ||
		!strings.Contains(err.Error(), "missing type or device") {
		t.Fatalf("Write: %v, want the two bad events reported", err)
	}
	keys := redisstream.Keys{Prefix: r.Prefix}
	ctx := context.Background()
	if n := r.Client.XLen(ctx, keys.Stream()).Val(); n != 3 {
		t.Fatalf("stream holds %d entries, want 3", n)
	}
	if n := r.Client.XLen(ctx, keys.History("publisher_status:a:1")).Val(); n != 2 {
		t.Fatalf("history of a:1 holds %d entries, want 2", n)
	}
	if ttl := r.Client.PTTL(ctx, keys.History("publisher_status:a:1")).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("history TTL %v, want up to the default 1h", ttl)
	}
	if devs := r.Client.SMembers(ctx, keys.Devices()).Val(); len(devs) != 2 {
		t.Fatalf("devices %v, want a and b", devs)
	}
	latest, err := redisstream.LatestOf(ctx, r.Client, keys, "a")
	if err != nil || len(latest) != 1 || latest[0].Hash != 3 || !latest[0].Time.Equal(t0.Add(time.Millisecond)) {
		t.Fatalf("latest of a: %v, %v", latest, err)
	}
	if got := testutil.ToFloat64(s.metrics.written); got != 3 {
		t.Fatalf("written metric %v, want 3", got)
	}
	if n, err := testutil.GatherAndCount(reg, "pearld_redis_stream_written_events_total"); err != nil || n != 1 {
		t.Fatalf("metric registered %d times (%v)", n, err)
	}

	// A large batch goes out in chunks, in order.
	big := make([]engine.Event, 3*maxChunk+5)
	for i := range big {
		big[i] = event("c", "1", i, t0.Add(time.Duration(i)*time.Microsecond))
	}
	if err := s.Write(ctx, big); err != nil {
		t.Fatal(err)
	}
	msgs := r.Client.XRange(ctx, keys.History("publisher_status:c:1"), "-", "+").Val()
	if len(msgs) < 100 || msgs[len(msgs)-1].Values["hash"] != "0000000000000185" {
		t.Fatalf("history of c:1: %d entries, last %v", len(msgs), msgs[len(msgs)-1].Values)
	}
}

// proxy forwards TCP connections to target while up; while down it
// closes them at once.
type proxy struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.setUp(false)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.up.Load() {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, u); c.Close() })
	}
}

// setUp switches forwarding; going down cuts the open connections.
func (p *proxy) setUp(up bool) {
	p.up.Store(up)
	if up {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestWriteRetriesWhileRedisFails(t *testing.T) {
	r := redistest.New(t)
	opts, err := redisstream.Options(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Network != "tcp" {
		t.Skip("needs Redis over TCP")
	}
	p := newProxy(t, opts.Addr)
	url := "redis://" + p.ln.Addr().String() + "/" + strconv.Itoa(opts.DB)
	s, _ := newSink(t, url, r.Prefix, func(s *Sink) { s.Timeout = engine.Duration(200 * time.Millisecond) })

	// Redis unreachable: Write holds the batch, retrying.
	done := make(chan error, 1)
	go func() { done <- s.Write(context.Background(), []engine.Event{event("a", "1", 1, time.Now())}) }()
	waitFor(t, "a retry", func() bool { return testutil.ToFloat64(s.metrics.retries) >= 2 })
	select {
	case err := <-done:
		t.Fatalf("Write returned %v while Redis was unreachable", err)
	default:
	}
	p.setUp(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write did not finish within 10s of Redis coming back")
	}
	if n := r.Client.XLen(context.Background(), redisstream.Keys{Prefix: r.Prefix}.Stream()).Val(); n != 1 {
		t.Fatalf("stream holds %d entries, want 1", n)
	}

	// Stopped for good while Redis fails: Write gives up and says so.
	p.setUp(false)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = s.Write(ctx, []engine.Event{event("a", "1", 2, time.Now())})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write after the pipeline's end: %v, want the context's error", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
