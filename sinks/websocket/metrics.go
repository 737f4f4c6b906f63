package websocket

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of connection attempts, the label of connections_total.
const (
	resultAccepted        = "accepted"
	resultUnauthenticated = "unauthenticated"
	resultForbidden       = "forbidden"
	resultLimit           = "limit"
	resultOrigin          = "origin"
	resultShutdown        = "shutting_down"
	resultFailed          = "upgrade_failed"
)

type metrics struct {
	connections   prometheus.Gauge
	connTotal     *prometheus.CounterVec
	sent          prometheus.Counter
	slowDropped   prometheus.Counter
	subscriptions prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pearld_websocket_connections",
			Help: "WebSocket clients connected now.",
		}),
		connTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pearld_websocket_connections_total",
			Help: "WebSocket connection attempts by result: accepted, unauthenticated, forbidden, limit, origin, shutting_down, upgrade_failed.",
		}, []string{"result"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_websocket_messages_sent_total",
			Help: "Messages sent to WebSocket clients; events inside batch frames count one each.",
		}),
		slowDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pearld_websocket_slow_clients_dropped_total",
			Help: "WebSocket clients closed because their send queue was full.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pearld_websocket_subscriptions",
			Help: "Subscriptions of connected WebSocket clients.",
		}),
	}
	for _, r := range []string{resultAccepted, resultUnauthenticated, resultForbidden, resultLimit, resultOrigin, resultShutdown, resultFailed} {
		m.connTotal.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.connections, m.connTotal, m.sent, m.slowDropped, m.subscriptions} {
		if err := reg.Register(c); err != nil {
			// A registry shared across a reload keeps the old collectors;
			// that is not an error for the new hub, but it must use them.
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			if err := adopt(m, c, are.ExistingCollector); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// adopt replaces a collector of m by the one already registered.
func adopt(m *metrics, mine, existing prometheus.Collector) error {
	var ok bool
	switch mine {
	case m.connections:
		m.connections, ok = existing.(prometheus.Gauge)
	case m.connTotal:
		m.connTotal, ok = existing.(*prometheus.CounterVec)
	case m.sent:
		m.sent, ok = existing.(prometheus.Counter)
	case m.slowDropped:
		m.slowDropped, ok = existing.(prometheus.Counter)
	case m.subscriptions:
		m.subscriptions, ok = existing.(prometheus.Gauge)
	}
	if !ok {
		return errors.New("a different collector is registered under a websocket metric name")
	}
	return nil
}
