package deploy_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/ssegate/ssegate/internal/app"
	"github.com/ssegate/ssegate/internal/apptest"
	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/internal/sse"
)

// failAfter bounds a wait so that a broken gateway or Prometheus fails the
// test instead of hanging it; it is not a performance threshold.
const failAfter = 25 * time.Second

// maxKeys is the gateway's SSEGATE_MAX_KEYS: the load's users fill it, and
// one more user is refused, so streams_rejected_total moves.
const maxKeys = 3

var (
	users   = []string{"alice", "bob", "carol"} // len(users) == maxKeys
	refused = "dave"
)

// maxConnections is the gateway's SSEGATE_MAX_CONNECTIONS, far above what
// the load opens, so that the cap is exported and never reached.
const maxConnections = 1000

// fleetOnly are the families a gateway exports only in a fleet, with
// SSEGATE_REDIS_URL set; a single process exports none of them, so the
// fleet's alerts and panels are silent there.
var fleetOnly = map[string]bool{
	"ssegate_cluster_connected":         true,
	"ssegate_leases_held":               true,
	"ssegate_lease_takeovers_total":     true,
	"ssegate_redis_errors_total":        true,
	"ssegate_redis_duration_seconds":    true,
	"ssegate_redis_events_read_total":   true,
	"ssegate_keys_without_lease_holder": true,
}

// isFleetOnly reports whether a series name (a histogram's _bucket, _sum
// or _count too) belongs to a family of fleetOnly.
func isFleetOnly(series string) bool {
	if fleetOnly[series] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && fleetOnly[base] {
			return true
		}
	}
	return false
}

// The fleet's gateway uses the Redis of the fleet package's tests, in its
// database 9, under a key prefix of its own that is deleted at the end.
const (
	redisAddr = "127.0.0.1:6379"
	redisDB   = 9
	redisURL  = "redis://127.0.0.1:6379/9"
)

// redisAnswers reports whether a Redis answers at redisAddr.
func redisAnswers() bool {
	c, err := net.DialTimeout("tcp", redisAddr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// needRedis skips the test when no Redis answers, unless
// SSEGATE_REDIS_REQUIRE=1 (set by .ci/run) makes that a failure, as in the
// fleet package's tests.
func needRedis(t *testing.T) {
	t.Helper()
	if redisAnswers() {
		return
	}
	if os.Getenv("SSEGATE_REDIS_REQUIRE") == "1" {
		t.Fatalf("no Redis at %s and SSEGATE_REDIS_REQUIRE=1", redisAddr)
	}
	t.Skipf("no Redis at %s: start one to check the fleet's metrics", redisAddr)
}

// redisPrefix returns a key prefix of the test's own and deletes every key
// under it when the test ends (after the gateway, whose cleanup was
// registered later, has stopped).
func redisPrefix(t *testing.T) string {
	t.Helper()
	prefix := "ssegate-deploy-test-" + rand.Text()[:12] + ":"
	c := redis.NewClient(&redis.Options{Addr: redisAddr, DB: redisDB})
	t.Cleanup(func() {
		defer c.Close()
		ctx := context.Background()
		var keys []string
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("redis scan %s*: %v", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("redis del: %v", err)
			}
		}
	})
	return prefix
}

// setup is how a test's gateway runs: a single process, or one replica of
// a fleet on Redis.
type setup struct {
	name  string
	fleet bool
}

var (
	single = setup{"single process", false}
	fleet  = setup{"fleet on Redis", true}
)

// gateway is an in-process ssegate (cleartext, so the load needs no
// certificate) in front of a legacy API.
type gateway struct {
	base    string // http://127.0.0.1:port, the main listener
	metrics string // 127.0.0.1:port, the admin listener
	api     *legacyapi.API
	fleet   bool // on Redis
}

// startGateway starts a gateway as s says; a fleet's needs a Redis (see
// needRedis).
func startGateway(t *testing.T, s setup) *gateway {
	t.Helper()
	var env []string
	if s.fleet {
		needRedis(t)
		env = append(env, "SSEGATE_REDIS_URL="+redisURL, "SSEGATE_REDIS_PREFIX="+redisPrefix(t))
	}
	api := legacyapi.New()
	for _, u := range append([]string{refused}, users...) {
		api.AddUser(u)
	}
	up := httptest.NewServer(api)
	t.Cleanup(up.Close)
	cfg := apptest.Config(t, append(env,
		"SSEGATE_UPSTREAM_URL="+up.URL,
		"SSEGATE_LISTEN_ADDR=127.0.0.1:0",
		"SSEGATE_METRICS_ADDR=127.0.0.1:0",
		"SSEGATE_H2C=true",
		"SSEGATE_STREAM_PATHS="+legacyapi.Path,
		"SSEGATE_POLL_INTERVAL=200ms",
		"SSEGATE_POLL_INTERVAL_MAX=1s",
		"SSEGATE_LEGACY_INTERVAL=1s", // the contract on, at a rate a short test sees
		"SSEGATE_UPSTREAM_MAX_RPS=50",
		fmt.Sprintf("SSEGATE_MAX_KEYS=%d", maxKeys),
		fmt.Sprintf("SSEGATE_MAX_CONNECTIONS=%d", maxConnections),
		"SSEGATE_LINGER=1s",
		"SSEGATE_SHUTDOWN_TIMEOUT=5s",
	)...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{OnReady: func(l app.Listening) { ready <- l }})
	}()
	var l app.Listening
	select {
	case l = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("gateway did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &gateway{base: "http://" + l.Main.String(), metrics: l.Metrics.String(), api: api, fleet: s.fleet}
}

// sub is one EventSource-like client reading its stream in the background.
type sub struct {
	events <-chan sse.Event
}

func (g *gateway) request(t *testing.T, user string, stream bool) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.base+legacyapi.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+user)
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func (g *gateway) subscribe(t *testing.T, user string) *sub {
	t.Helper()
	resp := g.request(t, user, true)
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("stream for %s: got %d, want 200", user, resp.StatusCode)
	}
	t.Cleanup(func() { resp.Body.Close() })
	// Large enough for every event the load makes, so the reader never
	// blocks and the gateway never sees a slow client.
	s := &sub{events: sse.Follow(resp.Body, 4096)}
	return s
}

