package pearl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/pearld/pearld/engine"
)

// TypePublisherStatus is the data type of the events of
// pearl_publisher_status.
const TypePublisherStatus = "publisher_status"

func init() {
	engine.RegisterSource("pearl_publisher_status", func() any { return NewPublisherStatusSource() })
}

// Interface guards.
var (
	_ engine.Source      = (*PublisherStatusSource)(nil)
	_ engine.Initializer = (*PublisherStatusSource)(nil)
	_ engine.DataTyper   = (*PublisherStatusSource)(nil)
)

// PublisherStatusSource is the pearl_publisher_status source: it polls the
// publishers of every channel of its devices, with one
// GET /channels?publishers=true&publishers-status=true per device and
// poll, and emits a publisher_status event for every channel whose
// publishers changed state (is_configured, started, state or description).
// The first successful poll of a channel emits its state with no changes,
// so that caches start with it. While a device fails, it emits nothing
// (pearl_device_health reports it); once the device answers again, it
// compares with the last state it knew.
type PublisherStatusSource struct {
	// Devices are names or glob patterns of the pipeline's devices;
	// default (empty or "*") all.
	Devices []string `toml:"devices"`
	// Interval between polls; default 5s.
	Interval engine.Duration `toml:"interval"`
	// FastInterval between polls after a control call or while a
	// publisher is starting; default 250ms, or the interval when that is
	// shorter.
	FastInterval engine.Duration `toml:"fast_interval"`
	// MaxBackoff is the longest wait between polls of a failing device;
	// default 60s.
	MaxBackoff engine.Duration `toml:"max_backoff"`
	// LeaseConfig (lease_redis, lease_ttl, lease_prefix) shares the
	// polling of the devices among pearld instances; default off.
	LeaseConfig

	log     *slog.Logger
	clients []*Client
	leases  []*deviceLease // nil without lease_redis
}

const defaultFastInterval = engine.Duration(250 * time.Millisecond)

// NewPublisherStatusSource returns the source with its defaults.
func NewPublisherStatusSource() *PublisherStatusSource {
	return &PublisherStatusSource{
		Interval:     engine.Duration(5 * time.Second),
		FastInterval: defaultFastInterval,
		MaxBackoff:   engine.Duration(DefaultMaxBackoff),
	}
}

// Init validates the configuration and gets the devices' clients. It does
// not touch the network.
func (s *PublisherStatusSource) Init(env *engine.Env) error {
	if s.FastInterval == defaultFastInterval && s.Interval > 0 && s.Interval < s.FastInterval {
		s.FastInterval = s.Interval
	}
	switch {
	case s.Interval <= 0:
		return fmt.Errorf("interval must be positive, not %s", s.Interval)
	case s.FastInterval <= 0:
		return fmt.Errorf("fast_interval must be positive, not %s", s.FastInterval)
	case s.FastInterval > s.Interval:
		return fmt.Errorf("fast_interval (%s) must not exceed interval (%s)", s.FastInterval, s.Interval)
	case s.MaxBackoff < s.Interval:
		return fmt.Errorf("max_backoff (%s) must not be less than interval (%s)", s.MaxBackoff, s.Interval)
	}
	if err := s.LeaseConfig.validate(); err != nil {
		return err
	}
	clients, err := clientsFor(env, s.Devices)
	if err != nil {
		return err
	}
	leases, err := leasesFor(env, s.LeaseConfig, clients)
	if err != nil {
		return err
	}
	s.log, s.clients, s.leases = env.Logger, clients, leases
	return nil
}

// clientsFor resolves device patterns to the devices' shared clients.
func clientsFor(env *engine.Env, patterns []string) ([]*Client, error) {
	devices, err := env.MatchDevices(patterns)
	if err != nil {
		return nil, err
	}
	clients := make([]*Client, 0, len(devices))
	for _, d := range devices {
		c, err := ClientFor(env, d)
		if err != nil {
			return nil, err
		}
		clients = append(clients, c)
	}
	return clients, nil
}

// DataTypes returns ["publisher_status"].
func (s *PublisherStatusSource) DataTypes() []string { return []string{TypePublisherStatus} }

