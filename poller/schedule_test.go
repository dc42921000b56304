package poller_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// fleet runs n keys on one Poller against an in-memory upstream that
// records when each key was polled.
type fleet struct {
	mu     sync.Mutex
	starts map[string][]time.Time // by path
	all    []time.Time
	pubs   []*recorder
	reg    *prometheus.Registry
}

func runFleet(t *testing.T, n int, opts poller.Options, answer func(path string, r *http.Request) *http.Response) *fleet {
	f := &fleet{starts: map[string][]time.Time{}, reg: prometheus.NewRegistry()}
	opts.Registerer = f.reg
	opts.Client = &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		f.mu.Lock()
		f.starts[r.URL.Path] = append(f.starts[r.URL.Path], time.Now())
		f.all = append(f.all, time.Now())
		f.mu.Unlock()
		return answer(r.URL.Path, r), nil
	})}
	p := poller.New(opts)
	t.Cleanup(p.Close)
	keyer := stream.NewKeyer([]string{"Authorization"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		u, _ := url.Parse(fmt.Sprintf("http://up.test/k/%d", i))
		pub := &recorder{sigCh: make(chan struct{}, 1)}
		f.pubs = append(f.pubs, pub)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Run(ctx, keyer.Target(u.Path, u, http.Header{}), pub)
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func unchanged(string, *http.Request) *http.Response { return reply(200, `[{"id":1}]`) }

// TestBudgetSpreadsPollsFairly: 1,000 keys that want a poll every 2s (500
// rps) under a budget of 50 rps, starting together as after a restart.
func TestBudgetSpreadsPollsFairly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const keys, rps = 1000, 50
		f := runFleet(t, keys, poller.Options{Interval: 2 * time.Second, IntervalMax: 2 * time.Second, MaxRPS: rps}, unchanged)
		begin := time.Now()
		time.Sleep(100 * time.Second)
		synctest.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()

		// Within the budget over any 1-second window, the first one included:
		// a restart does not fire 1,000 polls at once.
		all := slices.Clone(f.all)
		slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
		for i, j := 0, 0; i < len(all); i++ {
			for !all[j].Add(time.Second).After(all[i]) {
				j++
			}
			if n := i - j + 1; n > rps {
				t.Fatalf("%d polls in the second before %v, want at most %d", n, all[i].Sub(begin), rps)
			}
		}
		if len(all) < 99*rps {
			t.Errorf("%d polls in 100s, want the budget used (about %d)", len(all), 100*rps)
		}
		// Every key polled, none waiting more than its fair share: with
		// demand over the budget each key gets a turn every keys/rps = 20s.
		fair := time.Duration(keys/rps) * time.Second
		for i := range keys {
			starts := f.starts[fmt.Sprintf("/k/%d", i)]
			if len(starts) < 4 {
				t.Fatalf("key %d polled %d times in 100s, want at least 4", i, len(starts))
			}
			if first := starts[0].Sub(begin); first > fair {
				t.Errorf("key %d first polled after %v, want within %v", i, first, fair)
			}
			for j := 1; j < len(starts); j++ {
				if gap := starts[j].Sub(starts[j-1]); gap > fair+fair/10 {
					t.Errorf("key %d waited %v between polls, want at most its fair share %v", i, gap, fair)
				}
			}
		}
		if got := promtest.Value(t, f.reg, "ssegate_upstream_budget_rps"); got != rps {
			t.Errorf("ssegate_upstream_budget_rps = %v, want %d", got, rps)
		}
		if got := promtest.Value(t, f.reg, "ssegate_poll_lag_seconds"); got == 0 {
			t.Error("ssegate_poll_lag_seconds has no observations")
		}
	})
}

func gaps(ts []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}

func near(got, want time.Duration) bool { return got >= want-want/10-1 && got <= want+want/10+1 }

