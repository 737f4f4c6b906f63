package websocket

import (
	"sync"

	"github.com/pearld/pearld/engine"
)

// topic is the state of one subscription key: its subscribers, the last
// events written for it (for resume) and the latest one (for new
// subscribers when no upstream StateReader exists).
//
// Lock order: Hub.writeMu, then Hub.mu, then topic.mu, then client.mu.
type topic struct {
	key   string
	parts engine.KeyParts

	// Guarded by mu.
	mu      sync.Mutex
	subs    []*subscription
	ring    []*frame // history, oldest at ring[start]
	start   int
	evicted uint64 // Seq of the newest event dropped from ring; 0 if none
	latest  engine.Event
	hasLast bool
	dead    bool // removed from Hub.topics; look the key up again
}

// subscription ties a client to a topic. idx is its position in
// topic.subs, guarded by topic.mu, for O(1) removal.
type subscription struct {
	c   *client
	t   *topic
	idx int
	// floor is the seq of the latest state the client was given for the
	// key as cached_data. An upstream StateReader (ttl_cache) is ahead of
	// the hub by what is still on its way (a batch processor holds events
	// for max_delay), so that state may be newer than the hub's latest:
	// data_update frames at or below floor are not queued to the client,
	// which would get them twice or out of order. Guarded by topic.mu.
	floor uint64
}

// push appends an event's frame to the history ring.
func (t *topic) push(f *frame, capacity int) {
	if len(t.ring) < capacity {
		t.ring = append(t.ring, f)
		return
	}
	t.evicted = t.ring[t.start].seq
	t.ring[t.start] = f
	t.start = (t.start + 1) % len(t.ring)
}

// missed returns the held frames with a Seq above since, oldest first,
// and whether they are all the events of the key after since (false when
// some were dropped from the history, or since is not a Seq of this
// topic's epoch).
func (t *topic) missed(since uint64) ([]*frame, bool) {
	if since < t.evicted || since > t.lastSeq() {
		return nil, false
	}
	var out []*frame
	for i := range t.ring {
		f := t.ring[(t.start+i)%len(t.ring)]
		if f.seq > since {
			out = append(out, f)
		}
	}
	return out, true
}

// lastSeq is the Seq of the latest event written, 0 if none.
func (t *topic) lastSeq() uint64 {
	if !t.hasLast {
		return 0
	}
	return t.latest.Seq
}

// idle reports whether the topic holds nothing worth keeping.
func (t *topic) idle() bool { return len(t.subs) == 0 && !t.hasLast }

// topic returns the topic of k, creating it when create is set; nil when
// it does not exist and create is false.
func (h *Hub) topic(k *subKey, create bool) *topic {
	h.mu.RLock()
	t := h.topics[k.key]
	h.mu.RUnlock()
	if t != nil || !create {
		return t
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if t = h.topics[k.key]; t == nil {
		t = &topic{key: k.key, parts: k.KeyParts}
		h.topics[k.key] = t
	}
	return t
}

// dropTopic removes t from the hub if it is still idle.
func (h *Hub) dropTopic(t *topic) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle() && !t.dead && h.topics[t.key] == t {
		delete(h.topics, t.key)
		t.dead = true
	}
}

// publish records an event's frame in its topic and queues it to every
// subscriber. It leaves waking their writers to wakeWriters, so that a
// batch leaves in one write, except for a client that already has half its
// send queue waiting. The caller holds h.writeMu. It never blocks on a
// client.
func (h *Hub) publish(k *subKey, e *engine.Event, f *frame) {
	t := h.topic(k, true)
	t.mu.Lock()
	for t.dead {
		t.mu.Unlock()
		t = h.topic(k, true)
		t.mu.Lock()
	}
	t.push(f, h.History)
	t.latest, t.hasLast = *e, true
	for _, s := range t.subs {
		if f.seq <= s.floor {
			continue // the client has this state already, as cached_data
		}
		switch wake, n := s.c.push(f); {
		case n >= h.wakeEarly:
			s.c.signal()
		case wake:
			h.wakes = append(h.wakes, s.c)
		}
	}
	t.mu.Unlock()
}

// wakeWriters wakes the writers of the clients publish queued frames to.
// The caller holds h.writeMu.
func (h *Hub) wakeWriters() {
	for i, c := range h.wakes {
		c.signal()
		h.wakes[i] = nil
	}
	h.wakes = h.wakes[:0]
}

