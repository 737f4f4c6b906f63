package pearl

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// publisherSource returns a fast-polling pearl_publisher_status for tests.
func publisherSource(interval time.Duration) *PublisherStatusSource {
	s := NewPublisherStatusSource()
	s.Interval = engine.Duration(interval)
	s.FastInterval = engine.Duration(min(interval, 10*time.Millisecond))
	s.MaxBackoff = engine.Duration(max(interval, 100*time.Millisecond))
	return s
}

func oneChannel(st pearltest.PublisherStatus) []pearltest.Channel {
	return []pearltest.Channel{{ID: "1", Name: "HDMI-A", Publishers: []pearltest.Publisher{
		{ID: "0", Type: pearltest.TypeRTMP, Name: "Stream 1", Status: st},
	}}}
}

var (
	stopped = pearltest.PublisherStatus{IsConfigured: true, State: pearltest.StateStopped}
	started = pearltest.PublisherStatus{IsConfigured: true, Started: true, State: pearltest.StateStarted}
)

// TestPublisherStatusStates drives a publisher through every state of the
// API document, and one it does not know, and checks each event.
func TestPublisherStatusStates(t *testing.T) {
	tests := []struct {
		name     string
		from, to pearltest.PublisherStatus
		want     StatusCore
		fields   []string
	}{
		{name: "starting", from: stopped, to: pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "starting"},
			want: StatusCore{IsConfigured: true, Started: true, State: "starting"}, fields: []string{"started", "state"}},
		{name: "listening", from: stopped, to: pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "listening"},
			want: StatusCore{IsConfigured: true, Started: true, State: "listening"}, fields: []string{"started", "state"}},
		{name: "started", from: stopped, to: started,
			want: StatusCore{IsConfigured: true, Started: true, State: "started"}, fields: []string{"started", "state"}},
		{name: "stopped", from: started, to: stopped,
			want: StatusCore{IsConfigured: true, State: "stopped"}, fields: []string{"started", "state"}},
		{name: "error with description", from: started,
			to:     pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "error", Description: "Connection refused by server"},
			want:   StatusCore{IsConfigured: true, Started: true, State: "error", Description: "Connection refused by server"},
			fields: []string{"state", "description"}},
		{name: "error description changes",
			from:   pearltest.PublisherStatus{IsConfigured: true, State: "error", Description: "DNS failure"},
			to:     pearltest.PublisherStatus{IsConfigured: true, State: "error", Description: "Connection timed out"},
			want:   StatusCore{IsConfigured: true, State: "error", Description: "Connection timed out"},
			fields: []string{"description"}},
		{name: "unknown future state", from: started, to: pearltest.PublisherStatus{IsConfigured: true, Started: true, State: "reconnecting"},
			want: StatusCore{IsConfigured: true, Started: true, State: "reconnecting"}, fields: []string{"state"}},
		{name: "unconfigured", from: stopped, to: pearltest.PublisherStatus{State: "stopped"},
			want: StatusCore{State: "stopped"}, fields: []string{"is_configured"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dev, srv := fakeDevice(t, pearltest.Options{Channels: oneChannel(tt.from)})
			env, _ := newEnv(t, deviceConfig("studio-a", srv))
			rec := run(t, publisherSource(20*time.Millisecond), env)

			first := publisherData(t, rec.next(t, "first", ofType(TypePublisherStatus, "1")))
			if len(first.Changes) != 0 || len(first.Publishers) != 1 {
				t.Fatalf("first event: want the state with no changes, got %+v", first)
			}
			if err := dev.SetPublisherStatus("1", "0", tt.to); err != nil {
				t.Fatal(err)
			}
			ev := rec.next(t, "change", ofType(TypePublisherStatus, "1"))
			d := publisherData(t, ev)
			if got := d.Publishers[0].Status; got != tt.want {
				t.Errorf("status = %+v, want %+v", got, tt.want)
			}
			if len(d.Changes) != 1 {
				t.Fatalf("changes = %+v, want one", d.Changes)
			}
			c := d.Changes[0]
			if c.PublisherID != "0" || c.Previous == nil || c.Current == nil || *c.Current != tt.want ||
				*c.Previous != first.Publishers[0].Status || !slices.Equal(c.ChangedFields, tt.fields) {
				t.Errorf("change = %+v (%+v -> %+v), want %v -> %+v, fields %v", c, c.Previous, c.Current,
					first.Publishers[0].Status, tt.want, tt.fields)
			}
			if ev.Device != "studio-a" || ev.Channel != "1" || ev.Publisher != "" || ev.Hash == 0 ||
				d.DeviceID != "studio-a" || d.DeviceIP != "127.0.0.1" || d.Channel != "1" {
				t.Errorf("event identity: %+v / %+v", ev, d)
			}
			if fetched, err := time.Parse(isoLayout, d.FetchedAt); err != nil || !fetched.Equal(ev.Time.Truncate(time.Millisecond)) {
				t.Errorf("fetched_at %q (%v) does not match Time %v", d.FetchedAt, err, ev.Time)
			}
		})
	}
}

