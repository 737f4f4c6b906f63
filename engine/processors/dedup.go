package processors

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
)

func init() {
	engine.RegisterProcessor("dedup", func() any { return &Dedup{MaxKeys: 100000} })
}

// Dedup drops an event whose Hash equals the Hash of the last event it
// passed for the same key, so only changes flow on. The first event of a
// key always passes.
type Dedup struct {
	// MaxKeys bounds the keys remembered (default 100000). When full, the
	// key seen longest ago is forgotten; its next event passes.
	MaxKeys int `toml:"max_keys"`
	// Forget passes an event again, even unchanged, once this long has gone
	// by since the key's last passed event (default 0: never). It lets
	// downstream caches with a TTL be refreshed.
	Forget engine.Duration `toml:"forget_after"`

	mu   sync.Mutex
	last map[string]seen
}

type seen struct {
	hash uint64
	at   time.Time
}

var (
	_ engine.Processor   = (*Dedup)(nil)
	_ engine.Initializer = (*Dedup)(nil)
)

// Init checks the configuration.
func (d *Dedup) Init(*engine.Env) error {
	if d.MaxKeys < 1 {
		return fmt.Errorf("max_keys must be at least 1, not %d", d.MaxKeys)
	}
	if d.Forget < 0 {
		return fmt.Errorf("forget_after must not be negative")
	}
	d.last = make(map[string]seen)
	return nil
}

// Process returns the events of batch whose hash differs from the last one
// passed for their key, in order.
func (d *Dedup) Process(_ context.Context, batch []engine.Event) ([]engine.Event, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		d.last = make(map[string]seen)
	}
	out := batch[:0:0]
	for _, e := range batch {
		k := e.Key()
		prev, ok := d.last[k]
		if ok && prev.hash == e.Hash && (d.Forget == 0 || e.Time.Sub(prev.at) < d.Forget.D()) {
			continue
		}
		if !ok && len(d.last) >= d.MaxKeys {
			d.evictOldest()
		}
		d.last[k] = seen{hash: e.Hash, at: e.Time}
		out = append(out, e)
	}
	return out, nil
}

// evictOldest forgets the key passed longest ago. It is O(keys) but runs
// only when the table is full, which a sane max_keys makes rare.
func (d *Dedup) evictOldest() {
	var oldest string
	var at time.Time
	for k, s := range d.last {
		if oldest == "" || s.at.Before(at) {
			oldest, at = k, s.at
		}
	}
	delete(d.last, oldest)
}
