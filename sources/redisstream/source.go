package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pearld/pearld/engine"
)

func init() {
	engine.RegisterSource("redis_stream", func() any { return New() })
}

// Interface guards.
var (
	_ engine.Source      = (*Source)(nil)
	_ engine.Initializer = (*Source)(nil)
	_ engine.DataTyper   = (*Source)(nil)
	_ engine.StateReader = (*Source)(nil)
	_ engine.Sequencer   = (*Source)(nil)
	_ engine.Replayer    = (*Source)(nil)
)

// Source is the redis_stream source: it emits every event of a pipeline's
// stream in Redis, as the redis_stream sinks of the polling instances
// wrote them, with the Seq of their stream ids. Every instance reading the
// stream therefore gives an event the same Seq (engine.Sequencer), and a
// client may resume on any of them. It holds the latest event of every
// key (engine.StateReader), loaded from Redis when it starts and kept
// current from the stream, and replays a key's past events from the key's
// history in Redis (engine.Replayer) for hubs whose own history does not
// reach back far enough.
//
// It reads with XREAD BLOCK, without a consumer group: every instance
// needs every event. It starts at the end of the stream; the latest state
// covers what came before.
type Source struct {
	// Redis is the URL of the Redis server: "redis://[user:password@]host:port/db",
	// "rediss://..." for TLS, or "unix:///path?db=N". Required.
	Redis string `toml:"redis"`
	// Prefix starts the name of every key of the pipeline in Redis; it must
	// be the prefix of the redis_stream sink that writes the stream.
	// Default "pearld:" and the pipeline's name.
	Prefix string `toml:"prefix"`
	// Types are the data types the stream carries: hubs refuse
	// subscriptions to others. Default ["*"]: any data type.
	Types []string `toml:"data_types"`
	// ReadCount is how many entries one read takes at most. Default 500.
	ReadCount int `toml:"read_count"`

	log     *slog.Logger
	keys    Keys
	rdb     *redis.Client
	opts    *redis.Options
	epoch   int64
	metrics *sourceMetrics
	st      *readerState
}

// readerState is what a source knows of its stream. It is a pipeline
// resource, so that it outlives the source: a restart of Run, or the
// source that replaces this one in a reload (same redis and prefix), goes
// on where it stopped, skipping nothing and emitting nothing twice.
type readerState struct {
	mu      sync.RWMutex
	latest  map[string]engine.Event // the latest event of every key
	running bool                    // a source's Run uses the state

	// pos is the id of the last entry read, "" before the first run and
	// "0-0" for the start of the stream. Only the running source sets it
	// (with setPos, for readers elsewhere) and reads it without mu.
	pos string
}

func (st *readerState) setPos(pos string) {
	st.mu.Lock()
	st.pos = pos
	st.mu.Unlock()
}

// blockFor bounds one XREAD BLOCK; the wait is cut short when Run stops.
const blockFor = 10 * time.Second

// New returns the source with its defaults.
func New() *Source {
	return &Source{Types: []string{engine.AnyDataType}, ReadCount: 500}
}

// Init validates the configuration and builds the Redis client. It does
// not connect.
func (s *Source) Init(env *engine.Env) error {
	if s.Redis == "" {
		return errors.New("redis: required, such as \"redis://127.0.0.1:6379/0\"")
	}
	if s.ReadCount < 1 {
		return fmt.Errorf("read_count must be at least 1, not %d", s.ReadCount)
	}
	opts, err := Options(s.Redis)
	if err != nil {
		return err
	}
	if s.Prefix == "" {
		s.Prefix = DefaultPrefix(env.Pipeline)
	}
	rdb, err := Client(env, s.Redis)
	if err != nil {
		return err
	}
	m, err := newSourceMetrics(env.Metrics)
	if err != nil {
		return err
	}
	v, err := env.Resource("redis_stream.reader:"+s.Redis+"|"+s.Prefix, func() (any, error) {
		return &readerState{latest: map[string]engine.Event{}}, nil
	})
	if err != nil {
		return err
	}
	st, ok := v.(*readerState)
	if !ok {
		return fmt.Errorf("getting the reader's state: resource is a %T", v)
	}
	s.log, s.keys, s.rdb, s.opts, s.metrics, s.st = env.Logger, Keys{Prefix: s.Prefix}, rdb, opts, m, st
	s.epoch = s.keys.Epoch()
	return nil
}

// DataTypes returns the configured data types.
func (s *Source) DataTypes() []string { return s.Types }

// SeqEpoch returns the epoch of the stream's Seq values: the same on every
// instance that reads the stream (see Keys.Epoch).
func (s *Source) SeqEpoch() int64 { return s.epoch }

// Latest returns the latest event of key.
func (s *Source) Latest(key string) (engine.Event, bool) {
	if s.st == nil {
		return engine.Event{}, false
	}
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	e, ok := s.st.latest[key]
	return e, ok
}

// Keys returns the keys whose latest event is held.
func (s *Source) Keys() []string {
	if s.st == nil {
		return nil
	}
	s.st.mu.RLock()
	defer s.st.mu.RUnlock()
	out := make([]string, 0, len(s.st.latest))
	for k := range s.st.latest {
		out = append(out, k)
	}
	return out
}

