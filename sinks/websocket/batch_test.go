package websocket

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pearld/pearld/engine"
)

// countingConn counts the Write calls made on a server-side connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// countingListener hands out countingConns; hijacked connections keep
// them, so the hub's writers write through them.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]*countingConn // by remote address
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{Conn: c}
	l.mu.Lock()
	l.conns[c.RemoteAddr().String()] = cc
	l.mu.Unlock()
	return cc, nil
}

// serverConn returns the server side of a test client's connection.
func (l *countingListener) serverConn(t testing.TB, w *wsClient) *countingConn {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.conns[w.c.LocalAddr().String()]
	if c == nil {
		t.Fatalf("no server connection for %s", w.c.LocalAddr())
	}
	return c
}

// newCountingHarness is newHarness with the hub served through a
// countingListener.
func newCountingHarness(t testing.TB, configure func(h *Hub)) (*harness, *countingListener) {
	t.Helper()
	hub := New()
	hub.Listen = "127.0.0.1:0"
	hub.JWTSecret = testSecret
	if configure != nil {
		configure(hub)
	}
	reg := prometheus.NewRegistry()
	env, closeEnv := engine.NewEnv(engine.EnvOptions{
		Pipeline: "test", Name: "live", Type: "websocket",
		Upstream: []any{&upstream{types: shippedTypes}}, Listeners: engine.NewListeners(nil), Epoch: testEpoch, Metrics: reg,
	})
	if err := hub.Init(env); err != nil {
		t.Fatalf("Init: %v", err)
	}
	srv := httptest.NewUnstartedServer(hub)
	ln := &countingListener{Listener: srv.Listener, conns: map[string]*countingConn{}}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		srv.Close()
		closeEnv(ctx)
	})
	return &harness{t: t, hub: hub, url: "ws://" + strings.TrimPrefix(srv.URL, "http://"), reg: reg}, ln
}

// TestBatchOneWritePerClient checks that a batch written to the hub
// reaches each client that keeps up in one network write: individual
// data_update frames for plain clients, one batch frame holding the same
// objects, seq included, for clients that connected with ?batch=1.
func TestBatchOneWritePerClient(t *testing.T) {
	hs, ln := newCountingHarness(t, nil)
	plain := hs.connect("")
	batch := hs.connect("batch=1")
	keys := []map[string]any{
		subscribe("publisher_status", "a", 1),
		subscribe("publisher_status", "a", "2"),
		subscribe("device_health", "a", nil),
	}
	for _, w := range []*wsClient{plain, batch} {
		for _, k := range keys {
			w.send(k)
			w.expect("subscribed")
			w.expect("no_cached_data")
		}
		w.sync()
	}
	plainConn, batchConn := ln.serverConn(t, plain), ln.serverConn(t, batch)

	seq := uint64(100)
	for round, size := range []int{1, 3, 7, 40} {
		var events []engine.Event
		for i := range size {
			seq++
			switch i % 4 {
			case 0:
				events = append(events, event("publisher_status", "a", "1", seq, `{"n":1}`))
			case 1:
				events = append(events, event("publisher_status", "a", "2", seq, `{"n":2}`))
			case 2:
				events = append(events, event("device_health", "a", "", seq, `{"status":"online"}`))
			default:
				// Nobody is subscribed to it: it must not split the batch.
				events = append(events, event("publisher_status", "b", "1", seq, `{}`))
			}
		}
		want := 0
		for _, e := range events {
			if e.Device == "a" {
				want++
			}
		}
		plainBefore, batchBefore := plainConn.writes.Load(), batchConn.writes.Load()
		hs.write(events...)

		var updates []map[string]any
		for range want {
			updates = append(updates, plain.expect("data_update"))
		}
		m := batch.expect("batch")
		var batched []map[string]any
		for _, e := range m["events"].([]any) {
			batched = append(batched, e.(map[string]any))
		}
		if !reflect.DeepEqual(batched, updates) {
			t.Fatalf("round %d: batch frame events\n%v\nwant the data_update frames\n%v", round, batched, updates)
		}
		if s := seqs(updates); len(s) != want || !slices.IsSorted(s) {
			t.Fatalf("round %d: seqs %v", round, s)
		}
		if n := plainConn.writes.Load() - plainBefore; n != 1 {
			t.Errorf("round %d: %d events took %d writes to the plain client, want 1", round, want, n)
		}
		if n := batchConn.writes.Load() - batchBefore; n != 1 {
			t.Errorf("round %d: %d events took %d writes to the batch client, want 1", round, want, n)
		}
	}
	// Nothing else was queued: the next frames are the pongs.
	plain.sync()
	batch.sync()
}

// TestWakeOnce checks when Write wakes a client's writer: once, after the
// whole batch is queued, unless the client already has half its send
// queue waiting, when its writer must start draining at once.
func TestWakeOnce(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.SendQueue = 8 })
	k := subKey{key: "device_health:a"}
	k.Type, k.Device = "device_health", "a"
	c := &client{h: hs.hub, wake: make(chan struct{}, 1)}
	tp := hs.hub.topic(&k, true)
	tp.mu.Lock()
	tp.subs = append(tp.subs, &subscription{c: c, t: tp})
	tp.mu.Unlock()
	woken := func() bool {
		select {
		case <-c.wake:
			return true
		default:
			return false
		}
	}
	h := hs.hub
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	for i := range 5 {
		e := event("device_health", "a", "", uint64(i+1), `{}`)
		h.publish(&k, &e, eventFrame(typeDataUpdate, k.key, &e, false))
		// Half of send_queue 8 is 4: the 4th and 5th frames wake it.
		if got, want := woken(), i >= 3; got != want {
			t.Fatalf("after frame %d: woken %v, want %v", i+1, got, want)
		}
	}
	h.wakeWriters()
	if !woken() {
		t.Fatal("not woken at the end of the batch")
	}
	if len(h.wakes) != 0 {
		t.Fatalf("%d clients left to wake", len(h.wakes))
	}
	tp.mu.Lock()
	tp.subs = nil
	tp.mu.Unlock()
}

// TestAnyDataType checks the convention for upstream sources that may
// emit any data type, such as the webhook source: DataTypes containing
// "*", or returning nil.
func TestAnyDataType(t *testing.T) {
	tests := []struct {
		name  string
		types []string
		any   bool
	}{
		{"star", []string{anyDataType}, true},
		{"star among others", []string{"encoder_alarm", anyDataType}, true},
		{"nil declares nothing", nil, true},
		{"empty declares none", []string{}, false},
		{"a list", []string{"publisher_status"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := newHarness(t, nil, &upstream{types: tt.types})
			w := hs.connect("")
			if got := w.connected["capabilities"].(map[string]any)["dataTypes"]; strings.Contains(toJSON(t, got), anyDataType) {
				t.Fatalf("capabilities list %v", got)
			}
			w.send(subscribe("encoder_alarm", "studio-z", nil))
			if tt.any {
				w.expect("subscribed")
				w.expect("no_cached_data")
			} else {
				w.expectError(codeInvalidParams)
			}
			// Malformed data types stay refused.
			w.send(subscribe("encoder:alarm", "studio-z", nil))
			w.expectError(codeInvalidParams)
		})
	}
}

func toJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
