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
	hints    map[Hint]prometheus.Counter
	legacy   prometheus.Gauge
	kinds    map[priority]prometheus.Counter
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
	hints := f.NewCounterVec(prometheus.CounterOpts{
		Name: "ssegate_upstream_hints_total",
		Help: "Upstream answers whose headers changed a key's schedule, by hint: poll_interval, max_age (shortest interval), ratelimit, x_ratelimit, retry_after (pause).",
	}, []string{"hint"})
	m.hints = make(map[Hint]prometheus.Counter)
	for _, h := range Hints() {
		m.hints[h] = hints.WithLabelValues(string(h))
	}
	kinds := f.NewCounterVec(prometheus.CounterOpts{
		Name: "ssegate_upstream_polls_by_kind_total",
		Help: "Upstream polls started, by kind: admission (a key's first), nudge (outside the load contract), regular (within it).",
	}, []string{"kind"})
	m.kinds = map[priority]prometheus.Counter{
		priorityAdmission: kinds.WithLabelValues("admission"),
		priorityNudge:     kinds.WithLabelValues("nudge"),
		priorityRegular:   kinds.WithLabelValues("regular"),
	}
	m.legacy = f.NewGauge(prometheus.GaugeOpts{
		Name: "ssegate_legacy_polling_rps",
		Help: "What the subscribers' pages would cost the upstream by polling every SSEGATE_LEGACY_INTERVAL: the sum over keys of subscribers / legacy interval (0 with the contract off).",
	})
	return m
}