// TestPublisherStatusIgnoresVolatileFields runs started SRT and RTMP
// publishers whose counters, duration, warnings and reconnections move:
// after the first events, many polls make no event.
func TestPublisherStatusIgnoresVolatileFields(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{Channels: []pearltest.Channel{{ID: "1", Publishers: []pearltest.Publisher{
		{ID: "0", Type: pearltest.TypeRTMP, Status: started},
		{ID: "1", Type: pearltest.TypeSRT, Status: started},
	}}}})
	env, _ := newEnv(t, deviceConfig("a", srv))
	rec := run(t, publisherSource(10*time.Millisecond), env)
	rec.next(t, "first", ofType(TypePublisherStatus, "1"))

	base := dev.Requests("/api/v2.0/channels")
	for i := range 5 {
		st := started
		st.Reconnections = i + 1
		st.Warnings = []string{"Low bandwidth " + strings.Repeat("!", i)}
		st.Since = time.Now().Add(-time.Duration(i) * time.Hour)
		if err := dev.SetPublisherStatus("1", "1", st); err != nil {
			t.Fatal(err)
		}
		n := dev.Requests("/api/v2.0/channels")
		eventually(t, "two more polls", func() bool { return dev.Requests("/api/v2.0/channels") >= n+2 })
	}
	if polls := dev.Requests("/api/v2.0/channels") - base; polls < 10 {
		t.Fatalf("only %d polls", polls)
	}
	if evs := rec.since(); len(evs) != 0 {
		t.Errorf("volatile fields made %d events: %s", len(evs), rec.describe())
	}
}

// TestPublisherStatusLayoutChanges adds and removes channels and
// publishers: appearing and disappearing publishers are changes with a
// null side; a new channel starts with no changes; a removed channel
// reports no publishers.
func TestPublisherStatusLayoutChanges(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{})
	env, _ := newEnv(t, deviceConfig("a", srv))
	rec := run(t, publisherSource(10*time.Millisecond), env)
	rec.next(t, "channel 1", ofType(TypePublisherStatus, "1"))
	rec.next(t, "channel 2", ofType(TypePublisherStatus, "2"))

	dev.AddChannel(pearltest.Channel{ID: "7", Name: "New", Publishers: []pearltest.Publisher{{ID: "0", Type: "srt", Status: started}}})
	d := publisherData(t, rec.next(t, "new channel", ofType(TypePublisherStatus, "7")))
	if len(d.Changes) != 0 || len(d.Publishers) != 1 || d.Publishers[0].Status.State != "started" {
		t.Errorf("new channel: %+v", d)
	}

	// Channel 2 gets a second publisher.
	dev.AddChannel(pearltest.Channel{ID: "2", Publishers: []pearltest.Publisher{
		{ID: "0", Type: "rtmp", Name: "Stream 1", Status: stopped},
		{ID: "5", Type: "hls", Name: "HLS", Status: stopped},
	}})
	d = publisherData(t, rec.next(t, "publisher appears", ofType(TypePublisherStatus, "2")))
	if len(d.Changes) != 1 || d.Changes[0].PublisherID != "5" || d.Changes[0].Previous != nil || d.Changes[0].Current == nil ||
		!slices.Equal(d.Changes[0].ChangedFields, []string{"is_configured", "started", "state"}) {
		t.Errorf("appearing publisher: %+v", d.Changes)
	}

	// ... and loses its first one.
	dev.AddChannel(pearltest.Channel{ID: "2", Publishers: []pearltest.Publisher{{ID: "5", Type: "hls", Name: "HLS", Status: stopped}}})
	d = publisherData(t, rec.next(t, "publisher disappears", ofType(TypePublisherStatus, "2")))
	if len(d.Changes) != 1 || d.Changes[0].PublisherID != "0" || d.Changes[0].Previous == nil || d.Changes[0].Current != nil {
		t.Errorf("disappearing publisher: %+v", d.Changes)
	}

	dev.RemoveChannel("7")
	ev := rec.next(t, "removed channel", ofType(TypePublisherStatus, "7"))
	d = publisherData(t, ev)
	if d.Publishers == nil || len(d.Publishers) != 0 || len(d.Changes) != 1 || d.Changes[0].Current != nil {
		t.Errorf("removed channel: %s", ev.Data)
	}
	if !strings.Contains(string(ev.Data), `"publishers":[]`) {
		t.Errorf("removed channel: publishers must be an empty list: %s", ev.Data)
	}
}

