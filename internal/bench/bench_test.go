package bench_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/app"
	"github.com/ssegate/ssegate/internal/apptest"
	"github.com/ssegate/ssegate/internal/bench"
)

// TestSmoke runs the benchmark harness against a real gateway at a small
// scale and checks correctness only: every stream opens, every change
// reaches every client of its user exactly once, and the upstream is polled
// once per key per change, whatever the number of clients. No timing is
// asserted; BENCHMARKS.md has the figures.
func TestSmoke(t *testing.T) {
	t.Run("http2", func(t *testing.T) { smoke(t, 300, false) })
	// Each stream its own HTTP/1.1 connection, as behind a load balancer.
	t.Run("http1", func(t *testing.T) { smoke(t, 60, true) })
}

func smoke(t *testing.T, clients int, http1 bool) {
	const users, changes = 3, 3
	up := bench.NewUpstream(users)
	upSrv := httptest.NewServer(up)
	defer upSrv.Close()

	const token = "smoke-test-token-0123456789"
	cfg := apptest.Config(t,
		"SSEGATE_UPSTREAM_URL="+upSrv.URL,
		"SSEGATE_LISTEN_ADDR=127.0.0.1:0",
		"SSEGATE_METRICS_ADDR=127.0.0.1:0",
		"SSEGATE_CERT_DIR="+t.TempDir(),
		"SSEGATE_NUDGE_TOKEN="+token,
		// No regular polls during the run (the load contract allows one per
		// key per 864 s with 100 subscribers): every poll is a nudged one,
		// so the count is exact.
		"SSEGATE_LEGACY_INTERVAL=24h", "SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=10m", "SSEGATE_MAX_BACKOFF=10m",
	)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, app.Options{OnReady: func(l app.Listening) { ready <- l }}) }()
	defer func() { cancel(); <-done }()
	l := <-ready

	nudge := bench.Nudger("http://"+l.Metrics.String()+"/.well-known/ssegate/nudge", token)
	rep, err := bench.Run(ctx, bench.Options{
		URL:     "https://" + l.Main.String() + "/api/notifications",
		Clients: clients, Users: users, Changes: changes, HTTP1: http1,
		Metrics:       "http://" + l.Metrics.String() + "/metrics",
		UpstreamPolls: up.TotalPolls,
		FetchedAt:     up.FetchedAt,
		Change: func(ctx context.Context, n int, us []string) (at time.Time, err error) {
			at, err = up.Change(ctx, n, us)
			if err == nil {
				err = nudge(ctx, us)
			}
			return at, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Opened != clients || rep.Failed != 0 {
		t.Errorf("opened %d, failed %d; want %d, 0", rep.Opened, rep.Failed, clients)
	}
	if want := clients * changes; rep.Delivered != want || rep.Missing != 0 || rep.Duplicates != 0 {
		t.Errorf("delivered %d, missing %d, duplicated %d; want %d, 0, 0", rep.Delivered, rep.Missing, rep.Duplicates, want)
	}
	if want := users * changes; rep.UpstreamPolls != want {
		t.Errorf("%d upstream polls for %d changes of %d keys, want %d: one per key per change", rep.UpstreamPolls, changes, users, want)
	}
	if rep.FanoutMaxMS <= 0 || rep.RSSMB <= 0 {
		t.Errorf("fan-out %v ms, RSS %v MB: want both measured", rep.FanoutMaxMS, rep.RSSMB)
	}
}
