package pearl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
	"github.com/pearld/pearld/sources/redisstream"
	"github.com/pearld/pearld/sources/redisstream/redistest"
)

// instance is one pearld instance's pearl_publisher_status with a lease
// on a shared device: its own environment (clients, leases, metrics).
type instance struct {
	t      *testing.T
	src    *PublisherStatusSource
	reg    *prometheus.Registry
	rec    *recorder
	env    *engine.Env
	close  func(context.Context)
	cancel context.CancelFunc
	done   chan error
}

const testTTL = time.Second

func startInstance(t *testing.T, r *redistest.Server, dev *engine.Device, interval time.Duration) *instance {
	t.Helper()
	reg := prometheus.NewRegistry()
	env, closeEnv := engine.NewEnv(engine.EnvOptions{Pipeline: "test", Name: "pubs", Metrics: reg,
		Devices: map[string]*engine.Device{dev.Name: dev}})
	s := publisherSource(interval)
	s.LeaseRedis, s.LeaseTTL, s.LeasePrefix = r.URL, engine.Duration(testTTL), r.Prefix
	if err := s.Init(env); err != nil {
		closeEnv(context.Background())
		t.Fatalf("Init: %v", err)
	}
	in := &instance{t: t, src: s, reg: reg, rec: newRecorder(), env: env, close: closeEnv, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- s.Run(ctx, in.rec.emit) }()
	t.Cleanup(func() { in.stop(false) })
	return in
}

// stop stops polling; clean also closes the environment, which releases
// the lease, as a clean shutdown does. Without it the instance stops like
// a killed one: its lease runs out. It may be called more than once.
func (in *instance) stop(clean bool) {
	in.t.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			in.t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		in.t.Error("Run did not return within 5s of cancellation")
	}
	if clean {
		in.close(context.Background())
		return
	}
	in.t.Cleanup(func() { in.close(context.Background()) })
}

// polls returns how many times the instance asked the device for its
// channels.
func (in *instance) polls() int {
	mfs, err := in.reg.Gather()
	if err != nil {
		in.t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "pearld_pearl_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "path" && l.GetValue() == "/channels" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}

// record writes what an instance emitted to Redis, as the pipeline's
// redis_stream sink does.
func record(t *testing.T, r *redistest.Server, events []engine.Event) {
	t.Helper()
	_, _, err := redisstream.Append(context.Background(), r.Client, redisstream.Keys{Prefix: r.Prefix},
		redisstream.AppendOptions{MaxLen: 1000, History: 10}, events)
	if err != nil {
		t.Fatal(err)
	}
}

// TestLeaseOnePollerAtATime runs two instances on one device: one polls,
// the other waits; when the first stops, cleanly or not, the other takes
// over, starting from the latest state the first recorded.
func TestLeaseOnePollerAtATime(t *testing.T) {
	for _, clean := range []bool{true, false} {
		name := map[bool]string{true: "clean stop", false: "killed"}[clean]
		t.Run(name, func(t *testing.T) {
			r := redistest.New(t)
			dev, srv := fakeDevice(t, pearltest.Options{Channels: oneChannel(stopped)})
			cfg := deviceConfig("a", srv)
			const interval = 50 * time.Millisecond
			a := startInstance(t, r, cfg, interval)
			eventually(t, "a to poll", func() bool { return a.polls() >= 3 })
			b := startInstance(t, r, cfg, interval)
			first := a.rec.next(t, "first observation", ofType(TypePublisherStatus, "1"))
			record(t, r, []engine.Event{first})

			// b waits while a polls.
			before := a.polls()
			time.Sleep(4 * interval)
			if n := b.polls(); n != 0 {
				t.Fatalf("b polled %d times while a held the lease", n)
			}
			if a.polls() <= before {
				t.Fatal("a stopped polling")
			}

			stoppedAt := time.Now()
			a.stop(clean)
			aPolls := a.polls()
			// A change while nobody polls: b reports it as a change.
			if err := dev.SetPublisherStatus("1", "0", started); err != nil {
				t.Fatal(err)
			}
			ev := b.rec.next(t, "the change", ofType(TypePublisherStatus, "1"))
			took := time.Since(stoppedAt)
			d := publisherData(t, ev)
			if len(d.Changes) != 1 || d.Changes[0].Previous == nil || d.Changes[0].Previous.Started || !d.Changes[0].Current.Started {
				t.Fatalf("b's first event: %s; want the change from the recorded state", ev.Data)
			}
			limit := testTTL + time.Second // killed: the lease runs out
			if clean {
				limit = testTTL/3 + time.Second // released: b notices at its next try
			}
			if took > limit {
				t.Fatalf("b took over after %s, want within %s", took, limit)
			}
			if a.polls() != aPolls {
				t.Fatal("a polled after it stopped")
			}
			if evs := b.rec.since(); len(evs) != 0 {
				t.Fatalf("b emitted more: %v", evs)
			}
		})
	}
}

// TestLeaseKickReachesTheHolder: a control call on an instance that does
// not poll the device kicks the one that does.
func TestLeaseKickReachesTheHolder(t *testing.T) {
	r := redistest.New(t)
	_, srv := fakeDevice(t, pearltest.Options{Channels: oneChannel(stopped)})
	cfg := deviceConfig("a", srv)
	const interval = time.Hour // only kicks poll after the first poll
	a := startInstance(t, r, cfg, interval)
	eventually(t, "a to poll", func() bool { return a.polls() == 1 })
	b := startInstance(t, r, cfg, interval)
	// Both listen for kicks (a must, to get b's).
	channel := redisstream.Keys{Prefix: r.Prefix}.Kicks()
	eventually(t, "both instances to listen for kicks", func() bool {
		n, err := r.Client.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] == 2
	})
	b.src.clients[0].Kick()
	eventually(t, "a to poll on b's kick", func() bool { return a.polls() >= 2 })
	if n := b.polls(); n != 0 {
		t.Fatalf("b polled %d times", n)
	}
}

func testGauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			sum := 0.0
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
			return sum
		}
	}
	return -1
}

