package websocket

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPublishAllocations checks that fan-out costs no allocation per
// subscriber: only the event's own frame is allocated.
func TestPublishAllocations(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.SendQueue = 1 << 20 })
	w := hs.connect("")
	w.send(subscribe("device_health", "a", nil))
	w.expect("subscribed")
	w.expect("no_cached_data")
	// Fake subscribers without connections: their queues only grow.
	k := subKey{key: "device_health:a"}
	k.Type, k.Device = "device_health", "a"
	tp := hs.hub.topic(&k, false)
	tp.mu.Lock()
	for range 1000 {
		c := &client{h: hs.hub, wake: make(chan struct{}, 1), queue: make([]*frame, 0, 1<<12)}
		tp.subs = append(tp.subs, &subscription{c: c, t: tp, idx: len(tp.subs)})
	}
	tp.mu.Unlock()
	e := event("device_health", "a", "", 1, `{"status":"online"}`)
	allocs := testing.AllocsPerRun(100, func() {
		f := eventFrame(typeDataUpdate, k.key, &e, false)
		hs.hub.writeMu.Lock()
		hs.hub.publish(&k, &e, f)
		hs.hub.wakeWriters()
		hs.hub.writeMu.Unlock()
	})
	if allocs > 4 {
		t.Fatalf("%v allocations per event delivered to 1001 subscribers", allocs)
	}
	tp.mu.Lock()
	tp.subs = tp.subs[:1]
	tp.mu.Unlock()
}

// BenchmarkFanout measures deliveries through real connections: each
// iteration writes one event to 200 subscribers.
func BenchmarkFanout(b *testing.B) {
	const clients = 200
	hs := newHarness(b, func(h *Hub) { h.MaxConnectionsPerIP = 0; h.SendQueue = 4096 })
	var received atomic.Int64
	var wg sync.WaitGroup
	var conns []*wsClient
	for range clients {
		w := hs.connect("")
		w.send(subscribe("device_health", "a", nil))
		w.expect("subscribed")
		w.expect("no_cached_data")
		conns = append(conns, w)
	}
	for _, w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := w.c.NextReader(); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	e := event("device_health", "a", "", 1, `{"status":"online","device_id":"a","error_count":0}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		e.Seq = uint64(i + 1)
		hs.write(e)
		if i%64 == 63 {
			for received.Load() < int64(i+1-256)*clients {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	for received.Load() < int64(b.N)*clients {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*clients/time.Since(start).Seconds(), "deliveries/s")
	for _, w := range conns {
		w.c.Close()
	}
	wg.Wait()
}
