package processors

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
)

// fakeClock is a settable time source for Batch.now.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func seqEvents(from, n int) []engine.Event {
	out := make([]engine.Event, n)
	for i := range out {
		out[i] = engine.Event{Type: "device_health", Device: "d" + strconv.Itoa(from+i), Seq: uint64(from + i)}
	}
	return out
}

func seqsOf(events []engine.Event) []uint64 {
	out := make([]uint64, len(events))
	for i, e := range events {
		out[i] = e.Seq
	}
	return out
}

func TestBatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const delay = 50 * time.Millisecond
	// A step feeds a batch to Process (in > 0) or calls Flush (in == 0),
	// after moving the clock by advance; want is the Seqs passed on and
	// next the NextFlush after the step, relative to t0 (-1: zero time).
	type step struct {
		advance time.Duration
		in      int
		want    []uint64
		next    time.Duration
	}
	tests := []struct {
		name      string
		maxEvents int
		steps     []step
	}{
		{"size triggered", 3, []step{
			{0, 1, nil, delay},
			{10 * time.Millisecond, 1, nil, delay},
			{10 * time.Millisecond, 1, []uint64{1, 2, 3}, -1},
			{0, 2, nil, 20*time.Millisecond + delay},
			{0, 1, []uint64{4, 5, 6}, -1},
		}},
		{"delay triggered, counted from the first held event", 100, []step{
			{0, 2, nil, delay},
			{40 * time.Millisecond, 1, nil, delay},
			{10 * time.Millisecond, 0, []uint64{1, 2, 3}, -1},
			{5 * time.Millisecond, 1, nil, 55*time.Millisecond + delay},
		}},
		{"an input that crosses the limit leaves whole", 3, []step{
			{0, 2, nil, delay},
			{0, 4, []uint64{1, 2, 3, 4, 5, 6}, -1},
		}},
		{"a full input passes as it is", 3, []step{
			{0, 5, []uint64{1, 2, 3, 4, 5}, -1},
			{0, 3, []uint64{6, 7, 8}, -1},
		}},
		{"order kept across triggers", 4, []step{
			{0, 1, nil, delay},
			{0, 2, nil, delay},
			{delay, 0, []uint64{1, 2, 3}, -1},
			{0, 3, nil, delay + delay},
			{0, 2, []uint64{4, 5, 6, 7, 8}, -1},
			{0, 1, nil, delay + delay},
			{0, 0, []uint64{9}, -1},
		}},
		{"flush with nothing held", 3, []step{
			{0, 0, nil, -1},
		}},
		{"max_events 1 passes everything at once", 1, []step{
			{0, 1, []uint64{1}, -1},
			{0, 2, []uint64{2, 3}, -1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: t0}
			b := NewBatch()
			b.MaxEvents = tt.maxEvents
			b.now = clock.now
			if err := b.Init(nil); err != nil {
				t.Fatal(err)
			}
			seq := 1
			for i, s := range tt.steps {
				clock.t = clock.t.Add(s.advance)
				var out []engine.Event
				var err error
				if s.in > 0 {
					in := seqEvents(seq, s.in)
					seq += s.in
					out, err = b.Process(t.Context(), in)
				} else {
					out, err = b.Flush(t.Context())
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := seqsOf(out); !slices.Equal(got, s.want) {
					t.Fatalf("step %d passed %v, want %v", i, got, s.want)
				}
				want := time.Time{}
				if s.next >= 0 {
					want = t0.Add(s.next)
				}
				if got := b.NextFlush(); !got.Equal(want) {
					t.Fatalf("step %d: NextFlush %v, want %v", i, got, want)
				}
			}
		})
	}
}

func TestBatchDoesNotAliasItsInput(t *testing.T) {
	b := NewBatch()
	b.MaxEvents = 4
	if err := b.Init(nil); err != nil {
		t.Fatal(err)
	}
	in := seqEvents(1, 2)
	if out, _ := b.Process(t.Context(), in); out != nil {
		t.Fatalf("passed %v early", out)
	}
	in[0].Seq, in[1].Seq = 99, 99 // the runner may reuse or share its batch
	out, _ := b.Process(t.Context(), seqEvents(3, 2))
	if got := seqsOf(out); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("passed %v", got)
	}
	// What went downstream is not touched by the next batch.
	b.Process(t.Context(), seqEvents(5, 3))
	if got := seqsOf(out); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("released batch changed to %v", got)
	}
}

