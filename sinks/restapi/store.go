package restapi

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"time"
)

// store is the bounded history behind GET /api/realtime/events: the last
// max events written, each for at most ttl after it was stored.
//
// Entries live in a ring in arrival order, addressed by position: a
// counter that grows by one per entry and never wraps, so that the entry
// at position p sits at ring[p%max] while head <= p < tail. Appending is
// O(1); the oldest entry is evicted when the ring is full.
//
// Three orders make queries cheap without sorting on every call:
//   - stored times never decrease along the ring (they are clamped on
//     append), so the first unexpired entry is found by binary search and
//     expiry only ever removes entries at the head;
//   - maxSeq, the highest seq appended up to and including an entry, never
//     decreases either, so the first entry that may have seq > since is
//     found by binary search, although events of concurrent sources may
//     arrive slightly out of seq order;
//   - each entry links to the previous entry of its device, so a query for
//     one device walks that device's entries only.
//
// Expired entries are invisible to reads at once and removed by the next
// append or by cleanup, so reads never modify the store and take a read
// lock only. store is safe for concurrent use.
type store struct {
	max int
	ttl time.Duration

	mu     sync.RWMutex
	ring   []entry // grows to max, then wraps
	head   int64   // position of the oldest entry held
	tail   int64   // position the next entry takes
	maxSeq uint64  // highest seq appended so far
	last   time.Time
	// newest is the position of the newest entry of each device held.
	newest map[string]int64
	// counts are the entries held per device and type, expired ones
	// included until they are removed.
	counts map[countKey]int

	received, evicted, expired, cleared uint64
}

// entry is one stored event, encoded once for every answer it is part of.
type entry struct {
	seq      uint64
	maxSeq   uint64
	prevSame int64 // position of the previous entry of the device; -1 for none
	stored   time.Time
	typ      string
	device   string
	channel  string
	json     []byte // the event as GET /api/realtime/events shows it
}

type countKey struct{ device, typ string }

func newStore(maxEvents int, ttl time.Duration) *store {
	return &store{
		max:    maxEvents,
		ttl:    ttl,
		ring:   make([]entry, 0, min(maxEvents, 1024)),
		newest: map[string]int64{},
		counts: map[countKey]int{},
	}
}

// at returns the entry at position p, which must be held.
func (s *store) at(p int64) *entry { return &s.ring[p%int64(s.max)] }

// add stores entries in order, stamped as stored at now. It evicts the
// oldest entries beyond max and removes expired ones. It returns how many
// entries were evicted and expired by this call.
func (s *store) add(es []entry, now time.Time) (evicted, expired int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expired = s.pruneLocked(now)
	if now.Before(s.last) {
		now = s.last // the clock went back: keep stored times ordered
	}
	s.last = now
	for i := range es {
		e := es[i]
		if s.tail-s.head == int64(s.max) {
			s.dropHeadLocked()
			s.evicted++
			evicted++
		}
		p := s.tail
		e.stored = now
		e.prevSame = -1
		if q, ok := s.newest[e.device]; ok {
			e.prevSame = q
		}
		s.maxSeq = max(s.maxSeq, e.seq)
		e.maxSeq = s.maxSeq
		if idx := int(p % int64(s.max)); idx == len(s.ring) {
			s.ring = append(s.ring, e)
		} else {
			s.ring[idx] = e
		}
		s.tail++
		s.newest[e.device] = p
		s.counts[countKey{e.device, e.typ}]++
		s.received++
	}
	return evicted, expired
}

// dropHeadLocked removes the oldest entry.
func (s *store) dropHeadLocked() {
	e := s.at(s.head)
	if s.newest[e.device] == s.head {
		delete(s.newest, e.device)
	}
	k := countKey{e.device, e.typ}
	if s.counts[k]--; s.counts[k] <= 0 {
		delete(s.counts, k)
	}
	*e = entry{} // release the encoded event
	s.head++
}

// expiredAt reports whether an entry stored at t has expired at now.
func (s *store) expiredAt(t, now time.Time) bool { return now.Sub(t) >= s.ttl }

// pruneLocked removes the expired entries and returns how many.
func (s *store) pruneLocked(now time.Time) int {
	n := 0
	for s.head < s.tail && s.expiredAt(s.at(s.head).stored, now) {
		s.dropHeadLocked()
		n++
	}
	s.expired += uint64(n)
	return n
}

// firstLiveLocked returns the position of the oldest unexpired entry
// (tail when there is none).
func (s *store) firstLiveLocked(now time.Time) int64 {
	n := int(s.tail - s.head)
	i := sort.Search(n, func(i int) bool { return !s.expiredAt(s.at(s.head+int64(i)).stored, now) })
	return s.head + int64(i)
}

// cleanup removes the expired entries and returns how many it removed.
func (s *store) cleanup(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pruneLocked(now)
}

// clear removes every entry. It returns how many unexpired entries it
// removed; expired ones are counted as expired, not cleared.
func (s *store) clear(now time.Time) (cleared, expired int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expired = s.pruneLocked(now)
	for s.head < s.tail {
		s.dropHeadLocked()
		cleared++
	}
	s.cleared += uint64(cleared)
	return cleared, expired
}

