package engine

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// engineMetrics are the per-component counters the runner keeps for every
// component of every pipeline.
type engineMetrics struct {
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	dropped  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	restarts *prometheus.CounterVec
	queued   *prometheus.GaugeVec
	duration *prometheus.HistogramVec
}

var componentLabels = []string{"pipeline", "component", "type"}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	m := &engineMetrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_component_received_events_total",
			Help: "Events a processor or sink received from its inputs.",
		}, componentLabels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_component_sent_events_total",
			Help: "Events a source or processor passed downstream.",
		}, componentLabels),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_component_dropped_events_total",
			Help: "Events dropped at a component's input: queue full with when_full = drop_newest, a failed call, or shutdown.",
		}, componentLabels),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_component_errors_total",
			Help: "Errors returned by a component's Run, Process or Write.",
		}, componentLabels),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_component_restarts_total",
			Help: "Times a failed source was restarted.",
		}, componentLabels),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pearld_component_queued_batches",
			Help: "Batches waiting in a component's input queue.",
		}, componentLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pearld_component_call_duration_seconds",
			Help:    "Time spent in one Process or Write call.",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1},
		}, componentLabels),
	}
	reg.MustRegister(m.received, m.sent, m.dropped, m.errors, m.restarts, m.queued, m.duration)
	return m
}

// forgetComponent removes one component's series.
func (m *engineMetrics) forgetComponent(pipeline, component string) {
	l := prometheus.Labels{"pipeline": pipeline, "component": component}
	m.received.DeletePartialMatch(l)
	m.sent.DeletePartialMatch(l)
	m.dropped.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.restarts.DeletePartialMatch(l)
	m.queued.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}

// forget removes a pipeline's series, so a stopped pipeline does not
// report stale values.
func (m *engineMetrics) forget(pipeline string) {
	l := prometheus.Labels{"pipeline": pipeline}
	m.received.DeletePartialMatch(l)
	m.sent.DeletePartialMatch(l)
	m.dropped.DeletePartialMatch(l)
	m.errors.DeletePartialMatch(l)
	m.restarts.DeletePartialMatch(l)
	m.queued.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}

// collectorRefs counts the users of each registered collector. A reload
// may hand a component's metrics to its replacement (which adopts them
// through prometheus.AlreadyRegisteredError); the collector is unregistered
// only when its last user is gone.
type collectorRefs struct {
	mu   sync.Mutex
	refs map[prometheus.Collector]int
}

func (r *collectorRefs) add(c prometheus.Collector) {
	r.mu.Lock()
	if r.refs == nil {
		r.refs = map[prometheus.Collector]int{}
	}
	r.refs[c]++
	r.mu.Unlock()
}

// release drops one use and reports whether it was the last.
func (r *collectorRefs) release(c prometheus.Collector) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refs[c]--
	if r.refs[c] > 0 {
		return false
	}
	delete(r.refs, c)
	return true
}

// trackingRegisterer remembers what a component registered or adopted so
// the engine can unregister it when the component stops for good.
type trackingRegisterer struct {
	inner prometheus.Registerer
	refs  *collectorRefs
	mu    sync.Mutex
	cs    []prometheus.Collector
}

func newTrackingRegisterer(inner prometheus.Registerer, refs *collectorRefs) *trackingRegisterer {
	return &trackingRegisterer{inner: inner, refs: refs}
}

func (t *trackingRegisterer) Register(c prometheus.Collector) error {
	err := t.inner.Register(c)
	used := c
	if err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
		used = are.ExistingCollector
	}
	t.refs.add(used)
	t.mu.Lock()
	t.cs = append(t.cs, used)
	t.mu.Unlock()
	return err
}

func (t *trackingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

func (t *trackingRegisterer) Unregister(c prometheus.Collector) bool {
	t.mu.Lock()
	found := false
	for i, x := range t.cs {
		if x == c {
			t.cs = append(t.cs[:i], t.cs[i+1:]...)
			found = true
			break
		}
	}
	t.mu.Unlock()
	if found && !t.refs.release(c) {
		return true
	}
	return t.inner.Unregister(c)
}

func (t *trackingRegisterer) unregisterAll() {
	t.mu.Lock()
	cs := t.cs
	t.cs = nil
	t.mu.Unlock()
	for _, c := range cs {
		if t.refs.release(c) {
			t.inner.Unregister(c)
		}
	}
}

func counterValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil || m.Counter == nil {
		return 0
	}
	return uint64(m.Counter.GetValue())
}

// RegisterCollector registers c, or returns the equal collector already
// registered: after a reload a component's replacement adopts the metrics
// of the component it replaces, so its counters continue.
func RegisterCollector[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
