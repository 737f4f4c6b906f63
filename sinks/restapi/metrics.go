package restapi

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors of one rest_events sink; the engine adds the
// pipeline and component labels.
//
//	pearld_rest_requests_total{route,method,code}     requests answered, by route template
//	pearld_rest_request_duration_seconds{route}       time to answer, device calls included
//	pearld_rest_control_calls_total{action,result}    control calls that reached a device, by outcome
//	pearld_rest_events_stored                         events held by the event store
//	pearld_rest_events_evicted_total                  events evicted because max_events was reached
//	pearld_rest_events_expired_total                  events removed because their ttl passed
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	control  *prometheus.CounterVec
	stored   prometheus.Gauge
	evicted  prometheus.Counter
	expired  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	var err error
	if m.requests, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pearld_rest_requests_total",
		Help: "REST API requests answered, by route template, method and HTTP status.",
	}, []string{"route", "method", "code"})); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pearld_rest_request_duration_seconds",
		Help:    "Time to answer a REST API request, including the device call of control requests.",
		Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 2.5, 5, 10},
	}, []string{"route"})); err != nil {
		return nil, err
	}
	if m.control, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pearld_rest_control_calls_total",
		Help: "Publisher control calls made to devices, by action and result (ok, or the error code of the answer).",
	}, []string{"action", "result"})); err != nil {
		return nil, err
	}
	if m.stored, err = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pearld_rest_events_stored",
		Help: "Events held by the REST API's event store.",
	})); err != nil {
		return nil, err
	}
	if m.evicted, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pearld_rest_events_evicted_total",
		Help: "Events evicted from the REST API's event store because it held max_events.",
	})); err != nil {
		return nil, err
	}
	if m.expired, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pearld_rest_events_expired_total",
		Help: "Events removed from the REST API's event store because their ttl passed.",
	})); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector of the same description
// that reg already holds (a pipeline being replaced still holds its own),
// so that a new sink keeps counting in the series the old one started.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
	return c, fmt.Errorf("registering metrics: %w", err)
}
