package restapi

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// mk builds a store entry whose json is its own description, so results
// read as "device/channel/type#seq".
func mk(device, channel, typ string, seq uint64) entry {
	return entry{seq: seq, device: device, channel: channel, typ: typ,
		json: fmt.Appendf(nil, "%s/%s/%s#%d", device, channel, typ, seq)}
}

func names(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func seqsOf(bs [][]byte) []uint64 {
	out := make([]uint64, len(bs))
	for i, b := range bs {
		_, n, _ := strings.Cut(string(b), "#")
		fmt.Sscan(n, &out[i])
	}
	return out
}

func TestStoreEvictsOldest(t *testing.T) {
	s := newStore(3, time.Minute)
	now := baseTime
	var evicted int
	for i := uint64(1); i <= 5; i++ {
		ev, _ := s.add([]entry{mk("a", "1", "t", i)}, now)
		evicted += ev
	}
	if got := seqsOf(s.find(query{limit: 100}, now)); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Fatalf("held %v, want the newest three", got)
	}
	if evicted != 2 || s.totals().Evicted != 2 || s.held() != 3 {
		t.Fatalf("evicted %d (totals %+v), held %d", evicted, s.totals(), s.held())
	}
	// One batch larger than the store keeps its newest events.
	s.add([]entry{mk("b", "1", "t", 6), mk("b", "1", "t", 7), mk("b", "1", "t", 8), mk("b", "1", "t", 9)}, now)
	if got := seqsOf(s.find(query{limit: 100}, now)); !slices.Equal(got, []uint64{7, 8, 9}) {
		t.Fatalf("held %v after a large batch", got)
	}
	// Device a was evicted entirely: its chain is gone.
	if got := s.find(query{device: "a", limit: 100}, now); len(got) != 0 {
		t.Fatalf("device a still has %v", names(got))
	}
	if sum := s.summarize(nil, now); sum.Events != 3 || sum.ByDevice["b"] != 3 || len(sum.ByDevice) != 1 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestStoreTTL(t *testing.T) {
	s := newStore(100, 10*time.Second)
	t0 := baseTime
	s.add([]entry{mk("a", "1", "t", 1), mk("b", "1", "t", 2)}, t0)
	s.add([]entry{mk("a", "1", "t", 3)}, t0.Add(5*time.Second))

	at := func(d time.Duration) []uint64 { return seqsOf(s.find(query{limit: 100}, t0.Add(d))) }
	if got := at(9 * time.Second); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("before the ttl: %v", got)
	}
	// At exactly ttl an event is expired: invisible at once, though held.
	if got := at(10 * time.Second); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("at the ttl: %v", got)
	}
	if s.held() != 3 {
		t.Fatalf("reads must not remove anything: held %d", s.held())
	}
	now := t0.Add(10 * time.Second)
	if n := s.live(nil, now); n != 1 {
		t.Fatalf("live %d", n)
	}
	if sum := s.summarize(nil, now); sum.Events != 1 || !reflect.DeepEqual(sum.ByDevice, map[string]int{"a": 1}) ||
		sum.OldestSeq != 3 || sum.NewestSeq != 3 {
		t.Fatalf("summary %+v", sum)
	}
	if n := s.cleanup(now); n != 2 {
		t.Fatalf("cleanup removed %d, want 2", n)
	}
	if n := s.cleanup(now); n != 0 {
		t.Fatalf("second cleanup removed %d", n)
	}
	// A write removes what expired before it.
	_, expired := s.add([]entry{mk("c", "1", "t", 4)}, t0.Add(15*time.Second))
	if expired != 1 || s.held() != 1 || s.totals().Expired != 3 {
		t.Fatalf("expired %d, held %d, totals %+v", expired, s.held(), s.totals())
	}
}

