package plugins

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/pearld/pearld/engine"
	pb "github.com/pearld/pearld/sdk/proto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// stuckPolls is how many polls of one device in a row may exceed their
// deadline before the plugin is deemed stuck and restarted.
const stuckPolls = 3

// deviceWatcher polls one device through the plugin: at once, then every
// interval, one poll in flight, backing off while the device fails.
type deviceWatcher struct {
	s    *Source
	p    *process
	d    *engine.Device
	emit func(engine.Event)
	fail context.CancelCauseFunc // restarts the plugin
	log  *slog.Logger

	failing    bool
	failReason string
	failures   int
	failedAt   time.Time
	stuck      int
}

func (w *deviceWatcher) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	interval := w.s.Interval.D()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		ok, err := w.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.fail(err)
			return
		}
		wait := interval
		if !ok {
			wait = backoff(interval, w.s.MaxBackoff.D(), w.failures, rand.Int64N)
		}
		timer.Reset(wait)
	}
}

// pollTimeout bounds one poll: a plugin may make several requests to the
// device in one poll, each bounded by the device's timeout.
func (w *deviceWatcher) pollTimeout() time.Duration {
	t := w.d.Timeout.D()
	if t <= 0 {
		t = 5 * time.Second
	}
	return 2*t + time.Second
}

// poll polls once. ok is false when the device failed; err is set when
// the plugin must be restarted.
func (w *deviceWatcher) poll(ctx context.Context) (ok bool, err error) {
	m := w.s.metrics
	pctx, cancel := context.WithTimeout(ctx, w.pollTimeout())
	defer cancel()
	start := time.Now()
	resp, err := w.p.source.Poll(pctx, &pb.PollRequest{Device: &pb.Device{
		Name:               w.d.Name,
		Address:            w.d.Address,
		Username:           w.d.Username,
		Password:           w.d.Password,
		InsecureSkipVerify: w.d.InsecureSkipVerify,
		TimeoutMs:          w.d.Timeout.D().Milliseconds(),
	}})
	m.duration.Observe(time.Since(start).Seconds())
	if ctx.Err() != nil {
		return false, nil
	}
	if err != nil {
		m.polls.WithLabelValues("plugin_error").Inc()
		return false, w.pluginFailed(err)
	}
	w.stuck = 0
	if msg := resp.GetError(); msg != "" {
		m.polls.WithLabelValues("device_error").Inc()
		w.failed(msg, resp.GetReason())
		return false, nil
	}
	m.polls.WithLabelValues("ok").Inc()
	if w.failing {
		w.log.Info("polling through the plugin recovered",
			"failures", w.failures, "down_for", time.Since(w.failedAt).Round(time.Millisecond))
		w.failing, w.failReason, w.failures = false, "", 0
	}
	for _, e := range resp.GetEvents() {
		if ev, ok := w.event(e); ok {
			w.emit(ev)
		}
	}
	return true, nil
}

// pluginFailed decides what a failed call means: a plugin that died or
// keeps missing its deadline is restarted; another error counts as a
// failed poll.
func (w *deviceWatcher) pluginFailed(err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled:
		// Most likely the process died: Run reports it with its exit
		// status. A connection that broke under a live plugin restarts it.
		select {
		case <-w.p.exited():
			return nil
		case <-time.After(time.Second):
			return fmt.Errorf("polling %s: %w", w.d.Name, err)
		}
	case codes.DeadlineExceeded:
		w.stuck++
		if w.stuck >= stuckPolls {
			return fmt.Errorf("%w: %d polls of %s in a row took longer than %s", errStuck, w.stuck, w.d.Name, w.pollTimeout())
		}
	}
	w.failed(err.Error(), "plugin")
	return nil
}

// failed logs the first failure, and a change of its reason, not every one.
func (w *deviceWatcher) failed(msg, reason string) {
	w.failures++
	if w.failing && reason == w.failReason {
		return
	}
	if !w.failing {
		w.failedAt = time.Now()
	}
	w.failing, w.failReason = true, reason
	w.log.Warn("polling through the plugin failed", "err", msg, "reason", reason)
}

// event converts a plugin's event, rejecting one the plugin may not emit.
func (w *deviceWatcher) event(e *pb.Event) (engine.Event, bool) {
	reject := func(why string) (engine.Event, bool) {
		w.s.metrics.rejected.Inc()
		w.log.Warn("dropping an event of the plugin: "+why, "type", e.GetType(), "event_device", e.GetDevice())
		return engine.Event{}, false
	}
	switch {
	case !slices.Contains(w.s.desc.DataTypes, e.GetType()):
		return reject("its data type is not one the plugin declares")
	case e.GetDevice() != "" && e.GetDevice() != w.d.Name:
		return reject("it is not about the polled device")
	case len(e.GetData()) == 0:
		return reject("it has no data")
	}
	ev := engine.Event{
		Type:      e.GetType(),
		Device:    w.d.Name,
		Channel:   e.GetChannel(),
		Publisher: e.GetPublisher(),
		Data:      e.GetData(),
		Hash:      e.GetHash(),
	}
	if ns := e.GetTimeUnixNano(); ns != 0 {
		ev.Time = time.Unix(0, ns)
	}
	return ev, true
}

// backoff returns the wait after the n-th failure in a row: interval
// doubled for every failure after the first, at most maxWait (or interval
// if larger), plus up to a quarter of random jitter so that devices that
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