// Run polls every device from its own goroutine until ctx ends, then
// returns nil; with leases, each device while this instance holds its
// lease. A failing device never stops or delays the others.
func (s *PublisherStatusSource) Run(ctx context.Context, emit func(engine.Event)) error {
	if s.log == nil {
		return errors.New("running pearl_publisher_status: not initialised")
	}
	var wg sync.WaitGroup
	for i, c := range s.clients {
		w := &publisherWatcher{
			client: c,
			emit:   emit,
			log:    s.log.With("device", c.Name()),
		}
		loop := &pollLoop{
			client:     c,
			poll:       w.poll,
			interval:   s.Interval.D(),
			fast:       s.FastInterval.D(),
			maxBackoff: s.MaxBackoff.D(),
			minGap:     s.FastInterval.D(),
		}
		wg.Go(func() {
			pollDevice(ctx, leaseOf(s.leases, i), func(ctx context.Context, seed []engine.Event) {
				w.tracker = newPublisherTracker(c.Name(), c.Host())
				w.tracker.seed(seed)
				loop.run(ctx)
			})
		})
	}
	wg.Wait()
	return nil
}

// publisherWatcher polls one device for the source.
type publisherWatcher struct {
	client  *Client
	tracker *publisherTracker
	emit    func(engine.Event)
	log     *slog.Logger

	failing    bool
	failReason string
	failures   int
	failedAt   time.Time
}

var statusQuery = ChannelsOptions{Publishers: true, Status: true}

func (w *publisherWatcher) poll(ctx context.Context) (bool, error) {
	chans, err := w.client.Channels(ctx, statusQuery)
	if err != nil {
		if ctx.Err() == nil {
			w.failed(err)
		}
		return false, err
	}
	if w.failing {
		w.log.Info("polling publishers recovered",
			"failures", w.failures, "down_for", time.Since(w.failedAt).Round(time.Millisecond))
		w.failing, w.failReason, w.failures = false, "", 0
	}
	events, busy := w.tracker.observe(chans, time.Now())
	for _, ev := range events {
		w.emit(ev)
	}
	return busy, nil
}

// failed logs the first failure, and a change of its reason, not every one.
func (w *publisherWatcher) failed(err error) {
	w.failures++
	reason := ReasonOf(err)
	if w.failing && reason == w.failReason {
		return
	}
	if !w.failing {
		w.failedAt = time.Now()
	}
	w.failing, w.failReason = true, reason
	w.log.Warn("polling publishers failed", "err", err)
}

// PublisherStatusData is the data of a publisher_status event.
type PublisherStatusData struct {
	// Publishers are every publisher of the channel, in the device's
	// order; empty when the channel was removed.
	Publishers []PublisherEntry `json:"publishers"`
	// Changes since the last event of the channel; empty on the first.
	Changes   []PublisherChange `json:"changes"`
	DeviceID  string            `json:"device_id"`
	DeviceIP  string            `json:"device_ip"`
	Channel   string            `json:"channel"`
	FetchedAt string            `json:"fetched_at"` // ISO-8601 UTC with milliseconds
}

// PublisherEntry is a publisher in PublisherStatusData.
type PublisherEntry struct {
	ID     string     `json:"id"`
	Name   string     `json:"name"`
	Type   string     `json:"type"`
	Status StatusCore `json:"status"`
}

// StatusCore is the part of a publisher's status that defines a change.
type StatusCore struct {
	IsConfigured bool   `json:"is_configured"`
	Started      bool   `json:"started"`
	State        string `json:"state"`
	Description  string `json:"description,omitempty"`
}

// PublisherChange is the change of one publisher. Previous is nil for a
// publisher that appeared, Current for one that disappeared.
type PublisherChange struct {
	PublisherID string      `json:"publisher_id"`
	Previous    *StatusCore `json:"previous"`
	Current     *StatusCore `json:"current"`
	// ChangedFields names the fields that differ, in the order
	// is_configured, started, state, description; for a publisher that
	// appeared or disappeared, the fields of the side that exists.
	ChangedFields []string `json:"changed_fields"`
}

// publisherTracker turns the successive channel lists of one device into
// publisher_status events.
type publisherTracker struct {
	device, ip string
	known      map[string][]PublisherEntry // last state per channel id
}

func newPublisherTracker(device, ip string) *publisherTracker {
	return &publisherTracker{device: device, ip: ip, known: map[string][]PublisherEntry{}}
}

