package pearl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pearld/pearld/engine"
	"github.com/pearld/pearld/sources/pearl/pearltest"
)

// healthSource returns a fast-polling pearl_device_health for tests.
func healthSource(interval time.Duration) *DeviceHealthSource {
	s := NewDeviceHealthSource()
	s.Interval = engine.Duration(interval)
	s.MaxBackoff = engine.Duration(max(interval, 100*time.Millisecond))
	return s
}

var normalSystem = pearltest.SystemStatus{Uptime: 5490, CPULoad: 25, CPUTemp: 57, CPUTempThreshold: 70}

func TestDeviceHealthFirstContact(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{Name: "Studio A", Firmware: "10.2.5.110", Product: "Pearl Nano"})
	env, _ := newEnv(t, deviceConfig("studio-a", srv))
	rec := run(t, healthSource(10*time.Millisecond), env)

	ev := rec.next(t, "online", ofType(TypeDeviceHealth))
	d := healthData(t, ev)
	if d.Status != HealthOnline || d.ErrorMessage != "" || d.ErrorCount != 0 || d.LastSeen == nil || d.Rebooted ||
		d.DeviceID != "studio-a" || d.DeviceIP != "127.0.0.1" || d.DeviceName != "Studio A" || d.System == nil ||
		d.Firmware == nil || d.Firmware.Version != "10.2.5.110" || d.Firmware.ProductName != "Pearl Nano" {
		t.Errorf("first event: %s", ev.Data)
	}
	if ev.Channel != "" || ev.Device != "studio-a" || ev.Key() != "device_health:studio-a" {
		t.Errorf("event identity: %+v", ev)
	}
	if _, err := time.Parse(isoLayout, *d.LastSeen); err != nil {
		t.Errorf("last_seen: %v", err)
	}
	eventually(t, "more polls", func() bool { return dev.Requests("/api/v2.0/system/status") >= 10 })
	if n, m := dev.Requests("/api/v2.0/system/ident"), dev.Requests("/api/v2.0/system/firmware"); n != 1 || m != 1 {
		t.Errorf("ident and firmware fetched %d and %d times, want once", n, m)
	}
	if evs := rec.since(); len(evs) != 0 {
		t.Errorf("steady device made events: %s", rec.describe())
	}
}

func TestDeviceHealthDegraded(t *testing.T) {
	tests := []struct {
		name string
		sys  pearltest.SystemStatus
		want string
	}{
		{name: "cpuload_high", sys: pearltest.SystemStatus{Uptime: 6000, CPULoad: 97, CPULoadHigh: true, CPUTemp: 60, CPUTempThreshold: 70}, want: HealthDegraded},
		{name: "cputemp at threshold", sys: pearltest.SystemStatus{Uptime: 6000, CPULoad: 30, CPUTemp: 70, CPUTempThreshold: 70}, want: HealthDegraded},
		{name: "cputemp above threshold", sys: pearltest.SystemStatus{Uptime: 6000, CPULoad: 30, CPUTemp: 84, CPUTempThreshold: 70}, want: HealthDegraded},
		{name: "just below threshold", sys: pearltest.SystemStatus{Uptime: 6000, CPULoad: 90, CPUTemp: 69, CPUTempThreshold: 70}, want: HealthOnline},
		{name: "no threshold reported", sys: pearltest.SystemStatus{Uptime: 6000, CPULoad: 30, CPUTemp: 57}, want: HealthOnline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dev, srv := fakeDevice(t, pearltest.Options{})
			env, _ := newEnv(t, deviceConfig("a", srv))
			rec := run(t, healthSource(10*time.Millisecond), env)
			rec.next(t, "online", healthIs(t, HealthOnline))

			dev.SetSystem(tt.sys)
			if tt.want == HealthOnline {
				eventually(t, "polls", func() bool { return dev.Requests("/api/v2.0/system/status") >= 10 })
				if evs := rec.since(); len(evs) != 0 {
					t.Errorf("want no event, got %s", rec.describe())
				}
				return
			}
			d := healthData(t, rec.next(t, "degraded", healthIs(t, HealthDegraded)))
			if d.System == nil || d.System.CPULoad != tt.sys.CPULoad || d.System.CPULoadHigh != tt.sys.CPULoadHigh ||
				d.System.CPUTemp != tt.sys.CPUTemp || d.System.CPUTempThreshold != tt.sys.CPUTempThreshold {
				t.Errorf("system = %+v, want %+v", d.System, tt.sys)
			}
			dev.SetSystem(normalSystem)
			rec.next(t, "online again", healthIs(t, HealthOnline))
		})
	}
}

