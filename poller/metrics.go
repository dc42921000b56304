package poller

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	polls    map[Outcome]prometheus.Counter
	duration prometheus.Histogram
	interval prometheus.Histogram
	lag      prometheus.Histogram
	budget   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	vec := f.NewCounterVec(prometheus.CounterOpts{
		Name: "ssegate_upstream_polls_total",
		Help: "Upstream polls, by outcome.",
	}, []string{"outcome"})
	m := &metrics{
		polls: make(map[Outcome]prometheus.Counter),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "ssegate_upstream_poll_duration_seconds",
			Help:    "Time of one upstream poll, body included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		interval: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "ssegate_poll_interval_seconds",
			Help:    "Time between the starts of two polls of one key (the effective interval).",
			Buckets: []float64{.1, .25, .5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300},
		}),
		lag: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "ssegate_poll_lag_seconds",
			Help:    "How late polls start against their schedule (waiting for the budget or a slot).",
			Buckets: []float64{0, .001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		budget: f.NewGauge(prometheus.GaugeOpts{
			Name: "ssegate_upstream_budget_rps",
			Help: "Configured cap on upstream polls per second across all keys; 0 means none.",
		}),
	}
	for _, o := range Outcomes() {
		m.polls[o] = vec.WithLabelValues(string(o))
	}
	return m
}
