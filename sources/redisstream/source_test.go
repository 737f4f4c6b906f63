package redisstream

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/redisstream/redistest"
)

func TestSeqOf(t *testing.T) {
	tests := []struct {
		id   string
		seq  uint64
		want bool
	}{
		{"0-0", 0, true},
		{"1700000000000-0", 1700000000000000, true},
		{"1700000000000-999", 1700000000000999, true},
		{"1700000000000-1000", 0, false}, // would collide with the next millisecond
		{"1700000000000", 0, false},
		{"a-1", 0, false},
		{"1--1", 0, false},
		{"99999999999999999999-0", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			seq, ok := SeqOf(tt.id)
			if ok != tt.want || seq != tt.seq {
				t.Fatalf("SeqOf(%q) = %d, %v; want %d, %v", tt.id, seq, ok, tt.seq, tt.want)
			}
			if ok && IDOf(seq) != tt.id {
				t.Fatalf("IDOf(%d) = %q, want %q", seq, IDOf(seq), tt.id)
			}
		})
	}
}

func TestEpoch(t *testing.T) {
	a, b := Keys{Prefix: "pearld:cluster"}.Epoch(), Keys{Prefix: "pearld:other"}.Epoch()
	if a != (Keys{Prefix: "pearld:cluster"}).Epoch() {
		t.Fatal("epoch is not a function of the prefix")
	}
	if a == b {
		t.Fatal("two streams share an epoch")
	}
	for _, e := range []int64{a, b} {
		if e <= 0 || e >= 1<<53 {
			t.Fatalf("epoch %d is not in (0, 2^53)", e)
		}
	}
}

// testEvent is event i of a key of device dev.
func testEvent(dev, channel string, i int, at time.Time) engine.Event {
	return engine.Event{
		Type: "publisher_status", Device: dev, Channel: channel, Time: at,
		Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), Hash: uint64(i + 1),
	}
}

// newSource returns an initialised source on the test's prefix.
func newSource(t *testing.T, r *redistest.Server, configure func(*Source)) *Source {
	t.Helper()
	env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test", Name: "stream", Type: "redis_stream"})
	t.Cleanup(func() { closeEnv(context.Background()) })
	return newSourceIn(t, env, r, configure)
}

// newSourceIn returns a source initialised in env, whose resources it
// shares with the other components of env, as a reload does.
func newSourceIn(t *testing.T, env *engine.Env, r *redistest.Server, configure func(*Source)) *Source {
	t.Helper()
	s := New()
	s.Redis, s.Prefix = r.URL, r.Prefix
	if configure != nil {
		configure(s)
	}
	if err := s.Init(env); err != nil {
		t.Fatal(err)
	}
	return s
}

// collector runs a source and gathers what it emits.
type collector struct {
	mu      sync.Mutex
	events  []engine.Event
	more    chan struct{}
	done    chan error
	cancel  context.CancelFunc
	stopped sync.Once
}

