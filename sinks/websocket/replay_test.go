package websocket

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pearld/pearld/engine"
)

const logEpoch = 1234567

// eventLog is an upstream source that keeps its own Seq values and the
// past events of every key, like redis_stream: a Sequencer, a Replayer
// and a StateReader.
type eventLog struct {
	stateUpstream
	mu       sync.Mutex
	events   []engine.Event // every event, oldest first
	trimmed  uint64         // events with a Seq up to this one are gone
	replays  int
	epochVal int64
}

func newEventLog() *eventLog {
	return &eventLog{stateUpstream: stateUpstream{upstream{types: shippedTypes}}, epochVal: logEpoch}
}

func (l *eventLog) Run(ctx context.Context, _ func(engine.Event)) error { <-ctx.Done(); return nil }

func (l *eventLog) SeqEpoch() int64 { return l.epochVal }

// add records events as written to the log (not yet to the hub).
func (l *eventLog) add(events ...engine.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range events {
		l.events = append(l.events, e)
		l.set(e)
	}
}

func (l *eventLog) Replay(_ context.Context, key string, since uint64, max int) ([]engine.Event, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.replays++
	var out []engine.Event
	found := false
	for _, e := range l.events {
		if e.Key() != key {
			continue
		}
		found = found || e.Seq == since
		if e.Seq > since && len(out) < max {
			out = append(out, e)
		}
	}
	return out, found && since > l.trimmed, nil
}

func (l *eventLog) replayCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.replays
}

func resumeMsg(since uint64, epoch any) map[string]any {
	m := subscribe("device_health", "a", nil)
	m["since"] = since
	if epoch != nil {
		m["epoch"] = epoch
	}
	return m
}

// readUpdates reads n data_update frames and returns their seqs.
func readUpdates(w *wsClient, n int) []uint64 {
	var got []map[string]any
	for range n {
		got = append(got, w.expect("data_update"))
	}
	return seqs(got)
}

func TestResumeFromUpstreamLog(t *testing.T) {
	health := func(seq uint64) engine.Event { return event("device_health", "a", "", seq, `{}`) }
	l := newEventLog()
	hs := newHarness(t, func(h *Hub) { h.History = 5 }, l)
	// 1..10 happened before the hub started; it was written 11 and 12.
	for seq := uint64(1); seq <= 12; seq++ {
		l.add(health(seq))
	}
	hs.write(health(11), health(12))

	w := hs.connect("")
	if epoch := w.connected["capabilities"].(map[string]any)["epoch"]; epoch != float64(logEpoch) {
		t.Fatalf("connected epoch %v, want the log's %d", epoch, logEpoch)
	}

	t.Run("from before the hub started", func(t *testing.T) {
		w.send(resumeMsg(8, logEpoch))
		w.expect("subscribed")
		if s := readUpdates(w, 4); !slices.Equal(s, []uint64{9, 10, 11, 12}) {
			t.Fatalf("replayed %v, want [9 10 11 12]", s)
		}
		w.sync()
	})

	t.Run("held by the hub: no request to the log", func(t *testing.T) {
		before := l.replayCount()
		w.send(resumeMsg(11, nil))
		w.expect("subscribed")
		if s := readUpdates(w, 1); !slices.Equal(s, []uint64{12}) {
			t.Fatalf("replayed %v, want [12]", s)
		}
		w.sync()
		if l.replayCount() != before {
			t.Fatal("the hub asked the log for what its history holds")
		}
	})

	t.Run("ahead of the hub", func(t *testing.T) {
		// Another instance delivered 13 and 14; this hub has not got
		// them yet.
		l.add(health(13), health(14))
		c := hs.connect("")
		c.send(resumeMsg(13, logEpoch))
		c.expect("subscribed")
		if s := readUpdates(c, 1); !slices.Equal(s, []uint64{14}) {
			t.Fatalf("replayed %v, want [14]", s)
		}
		// 13 and 14 reach the hub now: not again to this client.
		l.add(health(15))
		hs.write(health(13), health(14), health(15))
		if s := readUpdates(c, 1); !slices.Equal(s, []uint64{15}) {
			t.Fatalf("then %v, want [15]", s)
		}
		c.sync()
	})

	t.Run("not recoverable", func(t *testing.T) {
		l.mu.Lock()
		l.trimmed = 3
		l.mu.Unlock()
		tests := []struct {
			name  string
			since uint64
			epoch any
		}{
			{"trimmed from the log", 2, nil},
			{"more missed than the history holds", 4, nil},
			{"another epoch", 13, logEpoch + 1},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := hs.connect("")
				c.send(resumeMsg(tt.since, tt.epoch))
				c.expect("subscribed")
				m := c.expect("cached_data")
				if m["recovered"] != false || m["seq"] != 15.0 {
					t.Fatalf("got %v, want cached_data seq 15 with recovered:false", m)
				}
				c.sync()
			})
		}
	})
}

func TestUpstreamEpochChecks(t *testing.T) {
	a, b := newEventLog(), newEventLog()
	b.epochVal = logEpoch + 1
	tests := []struct {
		name string
		up   []any
		want string
	}{
		{"two epochs", []any{a, b}, "inputs: the hub reads sources of different sequence epochs"},
		{"a source without its own seq", []any{a, &plainSource{}}, "inputs: the hub reads a source whose events carry their own seq (redis_stream) and one whose do not (*websocket.plainSource)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, closeEnv := engine.NewEnv(engine.EnvOptions{Upstream: tt.up, Epoch: testEpoch})
			defer closeEnv(context.Background())
			if _, err := upstreamEpoch(env); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("upstreamEpoch: %v, want %q", err, tt.want)
			}
		})
	}

	t.Run("rewire to another epoch", func(t *testing.T) {
		hs := newHarness(t, nil, a)
		env, closeEnv := engine.NewEnv(engine.EnvOptions{Upstream: []any{b}, Epoch: testEpoch})
		defer closeEnv(context.Background())
		if err := hs.hub.Rewire(env); err == nil || !strings.Contains(err.Error(), "restart pearld") {
			t.Fatalf("Rewire: %v, want a refusal", err)
		}
		env2, closeEnv2 := engine.NewEnv(engine.EnvOptions{Upstream: []any{newEventLog()}, Epoch: testEpoch})
		defer closeEnv2(context.Background())
		if err := hs.hub.Rewire(env2); err != nil {
			t.Fatalf("Rewire to the same epoch: %v", err)
		}
	})
}

type plainSource struct{}

func (plainSource) Run(context.Context, func(engine.Event)) error { return nil }
