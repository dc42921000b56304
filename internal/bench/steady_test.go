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

// TestSteadySmoke runs the load contract's scenario briefly, nudged: 20
// users whose pages polled every 2s, each changing every 4s. Every change
// arrives once, and the upstream is measured (its rate is in BENCHMARKS.md;
// here only a generous bound, the contract itself is tested in poller).
func TestSteadySmoke(t *testing.T) {
	const users = 20
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
		"SSEGATE_LEGACY_INTERVAL=2s", "SSEGATE_POLL_INTERVAL=200ms",
	)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, app.Options{OnReady: func(l app.Listening) { ready <- l }}) }()
	defer func() { cancel(); <-done }()
	l := <-ready

	nudge := bench.Nudger("http://"+l.Metrics.String()+"/.well-known/ssegate/nudge", token)
	rep, err := bench.RunSteady(ctx, bench.SteadyOptions{
		URL:   "https://" + l.Main.String() + "/api/notifications",
		Users: users, Every: 4 * time.Second, Duration: 6 * time.Second, LegacyInterval: 2 * time.Second,
		Metrics:       "http://" + l.Metrics.String() + "/metrics",
		UpstreamPolls: up.TotalPolls,
		Change: func(ctx context.Context, n int, us []string) (time.Time, error) {
			at, err := up.Change(ctx, n, us)
			if err == nil {
				err = nudge(ctx, us)
			}
			return at, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", rep)
	if rep.Opened != users || rep.Changes < 20 || rep.Delivered != rep.Changes || rep.Duplicates != 0 {
		t.Errorf("opened %d, %d changes: %d delivered, %d duplicated; want all %d users and every change once", rep.Opened, rep.Changes, rep.Delivered, rep.Duplicates, users)
	}
	if rep.UpstreamPolls == 0 || rep.NudgedPolls == 0 || rep.GaugeLegacyRPS != 10 {
		t.Errorf("%d upstream polls (%v nudged), ssegate_legacy_polling_rps %v: want both measured and 20 users / 2s = 10", rep.UpstreamPolls, rep.NudgedPolls, rep.GaugeLegacyRPS)
	}
	if rep.UpstreamRPS > 2*rep.LegacyRPS {
		t.Errorf("upstream %.1f rps, more than twice the pages' %.1f", rep.UpstreamRPS, rep.LegacyRPS)
	}
}
