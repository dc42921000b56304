package poller

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	polls    map[Outcome]prometheus.Counter
	duration prometheus.Histogram
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
	}
	for _, o := range Outcomes() {
		m.polls[o] = vec.WithLabelValues(string(o))
	}
	return m
}
