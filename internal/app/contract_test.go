package app_test

import (
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLegacyPollingGauge: ssegate_legacy_polling_rps is what the open
// streams' pages would cost the upstream, subscribers / LEGACY_INTERVAL
// summed over keys, and follows streams that leave.
func TestLegacyPollingGauge(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	up.Add("bob", `{"id":2}`)
	g := startGateway(t, up.URL, "SSEGATE_LEGACY_INTERVAL=20s")
	c := g.client(t)
	a1 := subscribe(t, c, g.base+"/api/notifications", "Bearer alice", "")
	a2 := subscribe(t, c, g.base+"/api/notifications", "Bearer alice", "")
	b := subscribe(t, c, g.base+"/api/notifications", "Bearer bob", "")
	for _, s := range []*sub{a1, a2, b} {
		s.next(t)
	}
	gauge := func() float64 {
		resp, err := http.Get(g.metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		m, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(line, "ssegate_legacy_polling_rps "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return -1
	}
	// The gauge follows the hub's signals: give them a moment.
	waitGauge := func(want float64) {
		t.Helper()
		near := func() bool { return math.Abs(gauge()-want) < 1e-9 }
		for deadline := time.Now().Add(failAfter); !near() && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if !near() {
			t.Fatalf("ssegate_legacy_polling_rps = %v, want %v", gauge(), want)
		}
	}
	waitGauge(3.0 / 20) // 3 pages every 20 s
	a2.resp.Body.Close()
	waitGauge(2.0 / 20)
}
