package websocket

import "time"

// pingSlots is how many groups the pinger splits the clients into: every
// PingInterval/pingSlots it pings one group, so that the pings of many
// clients are spread over the interval rather than sent in one burst.
const pingSlots = 8

// startPinger starts the hub's pinger with its first client. One
// goroutine and one ticker serve every connection, instead of a ticker
// per connection. The caller holds h.clientsMu.
func (h *Hub) startPinger() {
	if h.pinging {
		return
	}
	h.pinging = true
	h.wg.Add(1)
	go h.pingLoop()
}

// pingLoop pings each client every PingInterval until the hub closes. A
// client that answers nothing, not even a pong, is dropped by its
// reader's deadline (pongWait).
func (h *Hub) pingLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.PingInterval.D() / pingSlots)
	defer t.Stop()
	var due []*client
	for slot := 0; ; slot = (slot + 1) % pingSlots {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		h.clientsMu.Lock()
		for c := range h.clients {
			if c.slot == slot {
				due = append(due, c)
			}
		}
		h.clientsMu.Unlock()
		for i, c := range due {
			c.ping()
			due[i] = nil
		}
		due = due[:0]
	}
}