func TestLeaseConfig(t *testing.T) {
	_, srv := fakeDevice(t, pearltest.Options{})
	tests := []struct {
		name string
		edit func(*LeaseConfig)
		err  string
	}{
		{name: "off", edit: func(*LeaseConfig) {}},
		{name: "on, defaults", edit: func(c *LeaseConfig) { c.LeaseRedis = "redis://127.0.0.1:6379/0" }},
		{name: "ttl without redis", edit: func(c *LeaseConfig) { c.LeaseTTL = engine.Duration(time.Second) }, err: "lease_ttl and lease_prefix need lease_redis"},
		{name: "short ttl", edit: func(c *LeaseConfig) {
			c.LeaseRedis, c.LeaseTTL = "redis://127.0.0.1:6379/0", engine.Duration(100*time.Millisecond)
		}, err: "lease_ttl must be at least 1s, not 100ms"},
		{name: "not redis", edit: func(c *LeaseConfig) { c.LeaseRedis = "127.0.0.1:6379" }, err: "lease_redis: parsing redis URL: want redis://[user:password@]host[:port][/db]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []interface {
				engine.Initializer
				lease() *LeaseConfig
			}{pubLease{NewPublisherStatusSource()}, healthLease{NewDeviceHealthSource()}} {
				env, _ := newEnv(t, deviceConfig("a", srv))
				tt.edit(s.lease())
				err := s.Init(env)
				if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
					t.Fatalf("%T: Init error = %v, want %q", s, err, tt.err)
				}
				if err == nil && tt.name == "on, defaults" && s.lease().LeaseTTL.D() != DefaultLeaseTTL {
					t.Fatalf("lease_ttl = %s, want the default", s.lease().LeaseTTL)
				}
			}
		})
	}
	// The keys come from the pipeline file.
	p, err := engine.Load("cluster.toml", []byte(`
[devices.a]
address = "10.0.0.1"
[sources.pubs]
type = "pearl_publisher_status"
lease_redis = "redis://127.0.0.1:6379/0"
lease_ttl = "3s"
lease_prefix = "pearld:x"
`), engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := p.Component("pubs").Value.(*PublisherStatusSource).LeaseConfig; c.LeaseTTL.D() != 3*time.Second || c.LeasePrefix != "pearld:x" {
		t.Fatalf("lease keys = %+v", c)
	}
}

type pubLease struct{ *PublisherStatusSource }

func (s pubLease) lease() *LeaseConfig { return &s.LeaseConfig }

type healthLease struct{ *DeviceHealthSource }

func (s healthLease) lease() *LeaseConfig { return &s.LeaseConfig }