// Run reads the stream until ctx ends. On the first run it starts at the
// end of the stream, after loading the latest state; a run restarted
// after an error, or the run of the source that replaced this one in a
// reload, goes on where the last one stopped. It returns an error when
// Redis fails, and nil once ctx ended.
func (s *Source) Run(ctx context.Context, emit func(engine.Event)) error {
	if s.rdb == nil {
		return errors.New("running redis_stream: not initialised")
	}
	s.st.mu.Lock()
	if s.st.running {
		s.st.mu.Unlock()
		return fmt.Errorf("running redis_stream: another source of the pipeline reads stream %s", s.keys.Stream())
	}
	s.st.running = true
	s.st.mu.Unlock()
	defer func() {
		s.st.mu.Lock()
		s.st.running = false
		s.st.mu.Unlock()
	}()
	if s.st.pos == "" {
		pos, err := s.tail(ctx)
		if err != nil {
			return stopped(ctx, err)
		}
		if err := s.load(ctx, nil); err != nil {
			return stopped(ctx, err)
		}
		s.st.setPos(pos)
		s.log.Info("reading stream", "stream", s.keys.Stream(), "from", pos, "keys", len(s.Keys()),
			"redis", Redacted(s.Redis))
	}
	// Blocking reads get a client of their own, closed when ctx ends: a
	// context does not interrupt a blocked read, closing its connection
	// does.
	bopts := *s.opts
	bopts.PoolSize, bopts.MinIdleConns, bopts.MaxIdleConns = 1, 0, 1
	blocking := redis.NewClient(&bopts)
	defer blocking.Close()
	stop := context.AfterFunc(ctx, func() { _ = blocking.Close() })
	defer stop()

	for {
		n, err := s.read(ctx, emit)
		if err != nil {
			return stopped(ctx, err)
		}
		if n > 0 {
			continue
		}
		// At the end of the stream: wait for more.
		err = blocking.XRead(ctx, &redis.XReadArgs{Streams: []string{s.keys.Stream(), s.st.pos}, Count: 1, Block: blockFor}).Err()
		if err != nil && !errors.Is(err, redis.Nil) {
			return stopped(ctx, fmt.Errorf("waiting on stream %s: %w", s.keys.Stream(), err))
		}
	}
}

// stopped returns nil once ctx ended (the error is then the stop's), else
// err.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// readScript returns the first and last ids of the stream and up to
// ARGV[2] entries after ARGV[1], at one instant: when the first id is
// past the position, entries after the position may have been trimmed
// before they were read.
var readScript = redis.NewScript(`
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first == 0 then
  return {'', '', {}}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
return {first[1][1], last[1][1], redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])}
`)

// read emits the entries after s.st.pos, up to ReadCount, and returns how
// many it read.
func (s *Source) read(ctx context.Context, emit func(engine.Event)) (int, error) {
	stream := s.keys.Stream()
	res, err := readScript.Run(ctx, s.rdb, []string{stream}, s.st.pos, s.ReadCount).Slice()
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	first, last, entries, err := parseRead(res)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", stream, err)
	}
	switch {
	case first == "":
		return 0, nil // no stream yet, or it was deleted: wait for one
	case compareIDs(last, s.st.pos) < 0:
		// The stream was deleted and started again, with ids below the
		// ones already emitted: Seq values went back, which clients cannot
		// follow. Start from the new stream's beginning and say so.
		s.metrics.gaps.Inc()
		s.log.Error("stream restarted below the position read: restart every pearld instance of the cluster so that clients start over",
			"stream", stream, "position", s.st.pos, "last", last)
		s.st.mu.Lock()
		clear(s.st.latest)
		s.st.mu.Unlock()
		return s.resync(ctx, "0-0", emit)
	case s.st.pos != "0-0" && compareIDs(first, s.st.pos) > 0:
		// The entry at the position was trimmed: this reader fell more
		// than max_len entries behind, or the stream was started again.
		// Entries after it may be lost; the latest state is not.
		s.metrics.gaps.Inc()
		s.log.Warn("entries may have been trimmed before they were read; resuming from the latest state",
			"stream", stream, "position", s.st.pos, "first", first)
		return s.resync(ctx, last, emit)
	}
	for _, en := range entries {
		e, err := entryEvent(en.ID, en.Values)
		if err != nil {
			s.metrics.bad.Inc()
			s.log.Warn("skipping stream entry", "err", err)
		} else {
			s.deliver(e, emit)
		}
		s.st.setPos(en.ID)
	}
	if n := len(entries); n > 0 {
		if seq, ok := SeqOf(entries[n-1].ID); ok {
			s.metrics.lag.Set(time.Since(time.UnixMilli(int64(seq / seqPerMilli))).Seconds())
		}
	}
	return len(entries), nil
}

// resync moves the position to pos after emitting the latest state of
// every key that is newer than the one held.
func (s *Source) resync(ctx context.Context, pos string, emit func(engine.Event)) (int, error) {
	if err := s.load(ctx, emit); err != nil {
		return 0, err
	}
	s.st.setPos(pos)
	return 1, nil // read again at once
}

