package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/pearld/pearld/engine"
)

// Replay returns the events of key with a Seq above since, oldest first,
// at most max, from the key's history in Redis (PREFIX:history:KEY). ok is
// false when events after since may be missing from it: since is no
// longer in the history (it was trimmed or expired) or never was an event
// of key. since 0 asks for the whole history, which is complete when
// nothing was ever trimmed from it. Hubs call it, concurrently, for
// clients that resume beyond their own history.
func (s *Source) Replay(ctx context.Context, key string, since uint64, max int) (events []engine.Event, ok bool, err error) {
	if s.rdb == nil {
		return nil, false, errors.New("replaying: not initialised")
	}
	if max < 1 {
		return nil, false, fmt.Errorf("replaying %s: max must be at least 1, not %d", key, max)
	}
	defer func() {
		switch {
		case err != nil:
			s.metrics.replays.WithLabelValues("error").Inc()
		case ok:
			s.metrics.replays.WithLabelValues("complete").Inc()
		default:
			s.metrics.replays.WithLabelValues("incomplete").Inc()
		}
	}()
	history := s.keys.History(key)
	start := "-"
	if since > 0 {
		start = IDOf(since)
	}
	// One more than max: the entry of since itself comes first when the
	// history still holds it.
	msgs, err := s.rdb.XRangeN(ctx, history, start, "+", int64(max)+1).Result()
	if err != nil {
		return nil, false, fmt.Errorf("replaying %s: %w", key, err)
	}
	switch {
	case since == 0:
		if ok, err = s.untrimmed(ctx, key, history); err != nil {
			return nil, false, err
		}
	case len(msgs) > 0 && msgs[0].ID == start:
		msgs, ok = msgs[1:], true
	default:
		// since is not in the history. Nothing was missed if it is the
		// key's latest event and nothing came after it: its history may
		// just have expired.
		if e, held := s.Latest(key); held && e.Seq == since && len(msgs) == 0 {
			ok = true
		}
	}
	events = make([]engine.Event, 0, min(len(msgs), max))
	for _, m := range msgs {
		if len(events) == max {
			break
		}
		e, err := entryEvent(m.ID, m.Values)
		if err != nil {
			s.metrics.bad.Inc()
			return nil, false, fmt.Errorf("replaying %s: %w", key, err)
		}
		events = append(events, e)
	}
	return events, ok, nil
}

// untrimmed reports whether the history of key holds every event of key
// ever written: nothing was trimmed from it, and it did not expire.
func (s *Source) untrimmed(ctx context.Context, key, history string) (bool, error) {
	info, err := s.rdb.XInfoStream(ctx, history).Result()
	switch {
	case err == nil:
		return info.EntriesAdded == info.Length, nil
	case errors.Is(err, redis.Nil) || strings.Contains(err.Error(), "no such key"):
		// No history: complete if the key never had an event.
		_, held := s.Latest(key)
		return !held, nil
	}
	return false, fmt.Errorf("replaying %s: %w", key, err)
}
