package pearl

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus collectors of the Clients of a pipeline,
// labelled by device. One Metrics serves any number of Clients; ClientFor
// shares one per pipeline.
//
//	pearld_pearl_requests_total{device,path,code}         requests by HTTP status ("error": no answer, "canceled")
//	pearld_pearl_request_errors_total{device,path,reason}  failed requests by Reason
//	pearld_pearl_request_duration_seconds{device,path}     time from sending to the whole body
//	pearld_pearl_request_wait_seconds{device}              time waiting for one of the MaxInFlight slots
//	pearld_pearl_requests_in_flight{device}                requests being sent or read
//
// path is the route of the API document, such as "/channels" or
// "/channels/{cid}/publishers/control/start", so it does not grow with ids.
type Metrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg, unless reg
// is nil. Collectors that reg already holds (registered by an earlier
// NewMetrics, for instance before a pipeline reload) are reused, so
// NewMetrics may be called more than once with the same registerer.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_pearl_requests_total",
			Help: "Requests to Pearl devices by route and HTTP status (error: no answer).",
		}, []string{"device", "path", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_pearl_request_errors_total",
			Help: "Failed requests to Pearl devices by route and reason.",
		}, []string{"device", "path", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pearld_pearl_request_duration_seconds",
			Help:    "Duration of requests to Pearl devices, until the whole answer was read.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"device", "path"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pearld_pearl_request_wait_seconds",
			Help:    "Time requests waited for a free slot of the per-device in-flight limit.",
			Buckets: []float64{.001, .01, .05, .1, .5, 1, 5},
		}, []string{"device"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pearld_pearl_requests_in_flight",
			Help: "Requests to Pearl devices in flight.",
		}, []string{"device"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.wait, err = register(reg, m.wait); err != nil {
		return nil, err
	}
	if m.inFlight, err = register(reg, m.inFlight); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector reg already holds.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("registering pearl client metrics: %w", err)
}

// deviceMetrics are the collectors curried with one device's label.
type deviceMetrics struct {
	parent   *Metrics
	device   string
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration prometheus.ObserverVec
	wait     prometheus.Observer
	inFlight prometheus.Gauge
}

func (m *Metrics) forDevice(device string) *deviceMetrics {
	l := prometheus.Labels{"device": device}
	return &deviceMetrics{
		parent:   m,
		device:   device,
		requests: m.requests.MustCurryWith(l),
		errors:   m.errors.MustCurryWith(l),
		duration: m.duration.MustCurryWith(l),
		wait:     m.wait.With(l),
		inFlight: m.inFlight.With(l),
	}
}

// forget removes the device's series, when its client is closed.
func (d *deviceMetrics) forget() {
	l := prometheus.Labels{"device": d.device}
	d.parent.requests.DeletePartialMatch(l)
	d.parent.errors.DeletePartialMatch(l)
	d.parent.duration.DeletePartialMatch(l)
	d.parent.wait.DeletePartialMatch(l)
	d.parent.inFlight.DeletePartialMatch(l)
}
