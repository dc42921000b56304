package stream

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the hub's Prometheus series. No label carries a path, query or
// identity: their number would be unbounded.
type metrics struct {
	connsActive   prometheus.Gauge
	connsTotal    prometheus.Counter
	connsMax      prometheus.Gauge
	keysActive    prometheus.Gauge
	keysActiveOld prometheus.Gauge // ssegate_streams_active, deprecated
	published     [numKinds]prometheus.Counter
	delivered     prometheus.Counter
	evictedVec    *prometheus.CounterVec
	rejected      *prometheus.CounterVec
}

// newMetrics registers the hub's series; maxConns is the configured cap on
// open streams (Options.MaxConnections, 0: none), exported so that rules can
// compare ssegate_connections_active with it.
func newMetrics(reg prometheus.Registerer, maxConns int) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		connsActive: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_connections_active",
			Help: "Event streams open now.",
		}),
		connsTotal: f.NewCounter(prometheus.CounterOpts{
			Name: "ssegate_connections_total",
			Help: "Event streams opened since start.",
		}),
		connsMax: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_connections_max",
			Help: "The configured SSEGATE_MAX_CONNECTIONS: most event streams open at once (0: no cap).",
		}),
		keysActive: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_keys_active",
			Help: "Stream keys being polled now (distinct path, query and identity).",
		}),
		// The old name of ssegate_keys_active, kept for one release so that
		// dashboards can move: it counted keys, not streams.
		keysActiveOld: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_streams_active",
			Help: "Deprecated: ssegate_keys_active; removed in the next release.",
		}),
		delivered: f.NewCounter(prometheus.CounterOpts{
			Name: "ssegate_events_delivered_total",
			Help: "Events written to clients (one per event per client).",
		}),
		evictedVec: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ssegate_clients_evicted_total",
			Help: "Streams ended by the gateway, by reason (slow, denied, shutdown).",
		}, []string{"reason"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ssegate_streams_rejected_total",
			Help: "Event streams refused, by reason: max_connections, max_streams_per_ip, max_keys (503), shutdown (200 and an immediate end).",
		}, []string{"reason"}),
	}
	m.connsMax.Set(float64(maxConns))
	for _, r := range []string{"max_connections", "max_streams_per_ip", "max_keys", "shutdown"} {
		m.rejected.WithLabelValues(r)
	}
	pub := f.NewCounterVec(prometheus.CounterOpts{
		Name: "ssegate_events_published_total",
		Help: "Change events published, by event type.",
	}, []string{"event"})
	for _, k := range Kinds() {
		m.published[k] = pub.WithLabelValues(k.String())
	}
	for _, r := range []string{reasonSlow, reasonDenied, reasonShutdown} {
		m.evictedVec.WithLabelValues(r) // so the series exist from the start
	}
	return m
}

// keys adds n to the keys active, under both names.
func (m *metrics) keys(n float64) {
	m.keysActive.Add(n)
	m.keysActiveOld.Add(n)
}

func (m *metrics) evicted(reason string) { m.evictedVec.WithLabelValues(reason).Inc() }

// reject counts a subscription refused with err, one of the admission errors.
func (m *metrics) reject(err error) {
	reason := "shutdown"
	switch {
	case errors.Is(err, ErrTooManyConnections):
		reason = "max_connections"
	case errors.Is(err, ErrTooManyPerIP):
		reason = "max_streams_per_ip"
	case errors.Is(err, ErrTooManyKeys):
		reason = "max_keys"
	}
	m.rejected.WithLabelValues(reason).Inc()
}
