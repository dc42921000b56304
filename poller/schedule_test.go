package poller_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
		// First polls share the budget with the regular polls of the keys
		// already admitted, taking at least every other start: all within
		// twice that.
		fair := time.Duration(keys/rps) * time.Second
		var lastFirst time.Duration
		for i := range keys {
			starts := f.starts[fmt.Sprintf("/k/%d", i)]
			if len(starts) < 4 {
				t.Fatalf("key %d polled %d times in 100s, want at least 4", i, len(starts))
			}
			lastFirst = max(lastFirst, starts[0].Sub(begin))
			if first := starts[0].Sub(begin); first > 2*fair {
				t.Errorf("key %d first polled after %v, want within %v", i, first, 2*fair)
			}
			for j := 1; j < len(starts); j++ {
				if gap := starts[j].Sub(starts[j-1]); gap > fair+fair/10 {
					t.Errorf("key %d waited %v between polls, want at most its fair share %v", i, gap, fair)
				}
			}
		}
		t.Logf("last first poll after %v", lastFirst)
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
		// A nudged poll comes no sooner than Interval after the key's last
		// poll (the load contract); wait until that is past, so it is due
		// at once.
		for s := starts(); time.Since(s[len(s)-1]) < 2*time.Second; s = starts() {
			time.Sleep(500 * time.Millisecond)
		}
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

// TestConcurrencyCap: Concurrency caps polls in flight, 0 takes the default
// cap of 64, and NoLimit lifts the cap (70 slow keys all poll at once).
func TestConcurrencyCap(t *testing.T) {
	for _, tc := range []struct {
		concurrency, keys, peak int
	}{{3, 20, 3}, {0, 70, 64}, {poller.NoLimit, 70, 70}} {
		t.Run(fmt.Sprint(tc.concurrency), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				inflight, peak := 0, 0
				runFleet(t, tc.keys, poller.Options{Interval: time.Second, IntervalMax: time.Second, Concurrency: tc.concurrency},
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
				if peak != tc.peak {
					t.Errorf("peak of %d polls in flight, want %d", peak, tc.peak)
				}
			})
		})
	}
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

// starts records when each identity's polls started, by path.
type starts struct {
	mu sync.Mutex
	by map[string][]time.Time // "identity path"
}

func (s *starts) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := r.Header.Get("Authorization") + " " + r.URL.Path
	s.by[k] = append(s.by[k], time.Now())
}

func (s *starts) of(identity, path string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.by[identity+" "+path])
}