// TestPublisherStatusOneRequestPerPoll checks that a poll of a device with
// several channels is exactly one GET /channels with the status.
func TestPublisherStatusOneRequestPerPoll(t *testing.T) {
	var chans []pearltest.Channel
	for _, id := range []string{"4", "5", "10", "11"} {
		chans = append(chans, pearltest.Channel{ID: id, Publishers: []pearltest.Publisher{
			{ID: "0", Type: "rtmp", Status: stopped}, {ID: "1", Type: "srt", Status: started},
		}})
	}
	dev, srv := fakeDevice(t, pearltest.Options{Channels: chans})
	c := newClient(t, deviceConfig("a", srv))
	w := &publisherWatcher{client: c, tracker: newPublisherTracker("a", c.Host()), emit: func(engine.Event) {}, log: discardLogger()}
	for i := 1; i <= 5; i++ {
		if _, err := w.poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, total := dev.Requests("/api/v2.0/channels"), dev.TotalRequests(); got != i || total != i {
			t.Fatalf("after %d polls: %d channel requests, %d in all; want %d", i, got, total, i)
		}
	}
}

// TestKickPollsAtOnce checks that a kick polls at once although the
// interval is an hour, and that a control call through the client is
// followed by fast polls until the publisher settles.
func TestKickPollsAtOnce(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{ControlDelay: 150 * time.Millisecond})
	d := deviceConfig("a", srv)
	env, _ := newEnv(t, d)
	rec := run(t, publisherSource(time.Hour), env)
	rec.next(t, "channel 1", ofType(TypePublisherStatus, "1"))
	rec.next(t, "channel 2", ofType(TypePublisherStatus, "2"))
	client, _ := ClientFor(env, d)

	polls := func() int { return dev.Requests("/api/v2.0/channels") }
	if polls() != 1 {
		t.Fatalf("%d polls before the kick, want 1", polls())
	}
	start := time.Now()
	client.Kick()
	eventually(t, "poll after the kick", func() bool { return polls() >= 2 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("kick polled after %s", d)
	}

	if err := client.StartPublisher(context.Background(), "1", "0"); err != nil {
		t.Fatal(err)
	}
	startingOrStarted := func(state string) func(engine.Event) bool {
		return func(ev engine.Event) bool {
			return ev.Type == TypePublisherStatus && ev.Channel == "1" && publisherData(t, ev).Publishers[0].Status.State == state
		}
	}
	rec.next(t, "starting", startingOrStarted("starting"))
	rec.next(t, "started", startingOrStarted("started"))

	// Once settled, the poller falls back to its interval.
	eventually(t, "polls stop", func() bool {
		n := polls()
		time.Sleep(200 * time.Millisecond)
		return polls() == n
	})
}

// TestPublisherStatusPollsFastWhileStarting starts a publisher behind the
// poller's back: once it sees "starting" it polls fast until "started".
func TestPublisherStatusPollsFastWhileStarting(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{ControlDelay: 1500 * time.Millisecond})
	env, _ := newEnv(t, deviceConfig("a", srv))
	rec := run(t, publisherSource(500*time.Millisecond), env)
	rec.next(t, "channel 1", ofType(TypePublisherStatus, "1"))

	if err := dev.StartPublisher("1", "0"); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "starting", func(ev engine.Event) bool {
		return ev.Channel == "1" && publisherData(t, ev).Publishers[0].Status.State == "starting"
	})
	n := dev.Requests("/api/v2.0/channels")
	rec.next(t, "started", func(ev engine.Event) bool {
		return ev.Channel == "1" && publisherData(t, ev).Publishers[0].Status.State == "started"
	})
	if polls := dev.Requests("/api/v2.0/channels") - n; polls < 10 {
		t.Errorf("%d polls while starting, want fast polling (at the interval it would be 2 or 3)", polls)
	}
}

// TestPublisherTrackerGolden pins the exact data of the events: a first
// observation, a change, a new and a removed publisher, a removed channel.
func TestPublisherTrackerGolden(t *testing.T) {
	at := time.Date(2026, 11, 25, 20, 31, 12, 345_000_000, time.UTC)
	status := func(started bool, state, desc string) *PublisherStatus {
		return &PublisherStatus{IsConfigured: true, Started: started, State: PublisherState(state), Description: desc,
			Duration: 17481, Statistics: json.RawMessage(`{"total":{"pkt_sent":6090501}}`)}
	}
	polls := [][]Channel{
		{
			{ID: "1", Name: "HDMI-A", Publishers: []Publisher{
				{ID: "0", Type: "rtmp", Name: "Stream 1", Status: status(false, "starting", "")},
				{ID: "1", Type: "srt", Name: "Stream 2", Status: status(false, "stopped", "")},
			}},
			{ID: "2", Name: "HDMI-B", Publishers: []Publisher{{ID: "0", Type: "rtmp", Name: "Stream 1", Status: status(false, "stopped", "")}}},
		},
		{
			{ID: "1", Name: "HDMI-A", Publishers: []Publisher{
				{ID: "0", Type: "rtmp", Name: "Stream 1", Status: status(true, "started", "")},
				{ID: "2", Type: "hls", Name: "Stream 3", Status: status(true, "error", "No route to host")},
			}},
		},
	}
	tr := newPublisherTracker("192.168.1.100", "192.168.1.100")
	var all []json.RawMessage
	for i, chans := range polls {
		events, _ := tr.observe(chans, at.Add(time.Duration(i)*time.Second))
		for _, ev := range events {
			all = append(all, ev.Data)
		}
	}
	out, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "publisher_status_events.json", indent(t, out))
}

