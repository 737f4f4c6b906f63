package websocket

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pearld/pearld/engine"
)

// TestPingKeepsClientsAlive checks the hub's one pinger: an idle client
// that answers pings is pinged about every ping_interval and stays
// connected well past the two intervals a silent client gets.
func TestPingKeepsClientsAlive(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.PingInterval = engine.Duration(100 * time.Millisecond) })
	w := hs.connect("")
	var pings atomic.Int32
	w.c.SetPingHandler(func(p string) error {
		pings.Add(1)
		return w.c.WriteControl(websocket.PongMessage, []byte(p), time.Now().Add(time.Second))
	})
	// Reading runs the ping handler; nothing else comes.
	_ = w.c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	_, _, err := w.c.ReadMessage()
	if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() {
		t.Fatalf("the connection ended: %v", err)
	}
	// About 7; a busy machine may delay some, none may come twice.
	if n := pings.Load(); n < 2 || n > 10 {
		t.Fatalf("%d pings in 700ms at a 100ms interval", n)
	}
}

// TestSilentClientDropped checks that a client that answers nothing, not
// even a ping, is dropped after two ping intervals.
func TestSilentClientDropped(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.PingInterval = engine.Duration(100 * time.Millisecond) })
	w := hs.connect("")
	w.c.SetPingHandler(func(string) error { return nil }) // no pong
	start := time.Now()
	_ = w.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := w.c.ReadMessage()
	if err == nil {
		t.Fatal("a frame arrived")
	}
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatal("the silent client was not dropped within 3s")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("dropped after %v, before two intervals", d)
	}
}

// TestIdleClientsHaveNoWriter checks what an idle connection costs in
// goroutines: its reader only (and the hub's one pinger), no writer and no
// ticker of its own.
func TestIdleClientsHaveNoWriter(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.MaxConnectionsPerIP = 0 })
	before := runtime.NumGoroutine()
	const n = 20
	for range n {
		w := hs.connect("")
		w.send(subscribe("device_health", "a", nil))
		w.expect("subscribed")
		w.expect("no_cached_data")
	}
	hs.write(event("device_health", "a", "", 1, `{}`))
	// Writers end once they have written; wait for that.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := runtime.NumGoroutine() - before
		if got <= n+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines for %d idle clients, want at most %d (a reader each and the pinger)", got, n, n+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
