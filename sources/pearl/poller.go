package pearl

import (
	"context"
	"math/rand/v2"
	"time"
)

const (
	// DefaultMaxBackoff is the longest wait between polls of a failing
	// device.
	DefaultMaxBackoff = 60 * time.Second
	// kickWindow is how long a kick, or a publisher seen starting, keeps
	// the publisher poller fast at most.
	kickWindow = 5 * time.Second
	// kickSettle is how long the publisher poller stays fast after a kick
	// even when nothing is starting: a device may take a moment to apply
	// a command it accepted.
	kickSettle = time.Second
)

// pollFunc polls a device once. busy asks for fast polling (a publisher is
// starting); err reports that the device failed, which makes the loop back
// off. It is not called again before it returned.
type pollFunc func(ctx context.Context) (busy bool, err error)

// pollLoop schedules the polls of one device: at once, then every
// interval; with backoff and jitter while the device fails; at once on a
// kick of the device's client; and, when fast is set, every fast while a
// kick is recent or a publisher is starting.
type pollLoop struct {
	client     *Client
	poll       pollFunc
	interval   time.Duration
	fast       time.Duration // 0: no fast polling
	maxBackoff time.Duration
	// minGap is the shortest time between the starts of two polls, so
	// that kicks in a row cannot hammer the device.
	minGap time.Duration
}

// run polls until ctx ends.
func (l *pollLoop) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var (
		failures  int
		lastPoll  time.Time
		kickAt    time.Time // last kick, zero when none is recent
		busySince time.Time // since when publishers are starting, zero when none is
	)
	kicked := l.client.Kicked()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kicked:
			kicked = l.client.Kicked()
			kickAt = time.Now()
			if gap := l.minGap - time.Since(lastPoll); gap > 0 {
				timer.Reset(gap)
				continue
			}
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return // select picks at random among ready cases
		}

		// A kick that came after the wake-up is served by this poll, but
		// still starts a fast phase; a kick from now on means: poll again.
		select {
		case <-kicked:
			kickAt = time.Now()
		default:
		}
		kicked = l.client.Kicked()
		lastPoll = time.Now()
		busy, err := l.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		if err != nil {
			failures++
			timer.Reset(backoff(l.interval, l.maxBackoff, failures, rand.Int64N))
			continue
		}
		failures = 0
		switch {
		case !busy:
			busySince = time.Time{}
		case busySince.IsZero():
			busySince = now
		}
		if !kickAt.IsZero() && now.Sub(kickAt) >= kickWindow {
			kickAt = time.Time{}
		}
		wait := l.interval
		if l.fast > 0 && l.wantFast(now, kickAt, busySince) {
			wait = l.fast
		}
		timer.Reset(wait)
	}
}

// wantFast reports whether the publisher poller polls fast: for
// kickSettle after a kick, then while publishers are starting, for at
// most kickWindow after the kick or after they started starting (a
// publisher stuck in starting must not be polled fast forever).
func (l *pollLoop) wantFast(now, kickAt, busySince time.Time) bool {
	busy := !busySince.IsZero()
	if !kickAt.IsZero() && (now.Sub(kickAt) < kickSettle || busy) {
		return true
	}
	return busy && now.Sub(busySince) < kickWindow
}

// backoff returns the wait after the n-th failure in a row: interval
// doubled for every failure after the first, at most max (or interval if
// larger), plus up to a quarter of random jitter so that devices that
// failed together do not retry together. randN returns a number in [0, n).
func backoff(interval, maxWait time.Duration, n int, randN func(int64) int64) time.Duration {
	maxWait = max(maxWait, interval)
	d := interval
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d + time.Duration(randN(int64(d/4)+1))
}