func runSource(t *testing.T, s *Source) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{more: make(chan struct{}, 1), done: make(chan error, 1), cancel: cancel}
	go func() {
		c.done <- s.Run(ctx, func(e engine.Event) {
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop stops the source and checks it returned nil; it may be called
// more than once.
func (c *collector) stop(t *testing.T) {
	t.Helper()
	c.stopped.Do(func() {
		c.cancel()
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("Run returned %v after cancellation", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancellation")
		}
	})
}

// wait returns the first n events emitted, failing after 5s.
func (c *collector) wait(t *testing.T, n int) []engine.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if len(c.events) >= n {
			out := slices.Clone(c.events[:n])
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.more:
		case <-deadline:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("%d events emitted within 5s, want %d", len(c.events), n)
		}
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

var testAppend = AppendOptions{MaxLen: 100000, History: 100}

func appendEvents(t *testing.T, r *redistest.Server, o AppendOptions, events ...engine.Event) (written, skipped int) {
	t.Helper()
	w, s, err := Append(context.Background(), r.Client, Keys{Prefix: r.Prefix}, o, events)
	if err != nil {
		t.Fatal(err)
	}
	return w, s
}

// sameEvent compares what the stream keeps of an event.
func sameEvent(t *testing.T, got, want engine.Event) {
	t.Helper()
	if got.Key() != want.Key() || !got.Time.Equal(want.Time) || got.Hash != want.Hash || string(got.Data) != string(want.Data) {
		t.Fatalf("got %s %s hash %x %s, want %s %s hash %x %s", got.Key(), got.Time, got.Hash, got.Data,
			want.Key(), want.Time, want.Hash, want.Data)
	}
}

func TestSourceEmitsAppendedEvents(t *testing.T) {
	r := redistest.New(t)
	// Before the source starts: not emitted, but held as latest state.
	t0 := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	appendEvents(t, r, testAppend, testEvent("a", "1", 0, t0), testEvent("b", "", 1, t0))
	s := newSource(t, r, nil)
	c := runSource(t, s)

	want := []engine.Event{testEvent("a", "1", 2, t0.Add(time.Second)), testEvent("a", "2", 3, t0.Add(2*time.Second))}
	want[1].Publisher = "7"
	// Wait until the source has started, so that these come after.
	waitFor(t, "the source to load the latest state", func() bool { return len(s.Keys()) == 2 })
	appendEvents(t, r, testAppend, want...)
	got := c.wait(t, 2)
	for i := range want {
		sameEvent(t, got[i], want[i])
	}
	if got[0].Seq == 0 || got[1].Seq <= got[0].Seq {
		t.Fatalf("seqs %d, %d: want increasing, from the stream ids", got[0].Seq, got[1].Seq)
	}
	if e, ok := s.Latest("publisher_status:b"); !ok || string(e.Data) != `{"i":1}` {
		t.Fatalf("latest of b = %v %v, want the event appended before the start", e, ok)
	}
	if e, ok := s.Latest("publisher_status:a:1"); !ok || e.Seq != got[0].Seq {
		t.Fatalf("latest of a:1 = %v %v, want seq %d", e, ok, got[0].Seq)
	}
	keys := s.Keys()
	slices.Sort(keys)
	if want := []string{"publisher_status:a:1", "publisher_status:a:2:7", "publisher_status:b"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}

	// A restarted Run goes on where the last one stopped.
	c.stop(t)
	appendEvents(t, r, testAppend, testEvent("a", "1", 4, t0.Add(3*time.Second)))
	c2 := runSource(t, s)
	sameEvent(t, c2.wait(t, 1)[0], testEvent("a", "1", 4, t0.Add(3*time.Second)))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAppendIDsStayBelowOneThousandPerMillisecond(t *testing.T) {
	r := redistest.New(t)
	at := time.Now()
	events := make([]engine.Event, 1200) // one script call, one clock reading
	for i := range events {
		events[i] = testEvent("a", "1", i, at)
	}
	if w, _ := appendEvents(t, r, testAppend, events...); w != len(events) {
		t.Fatalf("wrote %d of %d", w, len(events))
	}
	msgs, err := r.Client.XRange(context.Background(), Keys{Prefix: r.Prefix}.Stream(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, m := range msgs {
		seq, ok := SeqOf(m.ID)
		if !ok || seq <= last {
			t.Fatalf("id %s: seq %d (ok %v) after %d", m.ID, seq, ok, last)
		}
		last = seq
	}
	if len(msgs) != len(events) {
		t.Fatalf("%d entries, want %d", len(msgs), len(events))
	}
}

func TestAppendSkipsStaleEvents(t *testing.T) {
	r := redistest.New(t)
	t0 := time.Now()
	tests := []struct {
		name  string
		event engine.Event
		write bool
	}{
		{"first", testEvent("a", "1", 1, t0), true},
		{"later", testEvent("a", "1", 2, t0.Add(time.Second)), true},
		{"older: a lease moved", testEvent("a", "1", 3, t0), false},
		{"same time and hash: a retried write", testEvent("a", "1", 2, t0.Add(time.Second)), false},
		{"same time, new hash", testEvent("a", "1", 4, t0.Add(time.Second)), true},
		{"other key, older", testEvent("a", "2", 5, t0.Add(-time.Hour)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, s := appendEvents(t, r, testAppend, tt.event)
			if (w == 1) != tt.write || w+s != 1 {
				t.Fatalf("written %d, skipped %d; want written %v", w, s, tt.write)
			}
		})
	}
	latest, err := LatestOf(context.Background(), r.Client, Keys{Prefix: r.Prefix}, "a")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(latest, func(a, b engine.Event) int { return cmpSeq(a.Seq, b.Seq) })
	if len(latest) != 2 || string(latest[0].Data) != `{"i":4}` || string(latest[1].Data) != `{"i":5}` {
		t.Fatalf("latest %v", latest)
	}
}

func TestReplay(t *testing.T) {
	r := redistest.New(t)
	t0 := time.Now()
	small := AppendOptions{MaxLen: 100000, History: 1} // ~ trims whole nodes of 100 entries
	var seqs []uint64
	for i := range 250 {
		appendEvents(t, r, small, testEvent("a", "1", i, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	appendEvents(t, r, testAppend, testEvent("b", "1", 0, t0))
	s := newSource(t, r, nil)
	msgs, err := r.Client.XRange(context.Background(), s.keys.History("publisher_status:a:1"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) >= 250 || len(msgs) < 5 {
		t.Fatalf("history holds %d entries: want it trimmed", len(msgs))
	}
	for _, m := range msgs {
		seq, _ := SeqOf(m.ID)
		seqs = append(seqs, seq)
	}
	allB, _ := r.Client.XRange(context.Background(), s.keys.History("publisher_status:b:1"), "-", "+").Result()
	seqB, _ := SeqOf(allB[0].ID)
	n := len(seqs)

	tests := []struct {
		name     string
		key      string
		since    uint64
		max      int
		wantSeqs []uint64
		wantOK   bool
	}{
		{"within the history", "publisher_status:a:1", seqs[n-4], 10, seqs[n-3:], true},
		{"at most max", "publisher_status:a:1", seqs[n-4], 2, seqs[n-3 : n-1], true},
		{"nothing missed", "publisher_status:a:1", seqs[n-1], 10, nil, true},
		{"trimmed", "publisher_status:a:1", seqs[0] - 1, 10, seqs[:min(n, 10)], false},
		{"whole history, untrimmed", "publisher_status:b:1", 0, 10, []uint64{seqB}, true},
		{"whole history, trimmed", "publisher_status:a:1", 0, 3, seqs[:3], false},
		{"no history at all", "publisher_status:c:1", 0, 10, nil, true},
		{"not a seq of the key", "publisher_status:b:1", seqB + 1, 10, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, ok, err := s.Replay(context.Background(), tt.key, tt.since, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, e := range events {
				got = append(got, e.Seq)
			}
			if ok != tt.wantOK || !slices.Equal(got, tt.wantSeqs) {
				t.Fatalf("Replay = %v, %v; want %v, %v", got, ok, tt.wantSeqs, tt.wantOK)
			}
		})
	}

	t.Run("history expired, since is the latest", func(t *testing.T) {
		c := runSource(t, s) // loads the latest state
		defer c.stop(t)
		waitFor(t, "the latest state", func() bool { _, ok := s.Latest("publisher_status:b:1"); return ok })
		if err := r.Client.Del(context.Background(), s.keys.History("publisher_status:b:1")).Err(); err != nil {
			t.Fatal(err)
		}
		events, ok, err := s.Replay(context.Background(), "publisher_status:b:1", seqB, 10)
		if err != nil || !ok || len(events) != 0 {
			t.Fatalf("Replay = %v, %v, %v; want nothing, complete", events, ok, err)
		}
		events, ok, err = s.Replay(context.Background(), "publisher_status:b:1", 0, 10)
		if err != nil || ok || len(events) != 0 {
			t.Fatalf("Replay from 0 = %v, %v, %v; want nothing, incomplete: the key had events", events, ok, err)
		}
	})
}

func TestSourceResumesFromLatestStateAfterAGap(t *testing.T) {
	r := redistest.New(t)
	t0 := time.Now()
	s := newSource(t, r, nil)
	appendEvents(t, r, testAppend, testEvent("a", "1", 0, t0))
	c := runSource(t, s)
	waitFor(t, "the source to start", func() bool { return len(s.Keys()) == 1 })
	c.stop(t) // the position is the first entry's id

	// 1000 more events on two keys while the reader is stopped; the stream
	// keeps about 100 of them.
	tiny := AppendOptions{MaxLen: 1, History: 100}
	for i := 1; i <= 1000; i++ {
		appendEvents(t, r, tiny, testEvent("a", fmt.Sprint(1+i%2), i, t0.Add(time.Duration(i)*time.Millisecond)))
	}
	c = runSource(t, s)
	got := c.wait(t, 2)
	slices.SortFunc(got, func(a, b engine.Event) int { return cmpSeq(a.Seq, b.Seq) })
	if string(got[0].Data) != `{"i":999}` || string(got[1].Data) != `{"i":1000}` {
		t.Fatalf("after the gap: %s %s, want the latest state of both keys", got[0].Data, got[1].Data)
	}
	appendEvents(t, r, testAppend, testEvent("a", "1", 1001, t0.Add(2*time.Second)))
	if e := c.wait(t, 3)[2]; string(e.Data) != `{"i":1001}` {
		t.Fatalf("then %s, want the next event", e.Data)
	}
	if n := c.count(); n != 3 {
		t.Fatalf("%d events emitted, want 3", n)
	}
}

// TestSourceReplacedInReload: the source that replaces another in a
// reload (same pipeline resources) goes on where it stopped.
func TestSourceReplacedInReload(t *testing.T) {
	r := redistest.New(t)
	env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test", Name: "stream", Type: "redis_stream"})
	t.Cleanup(func() { closeEnv(context.Background()) })
	t0 := time.Now()
	old := newSourceIn(t, env, r, nil)
	c := runSource(t, old)
	waitFor(t, "the source to start", func() bool {
		old.st.mu.RLock()
		defer old.st.mu.RUnlock()
		return old.st.pos != ""
	})
	appendEvents(t, r, testAppend, testEvent("a", "1", 1, t0))
	c.wait(t, 1)

	// Both at once: refused.
	other := newSourceIn(t, env, r, nil)
	if err := other.Run(context.Background(), func(engine.Event) {}); err == nil || !strings.Contains(err.Error(), "another source of the pipeline reads stream") {
		t.Fatalf("second reader: %v", err)
	}

	c.stop(t)
	appendEvents(t, r, testAppend, testEvent("a", "1", 2, t0.Add(time.Second)), testEvent("b", "1", 3, t0.Add(time.Second)))
	replacement := newSourceIn(t, env, r, func(s *Source) { s.ReadCount = 1 })
	if _, ok := replacement.Latest("publisher_status:a:1"); !ok {
		t.Fatal("the replacement does not hold the latest state before it runs")
	}
	got := runSource(t, replacement).wait(t, 2)
	if string(got[0].Data) != `{"i":2}` || string(got[1].Data) != `{"i":3}` {
		t.Fatalf("the replacement emitted %s, %s; want the events after the stop", got[0].Data, got[1].Data)
	}
}