// observe records a successful poll at time at and returns the events it
// makes, and whether a publisher is starting.
func (t *publisherTracker) observe(chans []Channel, at time.Time) (events []engine.Event, busy bool) {
	seen := make(map[string]bool, len(chans))
	for _, ch := range chans {
		if ch.ID == "" || seen[ch.ID] {
			continue // no id, or listed twice: keep the first
		}
		seen[ch.ID] = true
		cur := entries(ch.Publishers)
		for _, p := range cur {
			busy = busy || p.Status.State == string(StateStarting)
		}
		prev, known := t.known[ch.ID]
		t.known[ch.ID] = cur
		switch {
		case !known:
			events = append(events, t.event(ch.ID, cur, []PublisherChange{}, at))
		default:
			if changes := diffPublishers(prev, cur); len(changes) > 0 {
				events = append(events, t.event(ch.ID, cur, changes, at))
			}
		}
	}
	var removed []string
	for id := range t.known {
		if !seen[id] {
			removed = append(removed, id)
		}
	}
	slices.Sort(removed)
	for _, id := range removed {
		changes := diffPublishers(t.known[id], nil)
		delete(t.known, id)
		events = append(events, t.event(id, []PublisherEntry{}, changes, at))
	}
	return events, busy
}

func (t *publisherTracker) event(channel string, pubs []PublisherEntry, changes []PublisherChange, at time.Time) engine.Event {
	if changes == nil {
		changes = []PublisherChange{}
	}
	return engine.Event{
		Type:    TypePublisherStatus,
		Device:  t.device,
		Channel: channel,
		Time:    at,
		Hash:    hashPublishers(pubs),
		Data: mustMarshal(PublisherStatusData{
			Publishers: pubs,
			Changes:    changes,
			DeviceID:   t.device,
			DeviceIP:   t.ip,
			Channel:    channel,
			FetchedAt:  isoTime(at),
		}),
	}
}

// entries converts a channel's publishers, keeping the first of duplicate
// ids. A publisher without status (the device ignored publishers-status)
// reads as unconfigured and stopped with an empty state.
func entries(pubs []Publisher) []PublisherEntry {
	out := make([]PublisherEntry, 0, len(pubs))
	seen := make(map[string]bool, len(pubs))
	for _, p := range pubs {
		if seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		e := PublisherEntry{ID: p.ID, Name: p.Name, Type: p.Type}
		if st := p.Status; st != nil {
			e.Status = StatusCore{
				IsConfigured: st.IsConfigured,
				Started:      st.Started,
				State:        string(st.State),
				Description:  st.Description,
			}
		}
		out = append(out, e)
	}
	return out
}

// hashPublishers hashes exactly what defines a change: each publisher's
// id, is_configured, started, state and description, in order.
func hashPublishers(pubs []PublisherEntry) uint64 {
	var h engine.Hasher
	h.Add(strconv.Itoa(len(pubs)))
	for _, p := range pubs {
		h.Add(p.ID)
		h.AddBool(p.Status.IsConfigured)
		h.AddBool(p.Status.Started)
		h.Add(p.Status.State)
		h.Add(p.Status.Description)
	}
	return h.Sum()
}

// diffPublishers lists the changes from prev to cur: changed publishers in
// cur's order, then the ones that disappeared in prev's order.
func diffPublishers(prev, cur []PublisherEntry) []PublisherChange {
	before := make(map[string]*StatusCore, len(prev))
	for i := range prev {
		before[prev[i].ID] = &prev[i].Status
	}
	var changes []PublisherChange
	now := make(map[string]bool, len(cur))
	for i := range cur {
		p := &cur[i]
		now[p.ID] = true
		old, ok := before[p.ID]
		if !ok {
			changes = append(changes, PublisherChange{PublisherID: p.ID, Current: ptr(p.Status), ChangedFields: fieldsOf(p.Status)})
			continue
		}
		if fields := changedFields(*old, p.Status); len(fields) > 0 {
			changes = append(changes, PublisherChange{PublisherID: p.ID, Previous: ptr(*old), Current: ptr(p.Status), ChangedFields: fields})
		}
	}
	for i := range prev {
		if p := &prev[i]; !now[p.ID] {
			changes = append(changes, PublisherChange{PublisherID: p.ID, Previous: ptr(p.Status), ChangedFields: fieldsOf(p.Status)})
		}
	}
	return changes
}

func changedFields(a, b StatusCore) []string {
	var f []string
	if a.IsConfigured != b.IsConfigured {
		f = append(f, "is_configured")
	}
	if a.Started != b.Started {
		f = append(f, "started")
	}
	if a.State != b.State {
		f = append(f, "state")
	}
	if a.Description != b.Description {
		f = append(f, "description")
	}
	return f
}

// fieldsOf lists the fields a status shows in JSON.
func fieldsOf(s StatusCore) []string {
	f := []string{"is_configured", "started", "state"}
	if s.Description != "" {
		f = append(f, "description")
	}
	return f
}

func ptr[T any](v T) *T { return &v }
