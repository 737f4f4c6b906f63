package pearl

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/redisstream"
)

// LeaseConfig are the keys of a pearl source that let several pearld
// instances share the polling of their devices: each device is polled by
// the one instance that holds its lease in Redis, while it holds it. All
// the pearl sources of a pipeline must set the same values: the sources
// of a device share its lease within an instance.
type LeaseConfig struct {
	// LeaseRedis is the URL of the Redis server that holds the leases:
	// "redis://[user:password@]host:port/db", "rediss://..." for TLS.
	// Default "": no leases, the instance polls every device.
	LeaseRedis string `toml:"lease_redis"`
	// LeaseTTL is how long a lease outlives the last renewal of its
	// holder. The holder renews it every third of it, and stops polling
	// when it has not renewed it for three quarters of it; when an
	// instance dies, another one takes its devices over within this time.
	// Default 5s; at least 1s.
	LeaseTTL engine.Duration `toml:"lease_ttl"`
	// LeasePrefix starts the keys of the leases (PREFIX:lease:DEVICE).
	// It must be the prefix of the pipeline's redis_stream sink: a new
	// holder starts from the latest state that sink recorded
	// (PREFIX:latest:DEVICE), so that it reports changes, not a first
	// observation. Default "pearld:" and the pipeline's name.
	LeasePrefix string `toml:"lease_prefix"`
}

// DefaultLeaseTTL is the lease_ttl of a pearl source that sets none.
const DefaultLeaseTTL = 5 * time.Second

// validate checks the lease keys; it does not touch the network.
func (c *LeaseConfig) validate() error {
	if c.LeaseRedis == "" {
		if c.LeaseTTL != 0 || c.LeasePrefix != "" {
			return errors.New("lease_ttl and lease_prefix need lease_redis")
		}
		return nil
	}
	if _, err := redisstream.Options(c.LeaseRedis); err != nil {
		return fmt.Errorf("lease_redis: %w", err)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = engine.Duration(DefaultLeaseTTL)
	}
	if c.LeaseTTL.D() < time.Second {
		return fmt.Errorf("lease_ttl must be at least 1s, not %s", c.LeaseTTL)
	}
	return nil
}

// leasesFor returns the leases of clients' devices, nil when c sets no
// lease_redis. Leases are pipeline resources, shared by the sources of a
// device that agree on the lease keys.
func leasesFor(env *engine.Env, c LeaseConfig, clients []*Client) ([]*deviceLease, error) {
	if c.LeaseRedis == "" {
		return nil, nil
	}
	prefix := c.LeasePrefix
	if prefix == "" {
		prefix = redisstream.DefaultPrefix(env.Pipeline)
	}
	rdb, err := redisstream.Client(env, c.LeaseRedis)
	if err != nil {
		return nil, err
	}
	mv, err := env.Resource("pearl.leases:"+c.LeaseRedis+"|"+prefix, func() (any, error) {
		return newLeaseManager(rdb, redisstream.Keys{Prefix: prefix}, env.PipelineMetrics, env.Logger)
	})
	if err != nil {
		return nil, err
	}
	m, ok := mv.(*leaseManager)
	if !ok {
		return nil, fmt.Errorf("getting leases: resource is a %T", mv)
	}
	ttl := c.LeaseTTL.D()
	out := make([]*deviceLease, len(clients))
	for i, cl := range clients {
		v, err := env.Resource("pearl.lease:"+cl.Name()+"|"+c.LeaseRedis+"|"+prefix+"|"+ttl.String(), func() (any, error) {
			return m.lease(cl, ttl), nil
		})
		if err != nil {
			return nil, err
		}
		if out[i], ok = v.(*deviceLease); !ok {
			return nil, fmt.Errorf("getting lease of %s: resource is a %T", cl.Name(), v)
		}
	}
	return out, nil
}