// firstPolls counts the keys of the flood that got their first poll.
func (s *starts) firstPolls(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.by {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// runKey runs one key until ctx ends.
func runKey(ctx context.Context, wg *sync.WaitGroup, p *poller.Poller, keyer *stream.Keyer, identity, path string) *recorder {
	u, _ := url.Parse("http://up.test" + path)
	pub := &recorder{sigCh: make(chan struct{}, 1)}
	wg.Go(func() { p.Run(ctx, keyer.Target(path, u, http.Header{"Authorization": {identity}}), pub) })
	return pub
}

// TestFirstPollsDoNotStarveOthers: under a budget of 10/s, new keys arrive
// at 20/s (each abandoned after 1s, as by a client opening streams with
// random credentials). The first polls take at most every other start, so
// two established keys keep their regular polls and a nudge goes at once;
// the first polls keep at least every other start too.
func TestFirstPollsDoNotStarveOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rps = 10
		const spacing = time.Second / rps
		const interval = 2 * time.Second
		rec := &starts{by: map[string][]time.Time{}}
		p := poller.New(poller.Options{Interval: interval, IntervalMax: interval, MaxRPS: rps,
			Client: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
				rec.add(r)
				return reply(200, `[{"id":1}]`), nil
			})}})
		t.Cleanup(p.Close)
		keyer := stream.NewKeyer([]string{"Authorization"})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		t.Cleanup(func() { cancel(); wg.Wait() })

		runKey(ctx, &wg, p, keyer, "Bearer alice", "/a")
		bob := runKey(ctx, &wg, p, keyer, "Bearer bob", "/b")
		time.Sleep(5 * time.Second) // both established, polled every 2s ±10%

		const flood = 30 * time.Second
		floodStart := time.Now()
		wg.Go(func() {
			for i := 0; time.Since(floodStart) < flood; i++ {
				// Abandoned 1s later, plus a millisecond: not at the very
				// instant its turn comes, a start the test could not see.
				kctx, kcancel := context.WithTimeout(ctx, time.Second+time.Millisecond)
				runKey(kctx, &wg, p, keyer, fmt.Sprintf("Bearer flood-%d", i), "/f")
				wg.Go(func() { <-kctx.Done(); kcancel() })
				time.Sleep(time.Second / 20)
			}
		})
		time.Sleep(flood / 2)
		synctest.Wait()
		nudged := time.Now()
		bob.signal(stream.SignalNudge)
		time.Sleep(flood/2 + 2*time.Second)
		synctest.Wait()

		// A regular poll has at most one other regular poll ahead of it
		// (the flood's keys are gone before their second poll): it starts
		// within 2(1+1) starts of its due time, 2 more while bob's nudge
		// goes first; its due time is at most 2.2s after the last poll.
		bound := interval + interval/10 + (2*(1+1)+2)*spacing
		for _, who := range []struct{ identity, path string }{{"Bearer alice", "/a"}, {"Bearer bob", "/b"}} {
			s := rec.of(who.identity, who.path)
			var longest time.Duration
			for i := 1; i < len(s); i++ {
				longest = max(longest, s[i].Sub(s[i-1]))
				if gap := s[i].Sub(s[i-1]); gap > bound {
					t.Errorf("%s: %v between polls at %v into the flood, want at most %v", who.identity, gap, s[i-1].Sub(floodStart), bound)
				}
			}
			if last := s[len(s)-1]; floodStart.Add(flood).Sub(last) > bound {
				t.Errorf("%s: last polled %v into the %v flood", who.identity, last.Sub(floodStart), flood)
			}
			t.Logf("%s: %d polls, longest gap %v", who.identity, len(s), longest)
		}
		// The nudge: no other nudge is waiting and no regular poll is a round
		// late, so it starts within 2(0+1) starts of its due time, which is
		// the nudge or, by the load contract, Interval after bob's previous
		// poll, whichever is later.
		var nudgedAt, due time.Time
		for _, s := range rec.of("Bearer bob", "/b") {
			if s.Before(nudged) {
				due = s.Add(interval)
				continue
			}
			nudgedAt = s
			break
		}
		if due.Before(nudged) {
			due = nudged
		}
		if nudgedAt.IsZero() || nudgedAt.Sub(due) > 2*spacing {
			t.Errorf("nudged poll started %v after it was due, want within %v", nudgedAt.Sub(due), 2*spacing)
		}
		t.Logf("nudged poll %v after the nudge, %v after it was due", nudgedAt.Sub(nudged), nudgedAt.Sub(due))
		// First polls keep at least half the budget.
		n, want := rec.firstPolls("Bearer flood-"), int(flood.Seconds())*rps/2
		if n < want {
			t.Errorf("%d first polls in the %v flood, want at least %d (half the budget)", n, flood, want)
		}
		t.Logf("%d first polls in the %v flood (%d keys arrived)", n, flood, int(flood.Seconds())*20)
	})
}

// TestNudgesDoNotStarveRegularPolls: a backend that nudges 40 keys all the
// time: each may be polled every 2s, so they ask for 20 polls/s, twice the
// budget of 10/s. Another key, never nudged, still gets its regular polls:
// once due for longer than a round (41 keys × 100ms) it takes turns with the
// nudges.
func TestNudgesDoNotStarveRegularPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rps = 10
		const spacing = time.Second / rps
		const interval = 2 * time.Second
		rec := &starts{by: map[string][]time.Time{}}
		p := poller.New(poller.Options{Interval: interval, IntervalMax: interval, MaxRPS: rps,
			Client: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
				rec.add(r)
				return reply(200, `[{"id":1}]`), nil
			})}})
		t.Cleanup(p.Close)
		keyer := stream.NewKeyer([]string{"Authorization"})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		t.Cleanup(func() { cancel(); wg.Wait() })

		var nudged []*recorder
		const busy = 40
		for i := range busy {
			nudged = append(nudged, runKey(ctx, &wg, p, keyer, "Bearer busy", fmt.Sprintf("/n/%d", i)))
		}
		runKey(ctx, &wg, p, keyer, "Bearer quiet", "/q")
		time.Sleep(time.Second)
		begin := time.Now()
		wg.Go(func() {
			for time.Since(begin) < 30*time.Second {
				for _, pub := range nudged {
					pub.signal(stream.SignalNudge)
				}
				time.Sleep(spacing / 2)
			}
		})
		time.Sleep(31 * time.Second)
		synctest.Wait()

		// Within a round plus 4(0+1) starts of its due time.
		round := (busy + 1) * spacing
		bound := interval + interval/10 + round + 4*spacing
		s := rec.of("Bearer quiet", "/q")
		var longest time.Duration
		for i := 1; i < len(s); i++ {
			longest = max(longest, s[i].Sub(s[i-1]))
		}
		if longest > bound || len(s) < 2 || begin.Add(30*time.Second).Sub(s[len(s)-1]) > bound {
			t.Errorf("quiet key polled %d times, longest gap %v, last %v into the nudging; want gaps of at most %v",
				len(s), longest, s[len(s)-1].Sub(begin), bound)
		}
		t.Logf("quiet key: %d polls, longest gap %v", len(s), longest)
	})
}

