package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	events   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_webhook_requests_total",
			Help: "Webhook requests by result: accepted, or why they were refused (method_not_allowed, unauthenticated, forbidden, unsupported_media_type, too_large, timeout, malformed, invalid, unavailable).",
		}, []string{"result"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_webhook_events_total",
			Help: "Events of accepted webhook requests, handed to the pipeline.",
		}),
	}
	for _, r := range results {
		m.requests.WithLabelValues(r)
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.events, err = register(reg, m.events); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered in
// its place: a registry shared across a reload keeps the old one, which
// the new component must then use.
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
	return c, err
}
