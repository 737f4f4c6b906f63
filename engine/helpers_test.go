package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test components: a scripted source, a pass-through processor and a
// recording sink, registered in a private registry.

type testSource struct {
	Devices  []string `toml:"devices"`
	Interval Duration `toml:"interval"`
	Count    int      `toml:"count"`
	Fail     bool     `toml:"fail"`

	runs atomic.Int32
}

func (s *testSource) Run(ctx context.Context, emit func(Event)) error {
	s.runs.Add(1)
	for i := 0; i < s.Count; i++ {
		emit(Event{Type: "t", Device: "d", Channel: string(rune('a' + i%26)), Hash: uint64(i)})
	}
	if s.Fail {
		return context.DeadlineExceeded
	}
	<-ctx.Done()
	return nil
}

type testProc struct {
	TTL Duration `toml:"ttl"`
}

func (testProc) Process(_ context.Context, b []Event) ([]Event, error) { return b, nil }

type testSink struct {
	Listen string   `toml:"listen"`
	Delay  Duration `toml:"delay"`

	mu     sync.Mutex
	got    []Event
	closed bool
}

func (s *testSink) Write(ctx context.Context, b []Event) error {
	if s.Delay > 0 {
		select {
		case <-time.After(s.Delay.D()):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	s.got = append(s.got, b...)
	s.mu.Unlock()
	return nil
}

func (s *testSink) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *testSink) events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.got...)
}

func testRegistry() *Registry {
	r := NewRegistry()
	r.Register(KindSource, "pearl_publisher_status", func() any { return &testSource{Interval: Duration(5 * time.Second)} })
	r.Register(KindSource, "pearl_device_health", func() any { return &testSource{} })
	r.Register(KindProcessor, "dedup", func() any { return &testProc{} })
	r.Register(KindProcessor, "ttl_cache", func() any { return &testProc{} })
	r.Register(KindSink, "websocket", func() any { return &testSink{} })
	r.Register(KindSink, "rest_events", func() any { return &testSink{} })
	return r
}

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