// TestSlowIdentityCannotHoldEverySlot: one identity's 20 keys answer only
// when the poll times out, with a concurrency cap of 4. Another identity's
// first poll still starts within one poll timeout: a freed slot goes to the
// identity with the fewest polls in flight.
func TestSlowIdentityCannotHoldEverySlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 10 * time.Second
		rec := &starts{by: map[string][]time.Time{}}
		p := poller.New(poller.Options{Interval: time.Second, Concurrency: 4, Timeout: timeout,
			Client: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
				rec.add(r)
				if strings.HasPrefix(r.URL.Path, "/slow/") {
					<-r.Context().Done() // trickles nothing until the timeout
					return nil, r.Context().Err()
				}
				return reply(200, `[{"id":1}]`), nil
			})}})
		t.Cleanup(p.Close)
		keyer := stream.NewKeyer([]string{"Authorization"})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		t.Cleanup(func() { cancel(); wg.Wait() })

		for i := range 20 {
			runKey(ctx, &wg, p, keyer, "Bearer slow", fmt.Sprintf("/slow/%d", i))
		}
		time.Sleep(time.Second)
		arrived := time.Now()
		runKey(ctx, &wg, p, keyer, "Bearer other", "/fast")
		time.Sleep(3 * timeout)
		synctest.Wait()

		s := rec.of("Bearer other", "/fast")
		if len(s) > 0 {
			t.Logf("other identity's first poll %v after it arrived", s[0].Sub(arrived))
		}
		if len(s) == 0 || s[0].Sub(arrived) > timeout {
			first := "never"
			if len(s) > 0 {
				first = s[0].Sub(arrived).String()
			}
			t.Errorf("other identity's first poll after %s, want within one poll timeout (%v)", first, timeout)
		}
	})
}

// TestSchedulerOrder: with one slot, tickets due together are served in
// the documented order: first polls and established polls take turns,
// nudges before regular polls; and with a slot held, a free slot goes to
// the identity with fewer polls in flight, even one due later.
func TestSchedulerOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		queue := func(s *poller.Scheduler, name string, identity byte, due time.Time, prio poller.Priority) {
			wg.Go(func() {
				release, _, err := s.Wait(context.Background(), [32]byte{identity}, due, prio, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				release()
			})
			synctest.Wait()
		}

		s := poller.NewScheduler(0, 1, nil)
		hold, _, _ := s.Wait(context.Background(), [32]byte{0}, time.Now(), poller.PriorityRegular, nil)
		now := time.Now()
		for i, q := range []struct {
			name string
			prio poller.Priority
		}{{"R1", poller.PriorityRegular}, {"N1", poller.PriorityNudge}, {"A1", poller.PriorityAdmission},
			{"R2", poller.PriorityRegular}, {"A2", poller.PriorityAdmission}, {"N2", poller.PriorityNudge}, {"A3", poller.PriorityAdmission}} {
			queue(s, q.name, byte(i+1), now, q.prio)
		}
		hold()
		wg.Wait()
		if got, want := strings.Join(order, " "), "A1 N1 A2 N2 A3 R1 R2"; got != want {
			t.Errorf("order %s, want %s", got, want)
		}
		s.Close()

		order = nil
		s = poller.NewScheduler(0, 2, nil)
		defer s.Close()
		holdX, _, _ := s.Wait(context.Background(), [32]byte{'x'}, time.Now(), poller.PriorityRegular, nil)
		holdY, _, _ := s.Wait(context.Background(), [32]byte{'y'}, time.Now(), poller.PriorityRegular, nil)
		queue(s, "x", 'x', time.Now(), poller.PriorityAdmission)
		time.Sleep(time.Second)
		queue(s, "z", 'z', time.Now(), poller.PriorityAdmission)
		holdY() // x holds one slot: z, with none, goes first
		wg.Wait()
		holdX()
		if got, want := strings.Join(order, " "), "z x"; got != want {
			t.Errorf("order %s, want %s", got, want)
		}
	})
}