// TestDeviceHealthReboot reboots a device while it answers, and while it
// refuses connections: the event after the reboot says so, identity and
// firmware are fetched again, and later polls make no event.
func TestDeviceHealthReboot(t *testing.T) {
	tests := []struct {
		name    string
		refused bool
	}{
		{name: "reboot between polls"},
		{name: "refused during the reboot", refused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dev, srv := fakeDevice(t, pearltest.Options{Name: "Old name"})
			env, _ := newEnv(t, deviceConfig("a", srv))
			rec := run(t, healthSource(10*time.Millisecond), env)
			first := rec.next(t, "online", healthIs(t, HealthOnline))

			if tt.refused {
				srv.SetRefused(true)
				d := healthData(t, rec.next(t, "offline", healthIs(t, HealthOffline)))
				if !strings.Contains(d.ErrorMessage, "connection refused") || d.DeviceName != "Old name" || d.Firmware == nil || d.System != nil {
					t.Errorf("offline event: %+v", d)
				}
			}
			dev.SetName("New name")
			dev.Reboot()
			srv.SetRefused(false)
			ev := rec.next(t, "reboot", ofType(TypeDeviceHealth))
			d := healthData(t, ev)
			if !d.Rebooted || d.Status != HealthOnline || d.DeviceName != "New name" || d.System.Uptime > 5 {
				t.Errorf("reboot event: %s", ev.Data)
			}
			if ev.Hash == first.Hash {
				t.Errorf("the reboot event must hash differently from the first")
			}
			if n := dev.Requests("/api/v2.0/system/ident"); n != 2 {
				t.Errorf("ident fetched %d times, want 2", n)
			}
			n := dev.Requests("/api/v2.0/system/status")
			eventually(t, "polls", func() bool { return dev.Requests("/api/v2.0/system/status") >= n+5 })
			if evs := rec.since(); len(evs) != 0 {
				t.Errorf("events after the reboot event: %s", rec.describe())
			}
		})
	}
}

