package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// SteadyOptions describe the load-contract scenario: N users with one tab
// each (their own key and TLS connection), each user's list changing once
// every Every, staggered, against pages that polled every LegacyInterval.
type SteadyOptions struct {
	// URL is the event stream to open.
	URL string
	// Users is how many users, each with one stream.
	Users int
	// Every is the time between two changes of one user.
	Every time.Duration
	// Warmup runs the changes before measuring, so that every key is past
	// its admission and the contract's credit is in its steady state.
	// Default: LegacyInterval.
	Warmup time.Duration
	// Duration is the measured window.
	Duration time.Duration
	// LegacyInterval is how often each user's page polled: the legacy
	// rate is Users / LegacyInterval.
	LegacyInterval time.Duration
	// Change makes change n for the users (and nudges, if the run does).
	Change func(ctx context.Context, n int, users []string) (time.Time, error)
	// UpstreamPolls counts the upstream's requests.
	UpstreamPolls func() int
	// Metrics, when set, is the gateway's /metrics URL: polls by kind.
	Metrics string
	// OpenConcurrency bounds handshakes in flight while opening. Default 64.
	OpenConcurrency int
	// Log receives progress lines; nil: none.
	Log func(format string, args ...any)
}

// SteadyReport is the result of a steady run.
type SteadyReport struct {
	Users          int     `json:"users"`
	Opened         int     `json:"opened"`
	Failed         int     `json:"failed"`
	EverySeconds   float64 `json:"change_every_seconds"`
	LegacySeconds  float64 `json:"legacy_interval_seconds"`
	WindowSeconds  float64 `json:"window_seconds"`
	Changes        int     `json:"changes"`
	Delivered      int     `json:"deliveries"`
	Missing        int     `json:"deliveries_missing"`
	Duplicates     int     `json:"deliveries_duplicated"`
	LatencyP50MS   float64 `json:"latency_p50_ms"`
	LatencyP99MS   float64 `json:"latency_p99_ms"`
	LatencyMaxMS   float64 `json:"latency_max_ms"`
	UpstreamPolls  int     `json:"upstream_polls"`
	UpstreamRPS    float64 `json:"upstream_rps"`
	LegacyRPS      float64 `json:"legacy_rps"`
	GaugeLegacyRPS float64 `json:"gauge_legacy_polling_rps,omitempty"`
	RegularPolls   float64 `json:"regular_polls,omitempty"`
	NudgedPolls    float64 `json:"nudged_polls,omitempty"`
}

type change struct {
	n    int
	user *client
	at   time.Time
}

// RunSteady opens the users' streams, changes each user every Every
// (staggered evenly), and measures the upstream's request rate over the
// window and the time from each change in it to its client.
func RunSteady(ctx context.Context, o SteadyOptions) (SteadyReport, error) {
	if o.Warmup <= 0 {
		o.Warmup = o.LegacyInterval
	}
	if o.OpenConcurrency <= 0 {
		o.OpenConcurrency = 64
	}
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rep := SteadyReport{Users: o.Users, EverySeconds: o.Every.Seconds(), LegacySeconds: o.LegacyInterval.Seconds()}
	if o.LegacyInterval > 0 {
		rep.LegacyRPS = float64(o.Users) / o.LegacyInterval.Seconds()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	clients := make([]*client, o.Users)
	transports := make([]*http.Transport, 0, o.Users)
	defer func() {
		for _, tr := range transports {
			tr.CloseIdleConnections()
		}
	}()
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.OpenConcurrency)
	var failed atomic.Int64
	logf("opening %d streams, one connection each", o.Users)
	for i := range clients {
		c := &client{user: UserName(i), arrived: map[int]time.Time{}, ready: make(chan struct{})}
		clients[i] = c
		tr := insecureTransport()
		tr.MaxConnsPerHost = 1
		transports = append(transports, tr)
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.open(ctx, tr, o.URL, "", false); err != nil {
				c.err = err
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	for _, c := range clients {
		if c.err != nil {
			continue
		}
		select {
		case <-c.ready:
		case <-time.After(30 * time.Second):
			return rep, fmt.Errorf("user %s got no snapshot in 30s", c.user)
		}
	}
	rep.Failed = int(failed.Load())
	rep.Opened = o.Users - rep.Failed
	logf("opened %d, failed %d", rep.Opened, rep.Failed)

	// One change at a time, user after user, Every/Users apart: each user
	// changes once per Every.
	step := o.Every / time.Duration(o.Users)
	tick := time.NewTicker(step)
	defer tick.Stop()
	begin := time.Now()
	windowStart, windowEnd := begin.Add(o.Warmup), begin.Add(o.Warmup+o.Duration)
	var measured []change
	var polls0 int
	var kinds0 map[string]float64
	started := false
	for n := 1; ; n++ {
		now := time.Now()
		if !started && !now.Before(windowStart) {
			started = true
			polls0 = o.UpstreamPolls()
			kinds0 = scrape(o.Metrics)
			logf("warm-up over; measuring for %v", o.Duration)
		}
		if !now.Before(windowEnd) {
			break
		}
		c := clients[n%o.Users]
		if c.err == nil {
			at, err := o.Change(ctx, n, []string{c.user})
			if err != nil {
				return rep, fmt.Errorf("change %d: %w", n, err)
			}
			if started {
				measured = append(measured, change{n: n, user: c, at: at})
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}
	rep.WindowSeconds = time.Since(windowStart).Seconds()
	rep.UpstreamPolls = o.UpstreamPolls() - polls0
	rep.UpstreamRPS = float64(rep.UpstreamPolls) / rep.WindowSeconds
	if kinds := scrape(o.Metrics); kinds != nil && kinds0 != nil {
		rep.RegularPolls = kinds[`ssegate_upstream_polls_by_kind_total{kind="regular"}`] - kinds0[`ssegate_upstream_polls_by_kind_total{kind="regular"}`]
		rep.NudgedPolls = kinds[`ssegate_upstream_polls_by_kind_total{kind="nudge"}`] - kinds0[`ssegate_upstream_polls_by_kind_total{kind="nudge"}`]
		rep.GaugeLegacyRPS = kinds["ssegate_legacy_polling_rps"]
	}
	logf("window over: %d upstream requests in %.0fs; waiting for the last changes to arrive", rep.UpstreamPolls, rep.WindowSeconds)

	// A change nobody announced arrives with the next regular poll: give
	// the last ones two legacy intervals.
	deadline := time.Now().Add(2*o.LegacyInterval + 10*time.Second)
	var latencies []time.Duration
	for _, ch := range measured {
		rep.Changes++
		t, ok := ch.user.waitFor(ItemID(ch.n), deadline)
		if !ok {
			rep.Missing++
			continue
		}
		rep.Delivered++
		latencies = append(latencies, t.Sub(ch.at))
	}
	for _, c := range clients {
		c.mu.Lock()
		rep.Duplicates += c.dups
		c.mu.Unlock()
	}
	rep.LatencyP50MS, rep.LatencyP99MS, rep.LatencyMaxMS = percentiles(latencies)
	return rep, nil
}