// pollDevice runs start, the poll loop of a device, for as long as this
// instance may poll the device: until ctx ends without a lease (l nil);
// with one, during each term of the lease, under a context that ends with
// the term. Each term starts with the latest events of the device in
// Redis (the seed), so that start's tracker reports changes relative to
// what clients have seen; without a lease, or when they cannot be read,
// the seed is empty and the first poll is a first observation.
func pollDevice(ctx context.Context, l *deviceLease, start func(ctx context.Context, seed []engine.Event)) {
	if l == nil {
		start(ctx, nil)
		return
	}
	l.join()
	defer l.leave()
	for {
		term := l.await(ctx)
		if term == nil {
			return
		}
		run, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(term, cancel)
		start(run, l.seed(run))
		stop()
		cancel()
	}
}

// leaseManager holds the leases of one pipeline's devices on one Redis
// server: it names this instance, relays kicks between instances and
// counts leases in metrics.
type leaseManager struct {
	rdb   *redis.Client
	keys  redisstream.Keys
	token string // this instance, as lease holder: host:pid:random
	log   *slog.Logger
	held  *prometheus.GaugeVec   // device
	moves *prometheus.CounterVec // event

	mu      sync.Mutex
	clients map[string]*Client // by device, for kicks from other instances
	running int                // leases whose loop runs; kicks are relayed while > 0
	failing int                // leases whose last request to Redis failed
	since   time.Time          // when failing became positive
	stopSub context.CancelFunc
	subDone chan struct{}
}

func newLeaseManager(rdb *redis.Client, keys redisstream.Keys, reg prometheus.Registerer, log *slog.Logger) (*leaseManager, error) {
	host, _ := os.Hostname()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	m := &leaseManager{
		rdb: rdb, keys: keys, log: log,
		token:   host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b),
		clients: map[string]*Client{},
		held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pearld_pearl_lease_held",
			Help: "1 while this instance holds the poll lease of a device (and polls it), else 0.",
		}, []string{"device"}),
		moves: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_pearl_lease_changes_total",
			Help: "Poll leases this instance acquired, lost (not renewed in time, or taken by another), stopped holding (its sources stopped) or released (clean stop).",
		}, []string{"event"}),
	}
	if reg != nil {
		var err error
		if m.held, err = register(reg, m.held); err != nil {
			return nil, err
		}
		if m.moves, err = register(reg, m.moves); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// lease returns the lease of c's device and lets kicks of the device reach
// the instance that holds it.
func (m *leaseManager) lease(c *Client, ttl time.Duration) *deviceLease {
	m.mu.Lock()
	m.clients[c.Name()] = c
	m.mu.Unlock()
	c.setRelay(func() { m.relayKick(c.Name()) })
	m.held.WithLabelValues(c.Name()).Set(0)
	return &deviceLease{
		m: m, device: c.Name(), key: m.keys.Lease(c.Name()), ttl: ttl,
		log:     m.log.With("device", c.Name()),
		changed: make(chan struct{}),
	}
}

// Close forgets the metric series of the manager's devices. The engine
// calls it when the pipeline stops, after the leases were released.
func (m *leaseManager) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := range m.clients {
		m.held.DeleteLabelValues(d)
	}
	return nil
}

// started and stopped count running lease loops; kicks from other
// instances are received while one runs.
func (m *leaseManager) started() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running++
	if m.running > 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stopSub, m.subDone = cancel, make(chan struct{})
	go m.receiveKicks(ctx, m.subDone)
}