// TestDeviceHealthTracker feeds the tracker a script of polls and checks
// which emit: transitions, reboots (also across an outage longer than the
// uptime), failure classes, and figure steps.
func TestDeviceHealthTracker(t *testing.T) {
	unavailable := &Error{Kind: ErrUnavailable, Reason: ReasonUnavailable, Method: "GET", Path: "/system/status", Message: "x"}
	refused := &Error{Kind: ErrUnavailable, Reason: ReasonRefused, Method: "GET", Path: "/system/status", Message: "x"}
	unauthorized := &Error{Kind: ErrUnauthorized, Reason: ReasonUnauthorized, Method: "GET", Path: "/system/status", Message: "x"}
	sys := func(uptime int64, cpu, temp int) *SystemStatus {
		return &SystemStatus{Uptime: uptime, CPULoad: cpu, CPUTemp: temp, CPUTempThreshold: 70}
	}
	type step struct {
		after  time.Duration // since the previous step
		sys    *SystemStatus // nil: err
		err    error
		emit   bool
		status string
		reboot bool
	}
	tests := []struct {
		name            string
		cpuStep, tmpStp int
		steps           []step
	}{
		{name: "steady", steps: []step{
			{sys: sys(100, 10, 50), emit: true, status: HealthOnline},
			{after: time.Second, sys: sys(101, 80, 60)},
			{after: time.Second, sys: sys(102, 10, 50)},
		}},
		{name: "failure classes", steps: []step{
			{err: refused, emit: true, status: HealthOffline},
			{err: refused},
			{err: unavailable, emit: true, status: HealthOffline},
			{err: unauthorized, emit: true, status: HealthAuthFailed},
			{err: unauthorized},
			{sys: sys(100, 10, 50), emit: true, status: HealthOnline},
		}},
		{name: "uptime goes down", steps: []step{
			{sys: sys(5000, 10, 50), emit: true, status: HealthOnline},
			{after: time.Second, sys: sys(3, 10, 50), emit: true, status: HealthOnline, reboot: true},
			{after: time.Second, sys: sys(4, 10, 50)},
		}},
		{name: "reboot during a long outage", steps: []step{
			{sys: sys(60, 10, 50), emit: true, status: HealthOnline},
			{after: time.Second, err: refused, emit: true, status: HealthOffline},
			{after: 10 * time.Minute, sys: sys(200, 10, 50), emit: true, status: HealthOnline, reboot: true},
		}},
		{name: "long outage without reboot", steps: []step{
			{sys: sys(60, 10, 50), emit: true, status: HealthOnline},
			{after: time.Second, err: unavailable, emit: true, status: HealthOffline},
			{after: 10 * time.Minute, sys: sys(661, 10, 50), emit: true, status: HealthOnline},
		}},
		{name: "device without uptime", steps: []step{
			{sys: sys(0, 10, 50), emit: true, status: HealthOnline},
			{after: time.Hour, sys: sys(0, 10, 50)},
		}},
		{name: "figure steps", cpuStep: 10, tmpStp: 5, steps: []step{
			{sys: sys(100, 25, 50), emit: true, status: HealthOnline},
			{sys: sys(100, 30, 50)},                                     // crosses a bucket, moved 5 < 10
			{sys: sys(100, 34, 53)},                                     // moved 9 and 3
			{sys: sys(100, 35, 50), emit: true, status: HealthOnline},   // moved 10
			{sys: sys(100, 35, 55), emit: true, status: HealthOnline},   // temp moved 5
			{sys: sys(100, 26, 52)},                                     // moved 9 and 3
			{err: refused, emit: true, status: HealthOffline},           //
			{sys: sys(100, 26, 52), emit: true, status: HealthOnline},   // back
			{sys: sys(100, 26, 70), emit: true, status: HealthDegraded}, // hot
			{sys: sys(100, 26, 71)},                                     // hotter by 1
			{sys: sys(100, 26, 75), emit: true, status: HealthDegraded}, // by 5
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &healthTracker{device: "a", ip: "10.0.0.1", cpuStep: tt.cpuStep, tempStep: tt.tmpStp,
				rebootSlack: 15, needIdent: true, needFirmware: true}
			at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var lastHash uint64
			for i, s := range tt.steps {
				at = at.Add(s.after)
				var ev healthEvent
				var ok bool
				if s.sys != nil {
					rebooted := tr.checkReboot(*s.sys, at)
					if rebooted != s.reboot {
						t.Errorf("step %d: rebooted = %v, want %v", i, rebooted, s.reboot)
					}
					ev, ok = tr.succeeded(*s.sys, rebooted, at)
				} else {
					ev, ok = tr.failed(s.err, at)
				}
				if ok != s.emit {
					t.Fatalf("step %d: emitted = %v, want %v", i, ok, s.emit)
				}
				if !ok {
					continue
				}
				if ev.data.Status != s.status || ev.data.Rebooted != s.reboot {
					t.Errorf("step %d: %s", i, ev.Data)
				}
				if i > 0 && ev.Hash == lastHash {
					t.Errorf("step %d: emitted an event with the hash of the previous one", i)
				}
				lastHash = ev.Hash
			}
		})
	}
}

