package websocket

import (
	"slices"
	"testing"
)

func TestResume(t *testing.T) {
	hs := newHarness(t, nil)
	w := hs.connect("")
	w.send(subscribe("publisher_status", "a", 1))
	w.expect("subscribed")
	w.expect("no_cached_data")
	hs.write(event("publisher_status", "a", "1", 1, `{}`))
	last := w.expect("data_update")["seq"].(float64)
	w.c.Close()

	hs.write(
		event("publisher_status", "a", "1", 2, `{}`),
		event("publisher_status", "a", "2", 3, `{}`), // another key
		event("publisher_status", "a", "1", 4, `{}`),
		event("device_health", "a", "", 5, `{}`),
	)
	hs.write(event("publisher_status", "a", "1", 6, `{}`), event("publisher_status", "a", "1", 7, `{}`))

	w = hs.connect("")
	epoch := w.connected["capabilities"].(map[string]any)["epoch"]
	w.send(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "a", "channel": "1", "since": last, "epoch": epoch})
	w.expect("subscribed")
	var got []map[string]any
	for range 4 {
		got = append(got, w.expect("data_update"))
	}
	if s := seqs(got); !slices.Equal(s, []uint64{2, 4, 6, 7}) {
		t.Fatalf("replayed seqs %v, want [2 4 6 7]", s)
	}
	w.sync() // exactly those four

	// Nothing missed: nothing replayed.
	w.send(map[string]any{"type": "subscribe", "dataType": "publisher_status", "device": "a", "channel": 1, "since": 7})
	w.expect("subscribed")
	w.sync()

	// Live delivery continues after a resume.
	hs.write(event("publisher_status", "a", "1", 8, `{}`))
	if m := w.expect("data_update"); m["seq"] != 8.0 {
		t.Fatalf("got %v", m)
	}
}

func TestResumeNotRecoverable(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.History = 3 })
	for seq := uint64(1); seq <= 10; seq++ {
		hs.write(event("device_health", "a", "", seq, `{}`))
	}
	tests := []struct {
		name string
		msg  map[string]any
	}{
		{"since older than history", map[string]any{"since": 2}},
		{"since from another epoch", map[string]any{"since": 9, "epoch": testEpoch + 1}},
		{"since beyond the key's events", map[string]any{"since": 99}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := hs.connect("")
			msg := subscribe("device_health", "a", nil)
			for k, v := range tt.msg {
				msg[k] = v
			}
			w.send(msg)
			w.expect("subscribed")
			m := w.expect("cached_data")
			if m["recovered"] != false || m["seq"] != 10.0 || m["cached"] != true {
				t.Fatalf("got %v, want cached_data seq 10 with recovered:false", m)
			}
			w.sync()
		})
	}

	t.Run("within history", func(t *testing.T) {
		w := hs.connect("")
		msg := subscribe("device_health", "a", nil)
		msg["since"] = 7
		w.send(msg)
		w.expect("subscribed")
		var got []map[string]any
		for range 3 {
			got = append(got, w.expect("data_update"))
		}
		if s := seqs(got); !slices.Equal(s, []uint64{8, 9, 10}) {
			t.Fatalf("replayed %v", s)
		}
		w.sync()
	})

	t.Run("no state at all", func(t *testing.T) {
		w := hs.connect("")
		msg := subscribe("device_health", "b", nil)
		msg["since"] = 3
		w.send(msg)
		w.expect("subscribed")
		w.expect("no_cached_data")
	})
}

func TestResumeLongerThanSendQueue(t *testing.T) {
	hs := newHarness(t, func(h *Hub) { h.SendQueue = 8; h.History = 50 })
	for seq := uint64(1); seq <= 40; seq++ {
		hs.write(event("device_health", "a", "", seq, `{}`))
	}
	for _, query := range []string{"", "batch=1"} {
		w := hs.connect(query)
		msg := subscribe("device_health", "a", nil)
		msg["since"] = 0
		w.send(msg)
		w.expect("subscribed")
		var got []map[string]any
		for len(got) < 40 {
			m := w.read()
			switch m["type"] {
			case "data_update":
				got = append(got, m)
			case "batch":
				for _, e := range m["events"].([]any) {
					got = append(got, e.(map[string]any))
				}
			default:
				t.Fatalf("got %v", m)
			}
		}
		if s := seqs(got); s[0] != 1 || s[39] != 40 || !slices.IsSorted(s) {
			t.Fatalf("%s: replayed %v", query, s)
		}
		w.sync()
	}
}