func (m *leaseManager) stopped() {
	m.mu.Lock()
	m.running--
	var stop context.CancelFunc
	var done chan struct{}
	if m.running == 0 {
		stop, done = m.stopSub, m.subDone
	}
	m.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// failed and recovered count leases whose requests to Redis fail, so that
// an outage of Redis is logged once, not once per device. recovered's ok
// is false for a lease that stopped while failing.
func (m *leaseManager) failed(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failing++
	if m.failing == 1 {
		m.since = time.Now()
		m.log.Warn("taking or renewing poll leases failed; retrying (devices stop being polled when their lease runs out)", "err", err)
	}
}

func (m *leaseManager) recovered(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failing--
	if m.failing == 0 && ok {
		m.log.Info("taking and renewing poll leases recovered", "down_for", time.Since(m.since).Round(time.Millisecond))
	}
}

// relayKick tells the other instances that a device was kicked here, so
// that the one polling it polls at once (a control call may reach any
// instance). It does not wait for Redis.
func (m *leaseManager) relayKick(device string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.rdb.Publish(ctx, m.keys.Kicks(), m.token+" "+device).Err(); err != nil {
			m.log.Warn("relaying a kick to the other instances failed", "device", device, "err", err)
		}
	}()
}

// receiveKicks kicks the devices other instances relay kicks of, until ctx
// ends. go-redis resubscribes after a connection failure.
func (m *leaseManager) receiveKicks(ctx context.Context, done chan struct{}) {
	defer close(done)
	ps := m.rdb.Subscribe(ctx, m.keys.Kicks())
	defer ps.Close()
	ch := ps.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			from, device, found := strings.Cut(msg.Payload, " ")
			if !found || from == m.token {
				continue
			}
			m.mu.Lock()
			c := m.clients[device]
			m.mu.Unlock()
			if c != nil {
				c.kickLocal()
			}
		}
	}
}

