package pearl

import (
	"testing"
	"time"

	"github.com/pearld/pearld/sources/pearl/pearltest"
)

func TestBackoff(t *testing.T) {
	noJitter := func(int64) int64 { return 0 }
	fullJitter := func(n int64) int64 { return n - 1 }
	tests := []struct {
		name          string
		interval, max time.Duration
		failures      int
		jitter        func(int64) int64
		want          time.Duration
	}{
		{name: "first failure waits the interval", interval: 5 * time.Second, max: time.Minute, failures: 1, jitter: noJitter, want: 5 * time.Second},
		{name: "doubles", interval: 5 * time.Second, max: time.Minute, failures: 3, jitter: noJitter, want: 20 * time.Second},
		{name: "capped", interval: 5 * time.Second, max: time.Minute, failures: 10, jitter: noJitter, want: time.Minute},
		{name: "many failures do not overflow", interval: 5 * time.Second, max: time.Minute, failures: 1000, jitter: noJitter, want: time.Minute},
		{name: "jitter adds up to a quarter", interval: 4 * time.Second, max: time.Minute, failures: 1, jitter: fullJitter, want: 5 * time.Second},
		{name: "cap below interval", interval: 2 * time.Minute, max: time.Minute, failures: 4, jitter: noJitter, want: 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := backoff(tt.interval, tt.max, tt.failures, tt.jitter); got != tt.want {
				t.Errorf("backoff = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWantFast(t *testing.T) {
	now := time.Now()
	var none time.Time
	tests := []struct {
		name              string
		kickAt, busySince time.Time
		want              bool
	}{
		{name: "idle", kickAt: none, busySince: none, want: false},
		{name: "just kicked, nothing starting yet", kickAt: now.Add(-100 * time.Millisecond), want: true},
		{name: "kicked a while ago, settled", kickAt: now.Add(-2 * time.Second), want: false},
		{name: "kicked a while ago, still starting", kickAt: now.Add(-2 * time.Second), busySince: now.Add(-time.Second), want: true},
		{name: "starting on its own", busySince: now.Add(-time.Second), want: true},
		{name: "stuck in starting", busySince: now.Add(-kickWindow), want: false},
	}
	l := &pollLoop{fast: 10 * time.Millisecond}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.wantFast(now, tt.kickAt, tt.busySince); got != tt.want {
				t.Errorf("wantFast = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBackoffWhileFailing checks that polls thin out while a device fails
// and return to the interval as soon as it answers.
func TestBackoffWhileFailing(t *testing.T) {
	dev, srv := fakeDevice(t, pearltest.Options{})
	env, _ := newEnv(t, deviceConfig("a", srv))
	src := healthSource(20 * time.Millisecond)
	src.MaxBackoff.UnmarshalText([]byte("320ms"))
	rec := run(t, src, env)
	rec.next(t, "online", healthIs(t, HealthOnline))

	const path = "/api/v2.0/system/status"
	dev.SetFault(pearltest.FaultUnavailable)
	rec.next(t, "offline", healthIs(t, HealthOffline))
	dev.ResetCounters()
	time.Sleep(time.Second) // a rate needs a window
	failing := dev.Requests(path)
	// 20, 40, 80, 160, 320, 320 ms (+ up to 25%): about 6 polls; at the
	// interval it would be 50.
	if failing > 10 {
		t.Errorf("%d polls in 1s while failing, want backoff", failing)
	}

	dev.SetFault(pearltest.FaultNone)
	start := time.Now()
	rec.next(t, "online again", healthIs(t, HealthOnline))
	if d := time.Since(start); d > time.Second {
		t.Errorf("recovery noticed after %s, want within the backoff cap", d)
	}
	dev.ResetCounters()
	time.Sleep(300 * time.Millisecond)
	if healthy := dev.Requests(path); healthy < 5 {
		t.Errorf("%d polls in 300ms after recovery, want the 20ms interval back", healthy)
	}
}