// TestIntervalStretchesAndSnapsBack: each unchanged poll stretches the
// interval ×1.5 up to the maximum; a change and a new subscriber bring it
// back to the minimum, a nudge does not.
func TestIntervalStretchesAndSnapsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		body := `[{"id":1}]`
		f := runFleet(t, 1, poller.Options{Interval: 2 * time.Second, IntervalMax: 30 * time.Second},
			func(string, *http.Request) *http.Response {
				mu.Lock()
				defer mu.Unlock()
				return reply(200, body)
			})
		starts := func() []time.Time {
			synctest.Wait()
			f.mu.Lock()
			defer f.mu.Unlock()
			return slices.Clone(f.starts["/k/0"])
		}
		time.Sleep(3 * time.Minute)
		want := []float64{2, 3, 4.5, 6.75, 10.125, 15.1875, 22.78125, 30, 30}
		got := gaps(starts())
		for i, w := range want {
			if i >= len(got) || !near(got[i], time.Duration(w*float64(time.Second))) {
				t.Fatalf("gaps %v, want %v seconds ±10%%", got, want)
			}
		}

		// A change: the next interval is the minimum again.
		mu.Lock()
		body = `[{"id":1},{"id":2}]`
		mu.Unlock()
		n := len(starts())
		time.Sleep(36 * time.Second) // the changed poll comes within one max interval (30 s +10%), then 2 s
		after := starts()
		if len(after) < n+2 || !near(after[n+1].Sub(after[n]), 2*time.Second) {
			t.Fatalf("after a change gaps %v, want 2s", gaps(after[n-1:]))
		}

		// A nudge: polled at once, and the interval is not the minimum
		// again: the backend announces changes, regular polls are the
		// safety net at the longest interval.
		time.Sleep(time.Minute)
		n = len(starts())
		f.pubs[0].signal(stream.SignalNudge)
		nudged := time.Now()
		if s := starts(); len(s) != n+1 || !s[n].Equal(nudged) {
			t.Fatalf("nudge: %d polls (last at %v), want one more at once", len(s), s[len(s)-1].Sub(nudged))
		}
		time.Sleep(26 * time.Second)
		if s := starts(); len(s) != n+1 {
			t.Errorf("after a nudge, want the next regular poll after 30s ±10%%; got %d more within 26s", len(s)-n-1)
		}
		time.Sleep(7 * time.Second)
		if s := starts(); len(s) != n+2 {
			t.Errorf("after a nudge, want the next regular poll after 30s ±10%%; got %d more within 33s", len(s)-n-1)
		}

		// A new subscriber: the key is polled within the minimum interval.
		time.Sleep(time.Minute)
		n = len(starts())
		f.pubs[0].signal(stream.SignalSubscriber)
		time.Sleep(2200 * time.Millisecond)
		if s := starts(); len(s) != n+1 {
			t.Errorf("after a new subscriber, %d polls within 2.2s, want 1", len(s)-n)
		}
	})
}

// TestBusyKeysStretchLess: the ceiling is IntervalMax divided by the number
// of subscribers, never under Interval.
func TestBusyKeysStretchLess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := runFleet(t, 1, poller.Options{Interval: time.Second, IntervalMax: 30 * time.Second}, unchanged)
		f.pubs[0].mu.Lock()
		f.pubs[0].subs = 10
		f.pubs[0].mu.Unlock()
		time.Sleep(time.Minute)
		synctest.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, g := range gaps(f.starts["/k/0"])[5:] {
			if !near(g, 3*time.Second) {
				t.Errorf("gap %v with 10 subscribers, want 30s/10 = 3s", g)
			}
		}
	})
}

func TestConcurrencyCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		inflight, peak := 0, 0
		runFleet(t, 20, poller.Options{Interval: time.Second, IntervalMax: time.Second, Concurrency: 3},
			func(string, *http.Request) *http.Response {
				mu.Lock()
				inflight++
				peak = max(peak, inflight)
				mu.Unlock()
				time.Sleep(500 * time.Millisecond) // a slow upstream
				mu.Lock()
				inflight--
				mu.Unlock()
				return reply(200, `[]`)
			})
		time.Sleep(30 * time.Second)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		if peak != 3 {
			t.Errorf("peak of %d polls in flight, want the cap of 3", peak)
		}
	})
}

// TestNudgesStayWithinBudget: nudging every key at once does not exceed
// the budget; the nudged polls are spread over keys/rps seconds.
func TestNudgesStayWithinBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const keys, rps = 500, 50
		f := runFleet(t, keys, poller.Options{Interval: time.Second, IntervalMax: time.Hour, MaxRPS: rps}, unchanged)
		time.Sleep(5 * time.Minute) // admitted and stretched: all keys quiet now
		synctest.Wait()
		f.mu.Lock()
		before := len(f.all)
		f.mu.Unlock()
		for range 3 { // a nudge storm
			for _, p := range f.pubs {
				p.signal(stream.SignalNudge)
			}
		}
		nudged := time.Now()
		time.Sleep(time.Second)
		synctest.Wait()
		f.mu.Lock()
		inFirstSecond := len(f.all) - before
		f.mu.Unlock()
		if inFirstSecond > rps+1 {
			t.Errorf("%d polls in the second after nudging %d keys, want at most %d", inFirstSecond, keys, rps+1)
		}
		time.Sleep(time.Duration(keys/rps)*time.Second - time.Second + 100*time.Millisecond)
		synctest.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		for i := range keys {
			s := f.starts[fmt.Sprintf("/k/%d", i)]
			if last := s[len(s)-1]; last.Before(nudged) {
				t.Fatalf("key %d not polled within %ds of the nudge", i, keys/rps)
			}
		}
	})
}
