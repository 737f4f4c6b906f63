package processors

import (
	"sort"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ev(device, channel string, hash uint64, at time.Time) engine.Event {
	return engine.Event{Type: "publisher_status", Device: device, Channel: channel, Hash: hash, Time: at}
}

func TestDedup(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		dedup  func() *Dedup
		events []engine.Event
		want   []int // indexes of events that pass
	}{
		{"first passes, repeats drop", func() *Dedup { return &Dedup{MaxKeys: 10} }, []engine.Event{
			ev("a", "1", 1, t0), ev("a", "1", 1, t0.Add(time.Second)), ev("a", "1", 2, t0), ev("a", "1", 2, t0), ev("a", "1", 1, t0),
		}, []int{0, 2, 4}},
		{"keys are independent", func() *Dedup { return &Dedup{MaxKeys: 10} }, []engine.Event{
			ev("a", "1", 1, t0), ev("a", "2", 1, t0), ev("b", "1", 1, t0), ev("a", "1", 1, t0),
		}, []int{0, 1, 2}},
		{"forget_after passes a stale repeat", func() *Dedup { return &Dedup{MaxKeys: 10, Forget: engine.Duration(time.Minute)} }, []engine.Event{
			ev("a", "1", 1, t0), ev("a", "1", 1, t0.Add(30*time.Second)), ev("a", "1", 1, t0.Add(61*time.Second)),
		}, []int{0, 2}},
		{"eviction forgets the oldest key", func() *Dedup { return &Dedup{MaxKeys: 2} }, []engine.Event{
			ev("a", "1", 1, t0), ev("b", "1", 1, t0.Add(time.Second)), ev("c", "1", 1, t0.Add(2*time.Second)), ev("a", "1", 1, t0.Add(3*time.Second)), ev("c", "1", 1, t0),
		}, []int{0, 1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.dedup()
			if err := d.Init(nil); err != nil {
				t.Fatal(err)
			}
			var got []int
			for i, e := range tt.events {
				out, err := d.Process(t.Context(), []engine.Event{e})
				if err != nil {
					t.Fatal(err)
				}
				if len(out) == 1 {
					got = append(got, i)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("passed %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("passed %v, want %v", got, tt.want)
				}
			}
		})
	}
	// Within one batch, order is kept and duplicates of the batch drop too.
	d := Dedup{MaxKeys: 10}
	_ = d.Init(nil)
	out, _ := d.Process(t.Context(), []engine.Event{ev("a", "1", 1, t0), ev("a", "1", 1, t0), ev("a", "2", 5, t0), ev("a", "1", 2, t0)})
	if len(out) != 3 || out[0].Hash != 1 || out[1].Channel != "2" || out[2].Hash != 2 {
		t.Errorf("batch result %+v", out)
	}
	if err := (&Dedup{MaxKeys: 0}).Init(nil); err == nil {
		t.Error("max_keys 0 accepted")
	}
}

func TestTTLCache(t *testing.T) {
	c := &TTLCache{TTL: engine.Duration(200 * time.Millisecond), MaxKeys: 100}
	if err := c.Init(nil); err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	t0 := time.Now()
	batch := []engine.Event{ev("a", "1", 1, t0), ev("a", "2", 1, t0), ev("a", "1", 2, t0.Add(time.Millisecond))}
	out, err := c.Process(t.Context(), batch)
	if err != nil || len(out) != 3 {
		t.Fatalf("Process = %d events, %v; want the batch passed on", len(out), err)
	}
	got, ok := c.Latest("publisher_status:a:1")
	if !ok || got.Hash != 2 {
		t.Fatalf("Latest = %+v, %v; want the newest event of the key", got, ok)
	}
	if _, ok := c.Latest("publisher_status:zz:1"); ok {
		t.Error("Latest found an unknown key")
	}
	keys := c.Keys()
	sort.Strings(keys)
	if len(keys) != 2 || keys[0] != "publisher_status:a:1" || keys[1] != "publisher_status:a:2" {
		t.Errorf("Keys = %v", keys)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := c.Latest("publisher_status:a:1"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entry did not expire after its TTL")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(c.Keys()) != 0 {
		t.Errorf("expired keys still listed: %v", c.Keys())
	}
	if err := (&TTLCache{TTL: 0, MaxKeys: 1}).Init(nil); err == nil {
		t.Error("ttl 0 accepted")
	}
}

func TestTTLCacheManyKeys(t *testing.T) {
	// Every key must be kept while under max_keys: a cache that refuses the
	// latest state of a key would answer a new subscriber wrongly.
	c := &TTLCache{TTL: engine.Duration(time.Minute), MaxKeys: 5000}
	if err := c.Init(nil); err != nil {
		t.Fatal(err)
	}
	defer c.Close(t.Context())
	var batch []engine.Event
	for i := range 4000 {
		batch = append(batch, ev("d", string(rune('a'+i%26))+string(rune('a'+i/26%26))+string(rune('a'+i/676)), uint64(i), time.Now()))
	}
	if _, err := c.Process(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, e := range batch {
		if _, ok := c.Latest(e.Key()); !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d keys missing from the cache", missing, len(batch))
	}
}