func TestPublisherStatusHash(t *testing.T) {
	base := []PublisherEntry{{ID: "0", Name: "A", Type: "rtmp", Status: StatusCore{IsConfigured: true, State: "stopped"}}}
	renamed := []PublisherEntry{{ID: "0", Name: "B", Type: "srt", Status: base[0].Status}}
	if hashPublishers(base) != hashPublishers(renamed) {
		t.Errorf("name and type must not change the hash")
	}
	for _, other := range [][]PublisherEntry{
		{{ID: "1", Status: base[0].Status}},
		{{ID: "0", Status: StatusCore{State: "stopped"}}},
		{{ID: "0", Status: StatusCore{IsConfigured: true, Started: true, State: "stopped"}}},
		{{ID: "0", Status: StatusCore{IsConfigured: true, State: "error"}}},
		{{ID: "0", Status: StatusCore{IsConfigured: true, State: "stopped", Description: "x"}}},
		{},
	} {
		if hashPublishers(base) == hashPublishers(other) {
			t.Errorf("%+v and %+v hash alike", base, other)
		}
	}
}

func TestPublisherStatusConfig(t *testing.T) {
	_, srv := fakeDevice(t, pearltest.Options{})
	tests := []struct {
		name string
		edit func(*PublisherStatusSource)
		err  string
	}{
		{name: "defaults", edit: func(*PublisherStatusSource) {}},
		{name: "zero interval", edit: func(s *PublisherStatusSource) { s.Interval = 0 }, err: "interval must be positive"},
		{name: "zero fast interval", edit: func(s *PublisherStatusSource) { s.FastInterval = 0 }, err: "fast_interval must be positive"},
		{name: "fast slower than interval", edit: func(s *PublisherStatusSource) { s.FastInterval = s.Interval * 2 }, err: "must not exceed interval"},
		{name: "backoff below interval", edit: func(s *PublisherStatusSource) { s.MaxBackoff = s.Interval / 2 }, err: "max_backoff"},
		{name: "unknown device", edit: func(s *PublisherStatusSource) { s.Devices = []string{"studio-*"} }, err: `"studio-*" matches no device`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := newEnv(t, deviceConfig("a", srv))
			s := NewPublisherStatusSource()
			tt.edit(s)
			err := s.Init(env)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Init error = %v, want %q", err, tt.err)
			}
		})
	}
	if err := NewPublisherStatusSource().Run(context.Background(), func(engine.Event) {}); err == nil {
		t.Errorf("Run before Init: want an error")
	}
}

// TestSourcesFromPipelineFile loads both sources from TOML through the
// engine's registry, strictly.
func TestSourcesFromPipelineFile(t *testing.T) {
	src := `
[devices.a]
address = "10.0.0.1"

[sources.pubs]
type = "pearl_publisher_status"
devices = ["a"]
interval = "2s"
fast_interval = "100ms"
max_backoff = "30s"

[sources.health]
type = "pearl_device_health"
interval = "15s"
cpu_step = 10
temp_step = 3
`
	p, err := engine.Load("pearl.toml", []byte(src), engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pubs := p.Component("pubs").Value.(*PublisherStatusSource)
	if pubs.Interval.D() != 2*time.Second || pubs.FastInterval.D() != 100*time.Millisecond || pubs.MaxBackoff.D() != 30*time.Second {
		t.Errorf("pubs = %+v", pubs)
	}
	health := p.Component("health").Value.(*DeviceHealthSource)
	if health.Interval.D() != 15*time.Second || health.CPUStep != 10 || health.TempStep != 3 || health.MaxBackoff.D() != DefaultMaxBackoff {
		t.Errorf("health = %+v", health)
	}
	_, err = engine.Load("bad.toml", []byte("[devices.a]\naddress = \"x\"\n[sources.p]\ntype = \"pearl_publisher_status\"\nintervall = \"1s\"\n"), engine.LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), `unknown key "sources.p.intervall"`) {
		t.Errorf("unknown key: error = %v", err)
	}
}
