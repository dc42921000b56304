package fleet

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the engine's Prometheus series. The op label is one of a
// fixed set of operations; no label carries a key.
type metrics struct {
	connected  prometheus.Gauge
	leasesHeld prometheus.Gauge
	takeovers  prometheus.Counter
	errors     *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	eventsRead prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, leaderless func() float64) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_cluster_connected",
			Help: "1 while this replica shares polls and history through Redis, 0 while it polls alone.",
		}),
		leasesHeld: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_leases_held",
			Help: "Keys this replica holds the poll lease of, and so polls for the fleet.",
		}),
		takeovers: f.NewCounter(prometheus.CounterOpts{
			Name: "ssegate_lease_takeovers_total",
			Help: "Poll leases this replica acquired for a key another replica wrote last.",
		}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ssegate_redis_errors_total",
			Help: "Redis calls that failed, by operation.",
		}, []string{"op"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ssegate_redis_duration_seconds",
			Help:    "Time of Redis calls, by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
		eventsRead: f.NewCounter(prometheus.CounterOpts{
			Name: "ssegate_redis_events_read_total",
			Help: "Events read from Redis for this replica's clients.",
		}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ssegate_keys_without_lease_holder",
		Help: "Keys with clients on this replica whose poll lease no replica has held for longer than SSEGATE_LEASE_TIME while Redis answers: nobody polls them.",
	}, leaderless)
	for _, op := range []string{opAcquire, opRenew, opRelease, opAppend, opRead, opPublish, opProbe, opReplica} {
		m.errors.WithLabelValues(op) // so the series exist from the start
		m.duration.WithLabelValues(op)
	}
	return m
}