// subscribe adds c to the topic of k, or refreshes an existing
// subscription, and queues `subscribed` followed by the latest state, or
// by the missed events when r asks to resume. Queuing under the topic's
// lock orders these frames before any data_update written afterwards.
// Only c's reader goroutine calls it.
func (h *Hub) subscribe(c *client, k *subKey, r *resume) {
	rp := h.replayFor(k, r) // before the lock: it may ask the upstream event log
	var t *topic
	for {
		t = h.topic(k, true)
		t.mu.Lock()
		if !t.dead {
			break
		}
		t.mu.Unlock()
	}
	defer t.mu.Unlock()
	s := c.subs[k.key]
	if s == nil {
		s = &subscription{c: c, t: t, idx: len(t.subs)}
		t.subs = append(t.subs, s)
		c.subs[k.key] = s
		h.metrics.subscriptions.Inc()
	}
	c.enqueue(subscribedFrame(k))
	if r == nil {
		f := h.cachedFrame(t, k, false)
		s.floor = f.seq
		c.enqueue(f)
		return
	}
	frames, ok := t.missed(r.since)
	floor := r.since
	if rp != nil {
		frames, floor, ok = rp.resume(t, k, h.History)
	}
	ahead := !ok && rp == nil && r.since > t.lastSeq() && r.since <= h.upstreamSeq(k.key)
	if ahead {
		// The client got a state from the StateReader that has not
		// reached the hub yet, and nothing after it: nothing is missed.
		frames, ok = nil, true
	}
	if r.hasEpoch && r.epoch != h.epoch {
		ok = false
	}
	s.floor = floor
	switch {
	case !ok:
		f := h.cachedFrame(t, k, true)
		s.floor = f.seq
		c.enqueue(f)
	case len(frames) == 0 && !t.hasLast && !ahead && rp == nil:
		c.enqueue(noCachedFrame(k.key))
	case len(frames) == 1:
		c.enqueue(frames[0])
	case len(frames) > 1:
		c.enqueue(&frame{group: frames})
	}
}

// unsubscribe removes a subscription. Only the client's reader goroutine
// (or its cleanup, after the reader stopped) calls it.
func (h *Hub) unsubscribe(s *subscription) {
	t := s.t
	t.mu.Lock()
	last := len(t.subs) - 1
	moved := t.subs[last]
	t.subs[s.idx], moved.idx = moved, s.idx
	t.subs[last] = nil
	t.subs = t.subs[:last]
	idle := t.idle()
	t.mu.Unlock()
	delete(s.c.subs, t.key)
	h.metrics.subscriptions.Dec()
	if idle {
		h.dropTopic(t)
	}
}

// upstreamSeq returns the seq of the latest state of key in the upstream
// StateReader, 0 when there is none.
func (h *Hub) upstreamSeq(key string) uint64 {
	if state := h.stateReader(); state != nil {
		if e, ok := state.Latest(key); ok {
			return e.Seq
		}
	}
	return 0
}

// cachedFrame returns the cached_data frame of the latest state of k, or
// no_cached_data. The upstream StateReader is authoritative when there is
// one (its entries expire); otherwise the hub's own latest event is used.
// recovered marks the answer to a resume that could not be served. t may
// be nil; otherwise the caller holds t.mu.
func (h *Hub) cachedFrame(t *topic, k *subKey, recovered bool) *frame {
	var e engine.Event
	var ok bool
	state := h.stateReader()
	switch {
	case state != nil:
		e, ok = state.Latest(k.key)
	case t != nil:
		e, ok = t.latest, t.hasLast
	}
	if !ok {
		return noCachedFrame(k.key)
	}
	return eventFrame(typeCachedData, k.key, &e, recovered)
}

// streams returns the keys c may see, with their subscriber counts: every
// key with subscribers or a known latest state.
func (h *Hub) streams(c *client) map[string]streamInfo {
	out := map[string]streamInfo{}
	h.mu.RLock()
	for key, t := range h.topics {
		if !c.claims.AllowsDevice(t.parts.Device) {
			continue
		}
		t.mu.Lock()
		n, known := len(t.subs), !t.idle()
		t.mu.Unlock()
		if known {
			out[key] = streamInfo{Subscribers: n}
		}
	}
	h.mu.RUnlock()
	if state := h.stateReader(); state != nil {
		for _, key := range state.Keys() {
			if _, seen := out[key]; seen {
				continue
			}
			if p, err := engine.ParseKey(key); err == nil && c.claims.AllowsDevice(p.Device) {
				out[key] = streamInfo{}
			}
		}
	}
	return out
}