// next waits for the stream's next event other than a heartbeat.
func (s *sub) next(t *testing.T) sse.Event {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended, want another event")
		}
		return ev
	case <-time.After(failAfter):
		t.Fatal("no event")
	}
	return sse.Event{}
}

// refuse opens a stream for one user more than SSEGATE_MAX_KEYS allows and
// checks that it is refused.
func (g *gateway) refuse(t *testing.T) {
	t.Helper()
	resp := g.request(t, refused, true)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream beyond SSEGATE_MAX_KEYS: got %d, want 503", resp.StatusCode)
	}
}

// warmUp puts every kind of traffic through the gateway once: streams for
// every user (two for the first), their snapshots, a change delivered, a
// pass-through request and a refused stream. Every series the gateway
// exports exists afterwards, and the main ones have moved.
func (g *gateway) warmUp(t *testing.T) []*sub {
	t.Helper()
	var subs []*sub
	for _, u := range append([]string{users[0]}, users...) {
		s := g.subscribe(t, u)
		if ev := s.next(t); ev.Type != "snapshot" {
			t.Fatalf("first event %q, want snapshot", ev.Type)
		}
		subs = append(subs, s)
	}
	g.api.Add(users[0], `{"id":"warm-up","text":"hello"}`)
	for _, s := range subs[:2] {
		if ev := s.next(t); ev.Type != "created" {
			t.Fatalf("event %q, want created", ev.Type)
		}
	}
	resp := g.request(t, users[1], false)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pass-through: got %d, want 200", resp.StatusCode)
	}
	g.refuse(t)
	return subs
}

// keepBusy changes a user's list every 200 ms and refuses a stream every
// second until the test ends (bounded by failAfter), so that rates over the
// last minute are never zero.
func (g *gateway) keepBusy(t *testing.T, subs []*sub) {
	ctx, cancel := context.WithTimeout(context.Background(), failAfter)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			g.api.Add(users[i%len(users)], fmt.Sprintf(`{"id":"busy-%d"}`, i))
			if i%5 == 0 {
				resp, err := http.Get(g.base + legacyapi.Path) // no identity: a 401 passed through
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.base+legacyapi.Path, nil)
				req.Header.Set("Accept", "text/event-stream")
				req.Header.Set("Authorization", "Bearer "+refused)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}
	}()
	// Drain the streams so that no client is ever slow.
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case _, ok := <-s.events:
					if !ok {
						return
					}
				}
			}
		}()
	}
}

// exported is what a gateway's /metrics shows: families by name, and every
// series name (a histogram's _bucket, _sum and _count) with its labels and
// their values.
type exported struct {
	families map[string]*dto.MetricFamily
	series   map[string]map[string]map[string]bool // name → label → values
	fleet    bool                                  // scraped from a gateway on Redis
}

func (g *gateway) scrape(t *testing.T) exported {
	t.Helper()
	resp, err := http.Get("http://" + g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	e := exported{families: fams, series: map[string]map[string]map[string]bool{}, fleet: g.fleet}
	add := func(name string, m *dto.Metric, extra, value string) {
		labels := e.series[name]
		if labels == nil {
			labels = map[string]map[string]bool{}
			e.series[name] = labels
		}
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] == nil {
				labels[lp.GetName()] = map[string]bool{}
			}
			labels[lp.GetName()][lp.GetValue()] = true
		}
		if extra != "" {
			if labels[extra] == nil {
				labels[extra] = map[string]bool{}
			}
			labels[extra][value] = true
		}
	}
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				for _, b := range m.GetHistogram().GetBucket() {
					add(name+"_bucket", m, "le", formatFloat(b.GetUpperBound()))
				}
				add(name+"_bucket", m, "le", "+Inf")
				add(name+"_sum", m, "", "")
				add(name+"_count", m, "", "")
			case dto.MetricType_SUMMARY:
				for _, q := range m.GetSummary().GetQuantile() {
					add(name, m, "quantile", formatFloat(q.GetQuantile()))
				}
				add(name+"_sum", m, "", "")
				add(name+"_count", m, "", "")
			default:
				add(name, m, "", "")
			}
		}
	}
	return e
}

// formatFloat writes a bucket bound or quantile as the exposition format
// and PromQL do.
func formatFloat(f float64) string {
	if math.IsInf(f, +1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
