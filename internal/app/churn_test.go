package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestChurnReturnsToBaseline opens and drops thousands of streams, half of
// them reset by the client in the middle of an event, and checks that
// goroutines, file descriptors, pollers and the connections gauge all
// return to where they were.
func TestChurnReturnsToBaseline(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	big := strings.Repeat("x", 32<<10) // so a snapshot spans many frames
	for u := range 10 {
		up.Add(fmt.Sprintf("user%d", u), fmt.Sprintf(`{"id":1,"pad":%q}`, big))
	}
	g := startGateway(t, up.URL, "SSEGATE_LINGER=200ms")

	// Warm up once, then take the baseline.
	warm := subscribe(t, g.client(t), g.base+"/api/notifications", "Bearer user0", "")
	warm.next(t)
	warm.resp.Body.Close()
	waitFor(t, "warm-up to settle", func() bool { return g.metricValue(t, "ssegate_keys_active") == "0" })
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	const rounds, perRound = 10, 300 // 3,000 streams; bounded for the race detector's goroutine limit
	var clients []*http.Client
	for round := range rounds {
		c := g.client(t)
		clients = append(clients, c)
		var wg sync.WaitGroup
		for i := range perRound {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/api/notifications", nil)
				req.Header.Set("Accept", "text/event-stream")
				req.Header.Set("Authorization", fmt.Sprintf("Bearer user%d", (round*perRound+i)%10))
				resp, err := c.Do(req)
				if err != nil {
					t.Errorf("stream %d: %v", i, err)
					return
				}
				defer resp.Body.Close()
				if i%2 == 0 {
					// Reset in the middle of the snapshot event.
					io.ReadFull(resp.Body, make([]byte, 100))
					cancel()
					return
				}
				// Read the whole snapshot, then drop.
				buf := make([]byte, 64<<10)
				for n := 0; n < len(big); {
					k, err := resp.Body.Read(buf)
					if err != nil {
						t.Errorf("stream %d: %v", i, err)
						return
					}
					n += k
				}
			}()
		}
		wg.Wait()
		c.CloseIdleConnections()
	}

	waitFor(t, "connections gauge back to 0", func() bool { return g.metricValue(t, "ssegate_connections_active") == "0" })
	waitFor(t, "pollers stopped", func() bool { return g.metricValue(t, "ssegate_keys_active") == "0" })
	waitFor(t, fmt.Sprintf("goroutines back to %d", baseG), func() bool {
		// Pooled keep-alive connections are not leaks: close them on
		// both ends, as idle timeouts would in a long-running process.
		for _, c := range clients {
			c.CloseIdleConnections()
		}
		up.CloseConns()
		runtime.GC()
		if os.Getenv("CHURN_DUMP") != "" {
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		return runtime.NumGoroutine() <= baseG+2
	})
	waitFor(t, fmt.Sprintf("fds back to %d", baseFD), func() bool { return openFDs(t) <= baseFD+2 })
	if total := g.metricValue(t, "ssegate_connections_total"); total != fmt.Sprint(rounds*perRound+1) {
		t.Errorf("ssegate_connections_total = %s, want %d", total, rounds*perRound+1)
	}
}

// waitFor polls cond; the limit only turns a leak into a failure.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failAfter)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: never happened", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
