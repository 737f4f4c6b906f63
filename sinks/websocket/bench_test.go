package websocket

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
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

// BenchmarkFanoutServer measures the hub's side of fan-out: each iteration
// writes one event to 200 subscribers over real connections, whose
// clients only count the bytes they receive (no frame parsing), so that
// the profile and allocations are mostly the server's. Unpaced, events
// follow each other as fast as Write takes them and writers merge what
// queued up; paced, each event is delivered to every client before the
// next is written, so that every delivery is a network write of its own,
// as at a modest event rate. cpu-us/delivery is the process's CPU time,
// clients included, per delivery.
func BenchmarkFanoutServer(b *testing.B) {
	b.Run("unpaced", func(b *testing.B) { benchmarkFanoutServer(b, false) })
	b.Run("paced", func(b *testing.B) { benchmarkFanoutServer(b, true) })
}

func benchmarkFanoutServer(b *testing.B, paced bool) {
	const clients = 200
	hs := newHarness(b, func(h *Hub) { h.MaxConnectionsPerIP = 0; h.SendQueue = 4096 })
	var conns []*wsClient
	for range clients {
		w := hs.connect("")
		w.send(subscribe("device_health", "a", nil))
		w.expect("subscribed")
		w.expect("no_cached_data")
		conns = append(conns, w)
	}
	e := event("device_health", "a", "", 1, `{"status":"online","device_id":"a","error_count":0}`)
	size := int64(len(eventFrame(typeDataUpdate, "device_health:a", &e, false).wire))
	var received atomic.Int64
	var wg sync.WaitGroup
	for _, w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc := w.c.UnderlyingConn()
			buf := make([]byte, 64<<10)
			for {
				n, err := nc.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		}()
	}
	want := func(events int) int64 { return int64(events) * clients * size }
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	cpu0 := processCPU()
	for i := range b.N {
		e.Seq = uint64(i + 1e9) // same length: every frame has the same size
		hs.write(e)
		switch {
		case paced:
			for received.Load() < want(i+1) {
				runtime.Gosched()
			}
		case i%64 == 63:
			for received.Load() < want(i+1-256) {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}
	for received.Load() < want(b.N) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	deliveries := float64(b.N) * clients
	b.ReportMetric(deliveries/time.Since(start).Seconds(), "deliveries/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/deliveries, "cpu-us/delivery")
	for _, w := range conns {
		w.c.Close()
	}
	wg.Wait()
}

// processCPU returns the CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