// acquireScript takes or renews a lease: it sets the key to the token,
// with a TTL of ARGV[2] ms, when the key is free or holds the token
// already. It returns {1} when the token holds the lease, else {0, the
// lease's remaining ms}.
var acquireScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1}
end
if not v and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1}
end
return {0, redis.call('PTTL', KEYS[1])}
`)

// releaseScript deletes a lease if the token holds it.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// deviceLease is the poll lease of one device. While sources use it (join
// to leave), a loop takes it when it is free and renews it while held; a
// term of ownership begins when it is taken and ends when it could not be
// renewed in time, when another instance has it, or when the sources
// stop. Close releases it.
type deviceLease struct {
	m      *leaseManager
	device string
	key    string
	ttl    time.Duration
	log    *slog.Logger

	life  sync.Mutex // serialises join and leave
	users int
	stop  context.CancelFunc
	done  chan struct{}

	mu      sync.Mutex
	term    context.Context // the current term, nil between terms
	changed chan struct{}   // closed and replaced when a term begins
}

// join starts the lease's loop for the first user; leave stops it after
// the last, ending the term without releasing the lease: a reload's new
// sources renew it (the token is the manager's), a stop releases it in
// Close once the pipeline has drained.
func (l *deviceLease) join() {
	l.life.Lock()
	defer l.life.Unlock()
	l.users++
	if l.users > 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.stop, l.done = cancel, make(chan struct{})
	l.m.started()
	go l.run(ctx, l.done)
}

func (l *deviceLease) leave() {
	l.life.Lock()
	defer l.life.Unlock()
	l.users--
	if l.users > 0 {
		return
	}
	l.stop()
	<-l.done
	l.m.stopped()
}

// await returns the current term, waiting for one to begin; nil once ctx
// ended.
func (l *deviceLease) await(ctx context.Context) context.Context {
	for ctx.Err() == nil {
		l.mu.Lock()
		term, changed := l.term, l.changed
		l.mu.Unlock()
		if term != nil && term.Err() == nil {
			return term
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
	return nil
}

// seed returns the latest events of the device recorded in Redis, nil
// when they cannot be read.
func (l *deviceLease) seed(ctx context.Context) []engine.Event {
	events, err := redisstream.LatestOf(ctx, l.m.rdb, l.m.keys, l.device)
	if err != nil && ctx.Err() == nil {
		l.log.Warn("reading the device's latest state failed; its first poll reports a first observation", "err", err)
	}
	return events
}

// run takes and renews the lease until ctx ends, and ends the term then.
func (l *deviceLease) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	var (
		term     context.Context // the current term, nil between terms
		endTerm  context.CancelFunc
		deadline *time.Timer // ends the term when the lease may have expired
		failing  bool
	)
	end := func(event, why string) {
		if term == nil {
			return
		}
		deadline.Stop()
		endTerm()
		term, endTerm = nil, nil
		l.mu.Lock()
		l.term = nil
		l.mu.Unlock()
		l.m.held.WithLabelValues(l.device).Set(0)
		l.m.moves.WithLabelValues(event).Inc()
		if event == "lost" {
			l.log.Warn("stopped polling: lost the device's lease", "reason", why)
		}
	}
	defer end("stopped", "")
	defer func() {
		if failing {
			l.m.recovered(false)
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if term != nil && term.Err() != nil {
			end("lost", "not renewed in time")
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, l.ttl/3)
		held, remaining, err := l.acquire(actx)
		cancel()
		next := l.ttl / 3
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				l.m.failed(err)
			}
			failing = true
			next = l.ttl / 10 // the deadline ends the term if this goes on
		case held:
			if failing {
				l.m.recovered(true)
			}
			failing = false
			// The lease lasts ttl from when Redis ran the script, which
			// is after sent. The term ends a quarter of ttl earlier: a
			// margin for clocks that run at different rates and for a
			// process that is not scheduled in time.
			until := time.Until(sent.Add(l.ttl - l.ttl/4))
			if term != nil && term.Err() == nil {
				deadline.Reset(until)
				break
			}
			end("lost", "not renewed in time")
			term, endTerm = context.WithCancel(ctx)
			deadline = time.AfterFunc(until, endTerm)
			l.mu.Lock()
			l.term = term
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
			l.m.held.WithLabelValues(l.device).Set(1)
			l.m.moves.WithLabelValues("acquired").Inc()
			l.log.Info("polling: acquired the device's lease", "ttl", l.ttl)
		default:
			if failing {
				l.m.recovered(true)
			}
			failing = false
			end("lost", "another instance holds it")
			// Try again when it may be free, at most a third of the TTL
			// from now (it may be released before), with jitter so that
			// instances do not ask together.
			if remaining > 0 {
				next = min(next, remaining+time.Millisecond)
			}
			next += mrand.N(l.ttl/50 + 1)
		}
		timer.Reset(next)
	}
}

// acquire runs acquireScript: held tells whether this instance holds the
// lease now; if not, remaining is how long the holder's lease lasts (0
// when unknown).
func (l *deviceLease) acquire(ctx context.Context) (held bool, remaining time.Duration, err error) {
	res, err := acquireScript.Run(ctx, l.m.rdb, []string{l.key}, l.m.token, l.ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("acquiring lease %s: %w", l.key, err)
	}
	if len(res) == 1 && res[0] == 1 {
		return true, 0, nil
	}
	if len(res) == 2 && res[1] > 0 {
		remaining = time.Duration(res[1]) * time.Millisecond
	}
	return false, remaining, nil
}

// Close releases the lease if this instance holds it, so that another
// takes the device over at once rather than after the TTL. The engine
// calls it when the pipeline stops, after its sinks drained: a new holder
// then starts from the latest state this instance wrote.
func (l *deviceLease) Close(ctx context.Context) error {
	l.life.Lock()
	users := l.users
	l.life.Unlock()
	if users > 0 {
		return nil // still polled by sources of another pipeline version
	}
	n, err := releaseScript.Run(ctx, l.m.rdb, []string{l.key}, l.m.token).Int64()
	if err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.key, err)
	}
	if n == 1 {
		l.m.moves.WithLabelValues("released").Inc()
		l.log.Info("released the device's lease")
	}
	return nil
}

// leaseOf returns leases[i], nil without leases.
func leaseOf(leases []*deviceLease, i int) *deviceLease {
	if leases == nil {
		return nil
	}
	return leases[i]
}
