package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/redisstream"
)

func init() {
	engine.RegisterSink("redis_stream", func() any { return New() })
}

// Interface guards.
var (
	_ engine.Sink        = (*Sink)(nil)
	_ engine.Initializer = (*Sink)(nil)
)

// Sink is the redis_stream sink: it appends every event it is written to
// the pipeline's stream in Redis, to its key's history, and records it as
// its key's latest state, all in one atomic call per batch (see
// redisstream.Append for the layout). The redis_stream sources of every
// instance read them back.
//
// While Redis fails, Write retries with backoff and holds the batch:
// upstream components wait (back-pressure), nothing is dropped, until the
// pipeline is stopped for good.
type Sink struct {
	// Redis is the URL of the Redis server: "redis://[user:password@]host:port/db",
	// "rediss://..." for TLS, or "unix:///path?db=N". Required.
	Redis string `toml:"redis"`
	// Prefix starts the name of every key of the pipeline in Redis; the
	// redis_stream sources that read the stream, and the leases of the
	// pearl sources, must use the same. Default "pearld:" and the
	// pipeline's name.
	Prefix string `toml:"prefix"`
	// MaxLen is about how many events the stream keeps (XADD MAXLEN ~): a
	// reader that falls further behind resumes from the latest state.
	// Default 100000.
	MaxLen int64 `toml:"max_len"`
	// History is about how many events of each key are kept for clients
	// that resume on an instance whose own history does not reach back
	// far enough. Default 100, the hub's default history.
	History int64 `toml:"history"`
	// HistoryTTL drops the history of a key that had no event for this
	// long (its latest state stays). 0 keeps it. Default 1h.
	HistoryTTL engine.Duration `toml:"history_ttl"`
	// Timeout bounds one write; a write that fails is retried. Default 5s.
	Timeout engine.Duration `toml:"timeout"`

	log     *slog.Logger
	keys    redisstream.Keys
	rdb     *redis.Client
	opts    redisstream.AppendOptions
	metrics *sinkMetrics
}

// maxChunk bounds the events of one call to Redis, which runs them as one
// script while every other client waits.
const maxChunk = 128

// Retry backoff of a failed write.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// New returns the sink with its defaults.
func New() *Sink {
	return &Sink{
		MaxLen:     100000,
		History:    100,
		HistoryTTL: engine.Duration(time.Hour),
		Timeout:    engine.Duration(5 * time.Second),
	}
}

// Init validates the configuration and builds the Redis client. It does
// not connect.
func (s *Sink) Init(env *engine.Env) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Redis == "" {
		bad("redis: required, such as \"redis://127.0.0.1:6379/0\"")
	} else if _, err := redisstream.Options(s.Redis); err != nil {
		errs = append(errs, err)
	}
	if s.MaxLen < 1000 {
		bad("max_len must be at least 1000, not %d", s.MaxLen)
	}
	if s.History < 1 {
		bad("history must be at least 1, not %d", s.History)
	}
	if s.HistoryTTL < 0 {
		bad("history_ttl must not be negative")
	}
	if s.Timeout <= 0 {
		bad("timeout must be positive, not %s", s.Timeout)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if s.Prefix == "" {
		s.Prefix = redisstream.DefaultPrefix(env.Pipeline)
	}
	rdb, err := redisstream.Client(env, s.Redis)
	if err != nil {
		return err
	}
	m, err := newSinkMetrics(env.Metrics)
	if err != nil {
		return err
	}
	s.log, s.keys, s.rdb, s.metrics = env.Logger, redisstream.Keys{Prefix: s.Prefix}, rdb, m
	s.opts = redisstream.AppendOptions{MaxLen: s.MaxLen, History: s.History, HistoryTTL: s.HistoryTTL.D()}
	return nil
}

// Write appends the batch to Redis, in order, retrying while Redis fails
// until ctx ends. Events without type or device, or whose Data is not
// valid JSON, are skipped and reported in the error; so is what ctx's end
// left unwritten.
func (s *Sink) Write(ctx context.Context, batch []engine.Event) error {
	var errs []error
	events := make([]engine.Event, 0, len(batch))
	for _, e := range batch {
		switch {
		case e.Type == "" || e.Device == "":
			errs = append(errs, fmt.Errorf("writing event seq %d: missing type or device", e.Seq))
		case len(e.Data) > 0 && !json.Valid(e.Data):
			errs = append(errs, fmt.Errorf("writing event %s seq %d: data is not valid JSON", e.Key(), e.Seq))
		default:
			events = append(events, e)
		}
	}
	for len(events) > 0 {
		n := min(len(events), maxChunk)
		if err := s.append(ctx, events[:n]); err != nil {
			errs = append(errs, fmt.Errorf("writing %d events: %w", len(events), err))
			break
		}
		events = events[n:]
	}
	return errors.Join(errs...)
}

// append writes one chunk, retrying with backoff and jitter while Redis
// fails, until ctx ends.
func (s *Sink) append(ctx context.Context, chunk []engine.Event) error {
	wait := minRetry
	var failedAt time.Time
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.Timeout.D())
		written, skipped, err := redisstream.Append(actx, s.rdb, s.keys, s.opts, chunk)
		cancel()
		if err == nil {
			s.metrics.written.Add(float64(written))
			s.metrics.stale.Add(float64(skipped))
			if attempt > 0 {
				s.log.Info("writing to redis recovered", "attempts", attempt+1,
					"down_for", time.Since(failedAt).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.metrics.retries.Inc()
		if attempt == 0 {
			failedAt = time.Now()
			s.log.Warn("writing to redis failed; retrying", "err", err, "redis", redisstream.Redacted(s.Redis))
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxRetry)
	}
}

// sinkMetrics are the sink's own metrics; pipeline and component labels
// are added by the engine.
//
//	pearld_redis_stream_written_events_total  events appended to the stream
//	pearld_redis_stream_stale_events_total    events not written: older than their key's latest
//	pearld_redis_stream_write_retries_total   failed writes, retried
type sinkMetrics struct {
	written, stale, retries prometheus.Counter
}

func newSinkMetrics(reg prometheus.Registerer) (*sinkMetrics, error) {
	m := &sinkMetrics{
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_redis_stream_written_events_total",
			Help: "Events appended to the Redis stream.",
		}),
		stale: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_redis_stream_stale_events_total",
			Help: "Events not written because their key's latest event in Redis was observed later (a device's lease moved), or is the same event (a retried write).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_redis_stream_write_retries_total",
			Help: "Writes to Redis that failed and were retried.",
		}),
	}
	var err error
	for _, c := range []*prometheus.Counter{&m.written, &m.stale, &m.retries} {
		if *c, err = engine.RegisterCollector(reg, *c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
	}
	return m, nil
}