func TestStoreClockGoesBack(t *testing.T) {
	s := newStore(10, 10*time.Second)
	s.add([]entry{mk("a", "1", "t", 1)}, baseTime.Add(5*time.Second))
	s.add([]entry{mk("a", "1", "t", 2)}, baseTime) // clock stepped back
	// Stored times stay ordered: both expire 10s after the later time.
	if got := seqsOf(s.find(query{limit: 10}, baseTime.Add(14*time.Second))); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("got %v", got)
	}
	if got := s.find(query{limit: 10}, baseTime.Add(15*time.Second)); len(got) != 0 {
		t.Fatalf("got %v", names(got))
	}
}

func TestStoreQuery(t *testing.T) {
	s := newStore(100, time.Minute)
	// Events of two sources arrive slightly out of seq order (7 before 6).
	s.add([]entry{
		mk("a", "1", "publisher_status", 1),
		mk("b", "1", "publisher_status", 2),
		mk("a", "", "device_health", 3),
		mk("a", "2", "publisher_status", 4),
		mk("b", "", "device_health", 5),
		mk("a", "1", "publisher_status", 7),
		mk("b", "1", "publisher_status", 6),
		mk("a", "1", "publisher_status", 8),
	}, baseTime)
	tests := []struct {
		name string
		q    query
		want []uint64
	}{
		{"all, by seq", query{limit: 50}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"limit keeps the highest seqs", query{limit: 3}, []uint64{6, 7, 8}},
		{"limit across out-of-order events", query{limit: 2}, []uint64{7, 8}},
		{"limit 1", query{limit: 1}, []uint64{8}},
		{"device", query{device: "a", limit: 50}, []uint64{1, 3, 4, 7, 8}},
		{"device and limit", query{device: "b", limit: 2}, []uint64{5, 6}},
		{"device and channel", query{device: "a", channel: "1", limit: 50}, []uint64{1, 7, 8}},
		{"channel", query{channel: "1", limit: 50}, []uint64{1, 2, 6, 7, 8}},
		{"type", query{typ: "device_health", limit: 50}, []uint64{3, 5}},
		{"since", query{since: 4, limit: 50}, []uint64{5, 6, 7, 8}},
		{"since before an out-of-order event", query{since: 6, limit: 50}, []uint64{7, 8}},
		{"since between out-of-order events", query{since: 5, limit: 50}, []uint64{6, 7, 8}},
		{"since and device", query{since: 6, device: "b", limit: 50}, nil},
		{"since past the newest", query{since: 8, limit: 50}, nil},
		{"since and limit", query{since: 2, limit: 2}, []uint64{7, 8}},
		{"unknown device", query{device: "zz", limit: 50}, nil},
		{"unknown type", query{typ: "stream_quality", limit: 50}, nil},
		{"allowed devices", query{limit: 50, allow: func(d string) bool { return d == "b" }}, []uint64{2, 5, 6}},
		{"allowed devices and limit", query{limit: 1, allow: func(d string) bool { return d == "b" }}, []uint64{6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seqsOf(s.find(tt.q, baseTime))
			if len(got) == 0 {
				got = nil
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStoreClear(t *testing.T) {
	s := newStore(10, 10*time.Second)
	s.add([]entry{mk("a", "1", "t", 1)}, baseTime)
	s.add([]entry{mk("a", "1", "t", 2), mk("b", "1", "t", 3)}, baseTime.Add(5*time.Second))
	cleared, expired := s.clear(baseTime.Add(12 * time.Second))
	if cleared != 2 || expired != 1 || s.held() != 0 {
		t.Fatalf("cleared %d, expired %d, held %d", cleared, expired, s.held())
	}
	if sum := s.summarize(nil, baseTime); sum.Events != 0 || len(sum.ByDevice) != 0 || sum.NewestSeq != 0 {
		t.Fatalf("summary after clear %+v", sum)
	}
	s.add([]entry{mk("a", "1", "t", 4)}, baseTime.Add(13*time.Second))
	if got := seqsOf(s.find(query{device: "a", limit: 10}, baseTime.Add(13*time.Second))); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("after clear: %v", got)
	}
	if tot := s.totals(); tot.Cleared != 2 || tot.Received != 4 || tot.Held != 1 {
		t.Fatalf("totals %+v", tot)
	}
}

func TestStoreSummaryRestricted(t *testing.T) {
	s := newStore(10, 10*time.Second)
	s.add([]entry{mk("a", "1", "x", 1), mk("b", "1", "x", 2)}, baseTime)
	s.add([]entry{mk("b", "1", "y", 3), mk("a", "1", "y", 4), mk("c", "", "y", 5)}, baseTime.Add(5*time.Second))
	now := baseTime.Add(11 * time.Second) // 1 and 2 expired
	onlyB := func(d string) bool { return d == "b" }
	got := s.summarize(onlyB, now)
	want := summary{Events: 1, ByType: map[string]int{"y": 1}, ByDevice: map[string]int{"b": 1}, OldestSeq: 3, NewestSeq: 3}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("summary %+v, want %+v", got, want)
	}
	if n := s.live(onlyB, now); n != 1 {
		t.Fatalf("live %d", n)
	}
	none := func(string) bool { return false }
	if got := s.summarize(none, now); got.Events != 0 || got.OldestSeq != 0 || got.NewestSeq != 0 {
		t.Fatalf("summary for no device %+v", got)
	}
}

// TestStoreModel runs random writes, clock steps, cleanups, clears and
// queries against the store and a plain slice, and compares every answer.
func TestStoreModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const maxEvents, ttl = 40, 10 * time.Second
	s := newStore(maxEvents, ttl)
	type rec struct {
		e  entry
		at time.Time
	}
	var model []rec
	now := baseTime
	seq := uint64(100)
	devices := []string{"a", "b", "c", "d"}
	for step := range 5000 {
		switch op := rng.IntN(20); {
		case op < 12: // a batch of nearly ordered events
			n := 1 + rng.IntN(5)
			batch := make([]entry, n)
			for i := range batch {
				batch[i] = mk(devices[rng.IntN(len(devices))], fmt.Sprint(rng.IntN(3)), []string{"x", "y"}[rng.IntN(2)], seq+uint64(i))
			}
			seq += uint64(n)
			if n > 1 && rng.IntN(3) == 0 { // two sources raced
				i := rng.IntN(n - 1)
				batch[i], batch[i+1] = batch[i+1], batch[i]
			}
			s.add(batch, now)
			for _, e := range batch {
				model = append(model, rec{e, now})
			}
			if len(model) > maxEvents {
				model = model[len(model)-maxEvents:]
			}
		case op < 16:
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		case op < 17:
			s.cleanup(now)
		case op < 18 && rng.IntN(10) == 0:
			s.clear(now)
			model = nil
		}
		q := query{limit: 1 + rng.IntN(20)}
		if rng.IntN(2) == 0 {
			q.device = devices[rng.IntN(len(devices))]
		}
		if rng.IntN(3) == 0 {
			q.channel = fmt.Sprint(rng.IntN(3))
		}
		if rng.IntN(3) == 0 {
			q.since = seq - uint64(rng.IntN(40))
		}
		if rng.IntN(4) == 0 {
			q.allow = func(d string) bool { return d != "a" }
		}
		var want []uint64
		for _, r := range model {
			if now.Sub(r.at) < ttl && q.match(&r.e) {
				want = append(want, r.e.seq)
			}
		}
		slices.Sort(want)
		want = want[max(0, len(want)-q.limit):]
		if len(want) == 0 {
			want = nil
		}
		got := seqsOf(s.find(q, now))
		if len(got) == 0 {
			got = nil
		}
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: query %+v: got %v, want %v", step, q, got, want)
		}
		live := 0
		for _, r := range model {
			if now.Sub(r.at) < ttl {
				live++
			}
		}
		if n := s.live(nil, now); n != live {
			t.Fatalf("step %d: live %d, want %d", step, n, live)
		}
		if sum := s.summarize(nil, now); sum.Events != live {
			t.Fatalf("step %d: summary counts %d, want %d", step, sum.Events, live)
		}
	}
}