// held returns how many entries are held, expired ones included.
func (s *store) held() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int(s.tail - s.head)
}

// query selects events for GET /api/realtime/events.
type query struct {
	device, channel, typ string
	since                uint64 // only seq > since; 0 for all
	limit                int
	// allow admits devices; nil admits all.
	allow func(device string) bool
}

func (q *query) match(e *entry) bool {
	return (q.device == "" || e.device == q.device) &&
		(q.channel == "" || e.channel == q.channel) &&
		(q.typ == "" || e.typ == q.typ) &&
		e.seq > q.since &&
		(q.allow == nil || q.allow(e.device))
}

// find returns the encoded events of the q.limit matching entries with
// the highest seq that have not expired at now, sorted by seq. The slices
// are never modified once stored, so callers may use them after find
// returns.
func (s *store) find(q query, now time.Time) [][]byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	lo := s.firstLiveLocked(now)
	if q.since > 0 {
		// Entries before the first whose maxSeq exceeds since all have
		// seq <= since.
		n := int(s.tail - lo)
		lo += int64(sort.Search(n, func(i int) bool { return s.at(lo+int64(i)).maxSeq > q.since }))
	}
	// Walk back from the newest. Once limit entries are found, an entry
	// whose maxSeq is below the lowest seq found ends the walk: neither it
	// nor any earlier entry can be among the highest. With events in seq
	// order that is the very next entry.
	var found []*entry
	minSeq := uint64(0)
	visit := func(p int64) bool {
		e := s.at(p)
		if len(found) >= q.limit && e.maxSeq < minSeq {
			return false
		}
		if q.match(e) {
			if len(found) == 0 || e.seq < minSeq {
				minSeq = e.seq
			}
			found = append(found, e)
		}
		return true
	}
	if q.device != "" {
		p, ok := s.newest[q.device]
		for ok && p >= lo && visit(p) {
			p = s.at(p).prevSame
		}
	} else {
		for p := s.tail - 1; p >= lo && visit(p); p-- {
		}
	}
	slices.SortFunc(found, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	found = found[max(0, len(found)-q.limit):]
	out := make([][]byte, len(found))
	for i, e := range found {
		out[i] = e.json
	}
	return out
}

// summary is what GET /api/realtime/stats reports of the events a caller
// may see.
type summary struct {
	Events    int            `json:"events_stored"`
	ByType    map[string]int `json:"by_type"`
	ByDevice  map[string]int `json:"by_device"`
	OldestSeq uint64         `json:"oldest_seq,omitempty"`
	NewestSeq uint64         `json:"newest_seq,omitempty"`
}

// totals are the store-wide counters, for callers who may see every
// device.
type totals struct {
	Held      int     `json:"events_held"`
	MaxEvents int     `json:"max_events"`
	TTL       float64 `json:"ttl_seconds"`
	Received  uint64  `json:"received"`
	Evicted   uint64  `json:"evicted"`
	Expired   uint64  `json:"expired"`
	Cleared   uint64  `json:"cleared"`
}

// summarize counts the unexpired entries of the devices allow admits (nil:
// all), in O(devices * types + expired entries still held).
func (s *store) summarize(allow func(string) bool, now time.Time) summary {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sum := summary{ByType: map[string]int{}, ByDevice: map[string]int{}}
	add := func(k countKey, n int) {
		if n == 0 || (allow != nil && !allow(k.device)) {
			return
		}
		sum.Events += n
		sum.ByType[k.typ] += n
		sum.ByDevice[k.device] += n
		if sum.ByType[k.typ] == 0 {
			delete(sum.ByType, k.typ)
		}
		if sum.ByDevice[k.device] == 0 {
			delete(sum.ByDevice, k.device)
		}
	}
	for k, n := range s.counts {
		add(k, n)
	}
	lo := s.firstLiveLocked(now)
	for p := s.head; p < lo; p++ { // expired, not yet removed
		e := s.at(p)
		add(countKey{e.device, e.typ}, -1)
	}
	for p := lo; p < s.tail; p++ {
		if e := s.at(p); allow == nil || allow(e.device) {
			sum.OldestSeq = e.seq
			break
		}
	}
	newest := int64(-1)
	for d, p := range s.newest {
		if p >= lo && p > newest && (allow == nil || allow(d)) {
			newest = p
		}
	}
	if newest >= 0 {
		sum.NewestSeq = s.at(newest).seq
	}
	return sum
}

// live counts the unexpired entries of the devices allow admits (nil:
// all).
func (s *store) live(allow func(string) bool, now time.Time) int {
	if allow != nil {
		return s.summarize(allow, now).Events
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int(s.tail - s.firstLiveLocked(now))
}

// totals returns the store-wide counters.
func (s *store) totals() totals {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return totals{
		Held: int(s.tail - s.head), MaxEvents: s.max, TTL: s.ttl.Seconds(),
		Received: s.received, Evicted: s.evicted, Expired: s.expired, Cleared: s.cleared,
	}
}