// deliver holds e as its key's latest event and emits it, unless an event
// of its key with that Seq or a later one is held already (it came with
// the latest state).
func (s *Source) deliver(e engine.Event, emit func(engine.Event)) {
	key := e.Key()
	s.st.mu.Lock()
	if old, ok := s.st.latest[key]; ok && old.Seq >= e.Seq {
		s.st.mu.Unlock()
		return
	}
	s.st.latest[key] = e
	s.st.mu.Unlock()
	emit(e)
}

// tail returns the id of the stream's last entry, "0-0" when it has none.
func (s *Source) tail(ctx context.Context) (string, error) {
	stream := s.keys.Stream()
	last, err := s.rdb.XRevRangeN(ctx, stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("reading the end of stream %s: %w", stream, err)
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// loadChunk is how many devices' latest state one round trip reads.
const loadChunk = 200

// load reads the latest state of every device and holds every event newer
// than the one held of its key; with emit, it emits them too, oldest
// first.
func (s *Source) load(ctx context.Context, emit func(engine.Event)) error {
	devices, err := s.rdb.SMembers(ctx, s.keys.Devices()).Result()
	if err != nil {
		return fmt.Errorf("loading latest state: %w", err)
	}
	var events []engine.Event
	for chunk := range slices.Chunk(devices, loadChunk) {
		cmds := make([]*redis.MapStringStringCmd, len(chunk))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, d := range chunk {
				cmds[i] = p.HGetAll(ctx, s.keys.Latest(d))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("loading latest state: %w", err)
		}
		for _, c := range cmds {
			for key, v := range c.Val() {
				e, err := decodeRecord(v)
				if err != nil {
					s.metrics.bad.Inc()
					s.log.Warn("skipping latest state", "key", key, "err", err)
					continue
				}
				events = append(events, e)
			}
		}
	}
	slices.SortFunc(events, func(a, b engine.Event) int { return cmpSeq(a.Seq, b.Seq) })
	for _, e := range events {
		if emit != nil {
			s.deliver(e, emit)
			continue
		}
		key := e.Key()
		s.st.mu.Lock()
		if old, ok := s.st.latest[key]; !ok || old.Seq < e.Seq {
			s.st.latest[key] = e
		}
		s.st.mu.Unlock()
	}
	return nil
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseRead decodes the answer of readScript.
func parseRead(res []any) (first, last string, entries []redis.XMessage, err error) {
	if len(res) != 3 {
		return "", "", nil, fmt.Errorf("unexpected answer of %d values", len(res))
	}
	first, _ = res[0].(string)
	last, _ = res[1].(string)
	raw, _ := res[2].([]any)
	entries = make([]redis.XMessage, 0, len(raw))
	for _, r := range raw {
		pair, ok := r.([]any)
		if !ok || len(pair) != 2 {
			return "", "", nil, errors.New("unexpected entry in the answer")
		}
		id, _ := pair[0].(string)
		fv, _ := pair[1].([]any)
		values := make(map[string]any, len(fv)/2)
		for i := 0; i+1 < len(fv); i += 2 {
			if k, ok := fv[i].(string); ok {
				values[k] = fv[i+1]
			}
		}
		entries = append(entries, redis.XMessage{ID: id, Values: values})
	}
	return first, last, entries, nil
}

// sourceMetrics are the source's own metrics; pipeline and component
// labels are added by the engine.
//
//	pearld_redis_stream_gaps_total          times the reader found entries trimmed before it read them
//	pearld_redis_stream_bad_entries_total   entries and latest states that did not decode
//	pearld_redis_stream_lag_seconds         age of the last entry read, by the Redis server's clock
//	pearld_redis_stream_replays_total{result}  replays for hubs: complete, incomplete, error
type sourceMetrics struct {
	gaps    prometheus.Counter
	bad     prometheus.Counter
	lag     prometheus.Gauge
	replays *prometheus.CounterVec
}

func newSourceMetrics(reg prometheus.Registerer) (*sourceMetrics, error) {
	m := &sourceMetrics{
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_redis_stream_gaps_total",
			Help: "Times a redis_stream reader found entries trimmed, or the stream restarted, before it read them; it then resumed from the latest state.",
		}),
		bad: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_redis_stream_bad_entries_total",
			Help: "Stream entries and latest states that did not decode and were skipped.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pearld_redis_stream_lag_seconds",
			Help: "Age of the last stream entry read, by the Redis server's clock.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_redis_stream_replays_total",
			Help: "Replays of a key's past events for hubs, by result: complete, incomplete (history trimmed), error.",
		}, []string{"result"}),
	}
	var err error
	if m.gaps, err = engine.RegisterCollector(reg, m.gaps); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if m.bad, err = engine.RegisterCollector(reg, m.bad); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if m.lag, err = engine.RegisterCollector(reg, m.lag); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	if m.replays, err = engine.RegisterCollector(reg, m.replays); err != nil {
		return nil, fmt.Errorf("registering metrics: %w", err)
	}
	return m, nil
}
