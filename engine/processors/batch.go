package processors

import (
	"context"
	"fmt"
	"time"

	"github.com/pearld/pearld/engine"
)

func init() {
	engine.RegisterProcessor("batch", func() any { return NewBatch() })
}

// Defaults of the batch processor. DefaultBatchEvents is the
// REALTIME_BATCH_SIZE of the system pearld replaces.
const (
	DefaultBatchEvents = 100
	DefaultBatchDelay  = 50 * time.Millisecond
)

// Batch holds events back and passes them on together: everything held
// leaves as one batch as soon as max_events are held, or max_delay after
// the first of them arrived, whichever comes first. Order is kept, and
// what is held when the pipeline stops is passed on by the runner's final
// Flush, so nothing is lost.
//
// Sinks downstream get fewer, larger Write calls; the WebSocket hub sends
// each batch to a client in one network write, as one `batch` frame to
// clients that asked for them. A batch holds max_events events, or more
// when a single input batch crosses the limit: under load the runner
// merges queued input, and such a merged batch is passed on whole rather
// than split, because a processor returns one batch per call and holding
// the rest would only delay it.
type Batch struct {
	// MaxEvents is how many held events release a batch. Default 100.
	MaxEvents int `toml:"max_events"`
	// MaxDelay is the longest an event is held: a batch is released this
	// long after its first event arrived, however few it holds. Default
	// 50ms.
	MaxDelay engine.Duration `toml:"max_delay"`

	// Only the runner's goroutine touches these (engine.Flusher).
	held  []engine.Event
	since time.Time // when held's first event arrived
	now   func() time.Time
}

// Interface guards.
var (
	_ engine.Processor   = (*Batch)(nil)
	_ engine.Initializer = (*Batch)(nil)
	_ engine.Flusher     = (*Batch)(nil)
)

// NewBatch returns a batch processor with its defaults set.
func NewBatch() *Batch {
	return &Batch{MaxEvents: DefaultBatchEvents, MaxDelay: engine.Duration(DefaultBatchDelay)}
}

// Init checks the configuration.
func (b *Batch) Init(*engine.Env) error {
	if b.MaxEvents < 1 {
		return fmt.Errorf("max_events must be at least 1, not %d", b.MaxEvents)
	}
	if b.MaxDelay <= 0 {
		return fmt.Errorf("max_delay must be positive, not %s", b.MaxDelay)
	}
	return nil
}

// Process adds batch to the held events. It returns everything held, in
// order, once that is at least max_events, and nothing otherwise.
func (b *Batch) Process(_ context.Context, batch []engine.Event) ([]engine.Event, error) {
	if len(b.held) == 0 {
		if len(batch) >= b.MaxEvents {
			// Full already: pass it on as it is, without a copy.
			return batch, nil
		}
		if len(batch) == 0 {
			return nil, nil
		}
		b.since = b.clock()
		b.held = make([]engine.Event, 0, min(b.MaxEvents, 256))
	}
	b.held = append(b.held, batch...)
	if len(b.held) < b.MaxEvents {
		return nil, nil
	}
	return b.release(), nil
}

// NextFlush returns when the held events are due: max_delay after the
// first of them arrived, or the zero time when nothing is held.
func (b *Batch) NextFlush() time.Time {
	if len(b.held) == 0 {
		return time.Time{}
	}
	return b.since.Add(b.MaxDelay.D())
}

// Flush returns everything held, in order. The runner calls it when
// NextFlush's time has come and once more when the input is drained.
func (b *Batch) Flush(context.Context) ([]engine.Event, error) {
	return b.release(), nil
}

// release hands over the held events. The slice goes downstream, where it
// is shared and read-only, so the next batch gets a new one.
func (b *Batch) release() []engine.Event {
	out := b.held
	b.held = nil
	b.since = time.Time{}
	return out
}

func (b *Batch) clock() time.Time {
	if b.now != nil {
		return b.now()
	}
	return time.Now()
}