// TestSeed checks how trackers start from the latest state recorded by
// the previous holder of a lease.
func TestSeed(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pubEvent := func(channel string, pubs []PublisherEntry) engine.Event {
		b, _ := json.Marshal(PublisherStatusData{Publishers: pubs, Changes: []PublisherChange{}, DeviceID: "a", Channel: channel})
		return engine.Event{Type: TypePublisherStatus, Device: "a", Channel: channel, Time: at, Data: b, Seq: 1}
	}
	on := []PublisherEntry{{ID: "0", Status: StatusCore{IsConfigured: true, Started: true, State: "started"}}}

	t.Run("publishers", func(t *testing.T) {
		tr := newPublisherTracker("a", "10.0.0.1")
		tr.seed([]engine.Event{pubEvent("1", on), pubEvent("2", []PublisherEntry{}), pubEvent("3", on)})
		chans := []Channel{
			{ID: "1", Publishers: []Publisher{{ID: "0", Status: &PublisherStatus{IsConfigured: true, Started: true, State: "started"}}}},
			{ID: "3", Publishers: []Publisher{{ID: "0", Status: &PublisherStatus{IsConfigured: true, State: "stopped"}}}},
		}
		events, _ := tr.observe(chans, at.Add(time.Second))
		if len(events) != 1 || events[0].Channel != "3" {
			t.Fatalf("events %v: want only channel 3's change (1 unchanged, 2 removed before)", events)
		}
		if d := publisherData(t, events[0]); len(d.Changes) != 1 || d.Changes[0].ChangedFields[0] != "started" {
			t.Fatalf("change %s", events[0].Data)
		}
	})

	recorded := func(d DeviceHealthData) engine.Event {
		d.DeviceID = "a"
		b, _ := json.Marshal(d)
		return engine.Event{Type: TypeDeviceHealth, Device: "a", Time: at, Data: b, Seq: 5}
	}
	seen := isoTime(at.Add(-time.Minute))
	online := DeviceHealthData{Status: HealthOnline, LastSeen: &seen,
		System: &HealthSystem{CPULoad: 10, CPUTemp: 50, CPUTempThreshold: 70, Uptime: 1000}}
	tests := []struct {
		name     string
		seed     DeviceHealthData
		poll     *SystemStatus // nil: a failure
		after    time.Duration
		emit     bool
		rebooted bool
		errs     int
	}{
		{name: "online stays quiet", seed: online, after: 10 * time.Second,
			poll: &SystemStatus{Uptime: 1010, CPULoad: 12, CPUTemp: 51, CPUTempThreshold: 70}},
		{name: "rebooted during the handover", seed: online, after: 10 * time.Second, emit: true, rebooted: true,
			poll: &SystemStatus{Uptime: 3, CPULoad: 12, CPUTemp: 51, CPUTempThreshold: 70}},
		{name: "degraded now", seed: online, after: time.Second, emit: true,
			poll: &SystemStatus{Uptime: 1001, CPULoad: 12, CPUTemp: 80, CPUTempThreshold: 70}},
		{name: "failing: counts on", seed: DeviceHealthData{Status: HealthOffline, ErrorCount: 4, LastSeen: &seen},
			emit: true, errs: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &healthTracker{device: "a", ip: "10.0.0.1", rebootSlack: 15, needIdent: true, needFirmware: true}
			tr.seed([]engine.Event{recorded(tt.seed)})
			now := at.Add(tt.after)
			var ev healthEvent
			var ok bool
			if tt.poll != nil {
				rebooted := tr.checkReboot(*tt.poll, now)
				if rebooted != tt.rebooted {
					t.Fatalf("rebooted = %v, want %v", rebooted, tt.rebooted)
				}
				ev, ok = tr.succeeded(*tt.poll, rebooted, now)
			} else {
				ev, ok = tr.failed(&Error{Kind: ErrUnavailable, Reason: ReasonRefused, Message: "x"}, now)
			}
			if ok != tt.emit {
				t.Fatalf("emitted = %v, want %v: %s", ok, tt.emit, ev.Data)
			}
			if ok && tt.poll == nil {
				if ev.data.ErrorCount != tt.errs || ev.data.LastSeen == nil || *ev.data.LastSeen != seen {
					t.Fatalf("event %s: want error_count %d and the recorded last_seen", ev.Data, tt.errs)
				}
			}
		})
	}
}