func TestBatchInit(t *testing.T) {
	tests := []struct {
		name string
		b    Batch
		want string
	}{
		{"max_events", Batch{MaxEvents: 0, MaxDelay: engine.Duration(time.Second)}, "max_events must be at least 1, not 0"},
		{"max_delay zero", Batch{MaxEvents: 1}, "max_delay must be positive, not 0s"},
		{"max_delay negative", Batch{MaxEvents: 1, MaxDelay: engine.Duration(-time.Second)}, "max_delay must be positive, not -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.b.Init(nil); err == nil || err.Error() != tt.want {
				t.Fatalf("Init: %v, want %q", err, tt.want)
			}
		})
	}
	if b := NewBatch(); b.MaxEvents != 100 || b.MaxDelay.D() != 50*time.Millisecond || b.Init(nil) != nil {
		t.Fatalf("defaults %+v", b)
	}
}

// gatedSource emits the number of events the test sends on its gate.
type gatedSource struct {
	gate chan int
}

func (s *gatedSource) Run(ctx context.Context, emit func(engine.Event)) error {
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case count := <-s.gate:
			for range count {
				n++
				emit(engine.Event{Type: "device_health", Device: "d" + strconv.Itoa(n)})
			}
		}
	}
}

// batchRecorder is a sink that records each Write.
type batchRecorder struct {
	mu      sync.Mutex
	batches [][]engine.Event
}

func (r *batchRecorder) Write(_ context.Context, b []engine.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
	return nil
}

func (r *batchRecorder) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int, len(r.batches))
	for i, b := range r.batches {
		out[i] = len(b)
	}
	return out
}

func (r *batchRecorder) all() []engine.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []engine.Event
	for _, b := range r.batches {
		out = append(out, b...)
	}
	return out
}

// TestBatchInPipeline runs the batch processor in a real pipeline: a
// source emits events one by one, the sink must see them in batches of
// max_events, a remainder after max_delay, and what is held at shutdown.
func TestBatchInPipeline(t *testing.T) {
	tests := []struct {
		name     string
		maxDelay string
		groups   []int // events emitted at once; the next group waits for the sink
		// stop stops the pipeline right after the last group, before its
		// delay can pass.
		stop bool
		want []int
	}{
		{"size", "1h", []int{10, 10, 10}, false, []int{10, 10, 10}},
		{"size, then the final flush", "1h", []int{10, 10, 4}, true, []int{10, 10, 4}},
		{"delay", "30ms", []int{3, 10, 7}, false, []int{3, 10, 7}},
		{"nothing held at shutdown", "1h", []int{10}, true, []int{10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &gatedSource{gate: make(chan int)}
			sink := &batchRecorder{}
			reg := engine.NewRegistry()
			reg.Register(engine.KindSource, "gated", func() any { return src })
			reg.Register(engine.KindSink, "recorder", func() any { return sink })
			f, ok := engine.DefaultRegistry().Lookup(engine.KindProcessor, "batch")
			if !ok {
				t.Fatal("batch processor not registered")
			}
			reg.Register(engine.KindProcessor, "batch", f)
			cfg, err := engine.Load("batch.toml", []byte(`
[sources.in]
type = "gated"

[processors.batched]
type       = "batch"
inputs     = ["in"]
max_events = 10
max_delay  = "`+tt.maxDelay+`"

[sinks.out]
type   = "recorder"
inputs = ["batched"]
`), engine.LoadOptions{Registry: reg})
			if err != nil {
				t.Fatal(err)
			}
			p, err := engine.NewPipeline(cfg, engine.Deps{})
			if err != nil {
				t.Fatal(err)
			}
			p.Start()
			stopped := false
			defer func() {
				if !stopped {
					_ = p.Stop(context.Background())
				}
			}()

			sent := 0
			for i, n := range tt.groups {
				start := time.Now()
				src.gate <- n
				sent += n
				if tt.stop && i == len(tt.groups)-1 {
					// Stop once the batch holds them: a source cancelled
					// while emitting may drop what it emits.
					waitFor(t, "the batch to hold the group", func() bool { return received(p, "batched") == sent })
					break
				}
				waitFor(t, "the sink to receive the group", func() bool { return len(sink.all()) == sent })
				if n < 10 && time.Since(start) < 30*time.Millisecond {
					t.Fatalf("a batch of %d was released after %s, before max_delay", n, time.Since(start))
				}
			}
			if tt.stop {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := p.Stop(ctx); err != nil {
					t.Fatal(err)
				}
				stopped = true
			}
			if got := sink.sizes(); !slices.Equal(got, tt.want) {
				t.Fatalf("sink batches of %v, want %v", got, tt.want)
			}
			got := sink.all()
			for i, e := range got {
				if e.Device != "d"+strconv.Itoa(i+1) || (i > 0 && e.Seq <= got[i-1].Seq) {
					t.Fatalf("event %d is %s seq %d: order lost", i, e.Device, e.Seq)
				}
			}
		})
	}
}

// received returns the events a component of p received.
func received(p *engine.Pipeline, name string) int {
	for _, c := range p.Status(false) {
		if c.Name == name {
			return int(c.Received)
		}
	}
	return -1
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
