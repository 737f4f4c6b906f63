package processors

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/pearld/pearld/engine"
)

func init() {
	engine.RegisterProcessor("ttl_cache", func() any {
		return &TTLCache{TTL: engine.Duration(300 * time.Second), MaxKeys: 100000}
	})
}

// TTLCache keeps the latest event of every key for TTL and passes every
// event on unchanged. Sinks downstream find it through engine.Env.Upstream
// and read it (engine.StateReader) to answer a new subscriber at once.
type TTLCache struct {
	// TTL is how long an event stays after it was written (default 300s).
	// Sources that report state only on change should be paired with a TTL
	// longer than the time between changes, or with dedup's forget_after.
	TTL engine.Duration `toml:"ttl"`
	// MaxKeys bounds the number of keys held (default 100000).
	MaxKeys int `toml:"max_keys"`

	cache *ristretto.Cache[string, engine.Event]
	// keys tracks what is held, for Keys(); ristretto cannot enumerate.
	mu   sync.Mutex
	keys map[string]time.Time // key -> expiry
}

var (
	_ engine.Processor   = (*TTLCache)(nil)
	_ engine.Initializer = (*TTLCache)(nil)
	_ engine.Closer      = (*TTLCache)(nil)
	_ engine.StateReader = (*TTLCache)(nil)
)

// Init validates the configuration and builds the cache.
func (c *TTLCache) Init(*engine.Env) error {
	if c.TTL <= 0 {
		return fmt.Errorf("ttl must be positive, not %s", c.TTL)
	}
	if c.MaxKeys < 1 {
		return fmt.Errorf("max_keys must be at least 1, not %d", c.MaxKeys)
	}
	cache, err := ristretto.NewCache(&ristretto.Config[string, engine.Event]{
		NumCounters: int64(c.MaxKeys) * 10,
		MaxCost:     int64(c.MaxKeys),
		BufferItems: 64,
		// Every key is wanted: the latest state must never be refused by
		// the admission policy, so writes bypass it.
		IgnoreInternalCost: true,
	})
	if err != nil {
		return fmt.Errorf("building cache: %w", err)
	}
	c.cache = cache
	c.keys = make(map[string]time.Time)
	return nil
}

// Process stores the newest event of each key and returns the batch as is.
func (c *TTLCache) Process(_ context.Context, batch []engine.Event) ([]engine.Event, error) {
	now := time.Now()
	ttl := c.TTL.D()
	// Ristretto applies writes of a new key asynchronously and in no set
	// order, so each key is written once per batch: with its newest event.
	newest := make(map[string]int, len(batch))
	for i, e := range batch {
		newest[e.Key()] = i
	}
	c.mu.Lock()
	for k, i := range newest {
		if !c.cache.SetWithTTL(k, batch[i], 1, ttl) {
			// The write buffer was full under contention; let it drain and
			// try once more, the latest state must not be lost.
			c.cache.Wait()
			c.cache.SetWithTTL(k, batch[i], 1, ttl)
		}
		c.keys[k] = now.Add(ttl)
	}
	c.mu.Unlock()
	// Make the writes visible to readers before the batch moves on, so a
	// subscriber that sees an update can also read it back.
	c.cache.Wait()
	return batch, nil
}

// Latest returns the latest unexpired event of key.
func (c *TTLCache) Latest(key string) (engine.Event, bool) {
	if c.cache == nil {
		return engine.Event{}, false
	}
	return c.cache.Get(key)
}

// Keys returns the keys held and not expired.
func (c *TTLCache) Keys() []string {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.keys))
	for k, exp := range c.keys {
		if now.After(exp) {
			delete(c.keys, k)
			continue
		}
		if _, ok := c.cache.Get(k); ok {
			out = append(out, k)
		}
	}
	return out
}

// Close releases the cache.
func (c *TTLCache) Close(context.Context) error {
	if c.cache != nil {
		c.cache.Close()
	}
	return nil
}