// TestDeviceHealthGolden pins the exact data of the events.
func TestDeviceHealthGolden(t *testing.T) {
	at := time.Date(2026, 11, 25, 20, 31, 12, 345_000_000, time.UTC)
	tr := &healthTracker{device: "studio-a", ip: "192.168.1.100", rebootSlack: 15, needIdent: true, needFirmware: true}
	var all []json.RawMessage
	keep := func(ev healthEvent, ok bool) {
		if !ok {
			t.Fatalf("no event")
		}
		all = append(all, ev.Data)
	}
	unauthorized := &Error{Kind: ErrUnauthorized, Reason: ReasonUnauthorized, Method: "GET", Path: "/system/status",
		StatusCode: 401, Message: "unauthorized (HTTP 401): wrong username or password"}
	keep(tr.failed(unauthorized, at))
	tr.ident = &Ident{Name: "Studio A"}
	tr.firmware = &Firmware{Version: "4.24.1", Revision: "250107_1e4514f", ProductID: 44, ProductName: "Pearl-2"}
	st := SystemStatus{Uptime: 5490, CPULoad: 25, CPUTemp: 57, CPUTempThreshold: 70}
	keep(tr.succeeded(st, tr.checkReboot(st, at.Add(time.Second)), at.Add(time.Second)))
	st = SystemStatus{Uptime: 5491, CPULoad: 99, CPULoadHigh: true, CPUTemp: 71, CPUTempThreshold: 70}
	keep(tr.succeeded(st, tr.checkReboot(st, at.Add(2*time.Second)), at.Add(2*time.Second)))
	api := &Error{Kind: ErrAPIMissing, Reason: ReasonAPIMissing, Method: "GET", Path: "/system/status", StatusCode: 404,
		Message: "no REST API v2.0 (HTTP 404): firmware older than 4.24.1 has no /api/v2.0; update the device's firmware"}
	keep(tr.failed(api, at.Add(3*time.Second)))
	tr.failed(api, at.Add(4*time.Second))
	st = SystemStatus{Uptime: 12, CPULoad: 5, CPUTemp: 45, CPUTempThreshold: 70}
	keep(tr.succeeded(st, tr.checkReboot(st, at.Add(5*time.Second)), at.Add(5*time.Second)))

	out, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "device_health_events.json", indent(t, out))
}

// TestDeviceHealthIdentFailureIsNotFatal: a device whose ident fails is
// still online, and the identity is fetched again at the next poll.
func TestDeviceHealthIdentFailureIsNotFatal(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{Name: "Studio A"})
	c := newClient(t, deviceConfig("a", srv))
	var got []engine.Event
	w := &healthWatcher{client: c, tracker: newHealthTracker(c, 0, 0), log: discardLogger(),
		emit: func(ev engine.Event) { got = append(got, ev) }}

	dev.InjectFault(pearltest.FaultNone, 1) // the status answers...
	dev.SetFault(pearltest.FaultUnavailable)
	if _, err := w.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	dev.SetFault(pearltest.FaultNone)
	if len(got) != 1 || healthData(t, got[0]).Status != HealthOnline || healthData(t, got[0]).DeviceName != "" {
		t.Fatalf("events: %+v", got)
	}
	if _, err := w.poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.tracker.ident == nil || w.tracker.ident.Name != "Studio A" || w.tracker.firmware == nil {
		t.Errorf("identity not fetched again: %+v %+v", w.tracker.ident, w.tracker.firmware)
	}
}

func TestDeviceHealthConfig(t *testing.T) {
	_, srv := fakeDevice(t, pearltest.Options{})
	tests := []struct {
		name string
		edit func(*DeviceHealthSource)
		err  string
	}{
		{name: "defaults", edit: func(*DeviceHealthSource) {}},
		{name: "zero interval", edit: func(s *DeviceHealthSource) { s.Interval = 0 }, err: "interval must be positive"},
		{name: "backoff below interval", edit: func(s *DeviceHealthSource) { s.MaxBackoff = s.Interval / 2 }, err: "max_backoff"},
		{name: "negative cpu_step", edit: func(s *DeviceHealthSource) { s.CPUStep = -1 }, err: "cpu_step must not be negative"},
		{name: "negative temp_step", edit: func(s *DeviceHealthSource) { s.TempStep = -1 }, err: "temp_step must not be negative"},
		{name: "bad pattern", edit: func(s *DeviceHealthSource) { s.Devices = []string{"["} }, err: "bad pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := newEnv(t, deviceConfig("a", srv))
			s := NewDeviceHealthSource()
			tt.edit(s)
			err := s.Init(env)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Init error = %v, want %q", err, tt.err)
			}
		})
	}
	if got := NewDeviceHealthSource().DataTypes(); len(got) != 1 || got[0] != "device_health" {
		t.Errorf("DataTypes = %v", got)
	}
	if got := NewPublisherStatusSource().DataTypes(); len(got) != 1 || got[0] != "publisher_status" {
		t.Errorf("DataTypes = %v", got)
	}
	if err := NewDeviceHealthSource().Run(context.Background(), func(engine.Event) {}); err == nil {
		t.Errorf("Run before Init: want an error")
	}
}
