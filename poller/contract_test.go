package poller_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/logtest"
	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// crowd is a stream.Publisher whose subscriber count the test sets; like
// the hub, it signals every change of the count.
type crowd struct {
	mu       sync.Mutex
	subs     int
	timeline []step
	sig      stream.Signal
	sigCh    chan struct{}
}

type step struct {
	at   time.Time
	subs int
}

func newCrowd(subs int) *crowd {
	return &crowd{subs: subs, timeline: []step{{time.Now(), subs}}, sigCh: make(chan struct{}, 1)}
}

func (c *crowd) Publish([]byte, []stream.Change)   {}
func (c *crowd) Unavailable()                      {}
func (c *crowd) Replicate(stream.Replicated) error { return nil }
func (c *crowd) Deny(stream.Denial)                {}
func (c *crowd) Subscribers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs
}
func (c *crowd) Signals() <-chan struct{} { return c.sigCh }
func (c *crowd) TakeSignals() stream.Signal {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sig
	c.sig = 0
	return s
}

func (c *crowd) signal(s stream.Signal) {
	c.mu.Lock()
	c.sig |= s
	c.mu.Unlock()
	select {
	case c.sigCh <- struct{}{}:
	default:
	}
}

func (c *crowd) set(n int) {
	c.mu.Lock()
	old := c.subs
	c.subs = n
	c.timeline = append(c.timeline, step{time.Now(), n})
	c.mu.Unlock()
	switch {
	case n > old:
		c.signal(stream.SignalSubscriber)
	case n < old:
		c.signal(stream.SignalSubscriberLeft)
	}
}

// subscriberPolls is ∫ S(t) dt / legacy over [a, b]: the polls the
// subscribers' pages would have made.
func (c *crowd) subscriberPolls(a, b time.Time, legacy time.Duration) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum float64
	for i, s := range c.timeline {
		end := b
		if i+1 < len(c.timeline) {
			end = c.timeline[i+1].at
		}
		lo, hi := max(s.at.UnixNano(), a.UnixNano()), min(end.UnixNano(), b.UnixNano())
		if hi > lo {
			sum += float64(s.subs) * float64(hi-lo) / float64(legacy)
		}
	}
	return sum
}

type poll struct {
	at   time.Time
	kind string // admission, nudge or regular
}

// contractRig runs one key with the contract on against an upstream whose
// body is body(now), recording every poll with its kind.
type contractRig struct {
	opts   poller.Options
	crowd  *crowd
	reg    *prometheus.Registry
	mu     sync.Mutex
	polls  []poll
	seen   map[string]float64
	body   func() string
	hdr    func(n int) http.Header // extra answer headers; nil: none
	slow   time.Duration           // how long the upstream takes to answer
	onPoll func()                  // called as each poll arrives; nil: nothing
	status func(n int) int         // status of answer n; nil: 200
	logs   logtest.Buffer
}

func runContract(t *testing.T, opts poller.Options, subs int, body func() string, setup ...func(*contractRig)) *contractRig {
	r := &contractRig{opts: opts, crowd: newCrowd(subs), reg: prometheus.NewRegistry(), seen: map[string]float64{}, body: body}
	for _, f := range setup {
		f(r)
	}
	opts.Registerer = r.reg
	opts.Logger = slog.New(slog.NewTextHandler(&r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Client = &http.Client{Transport: roundTrip(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		// The poll's kind is counted as it starts: the counter that moved.
		kind := ""
		for _, k := range []string{"admission", "nudge", "regular"} {
			v := promtest.Value(t, r.reg, "ssegate_upstream_polls_by_kind_total", "kind", k)
			if v != r.seen[k] {
				kind, r.seen[k] = k, v
			}
		}
		r.polls = append(r.polls, poll{time.Now(), kind})
		if r.onPoll != nil {
			r.onPoll()
		}
		if r.slow > 0 {
			r.mu.Unlock()
			time.Sleep(r.slow)
			r.mu.Lock()
		}
		status := 200
		if r.status != nil {
			status = r.status(len(r.polls))
		}
		resp := reply(status, r.body())
		if r.hdr != nil {
			for k, vs := range r.hdr(len(r.polls)) {
				resp.Header[k] = vs
			}
		}
		return resp, nil
	})}
	p := poller.New(opts)
	t.Cleanup(p.Close)
	u, _ := url.Parse("http://up.test/k")
	target := stream.NewKeyer(nil).Target(u.Path, u, http.Header{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, target, r.crowd) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *contractRig) all() []poll {
	synctest.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]poll(nil), r.polls...)
}

func (r *contractRig) of(kind string) []time.Time {
	var out []time.Time
	for _, p := range r.all() {
		if p.kind == kind {
			out = append(out, p.at)
		}
	}
	return out
}

// checkBound fails the test if, over any window, the key's regular polls
// exceed ceil(subscriber polls in it) + BurstPolls. The worst windows
// start and end at a regular poll, so checking those pairs checks all.
func (r *contractRig) checkBound(t *testing.T) {
	t.Helper()
	regular := r.of("regular")
	for i := range regular {
		for j := i; j < len(regular); j++ {
			allowed := math.Ceil(r.crowd.subscriberPolls(regular[i], regular[j], r.opts.LegacyInterval)-1e-9) + poller.BurstPolls
			if n := j - i + 1; float64(n) > allowed {
				t.Fatalf("%d regular polls between %v and %v, the subscribers' pages allow %v (+%d saved)",
					n, regular[i].Format(time.TimeOnly), regular[j].Format(time.TimeOnly), allowed-poller.BurstPolls, poller.BurstPolls)
			}
		}
	}
	if a := r.of("admission"); len(a) != 1 {
		t.Errorf("%d admission polls, want 1", len(a))
	}
}

func contractOpts() poller.Options {
	return poller.Options{Interval: 2 * time.Second, IntervalMax: 30 * time.Second, LegacyInterval: time.Minute}
}

// everySecond is a body that changes every second.
func everySecond() func() string {
	begin := time.Now()
	return func() string { return fmt.Sprintf(`[{"id":1,"v":%d}]`, time.Since(begin)/time.Second) }
}

// TestContractBusyKey: a key whose body changes every second, with 1, 10
// and 100 subscribers, without nudges: its regular polls stay within what
// the pages would have made, and it uses that allowance rather than
// starving (a changing key is worth polling).
func TestContractBusyKey(t *testing.T) {
	for _, subs := range []int{1, 10, 100} {
		t.Run(fmt.Sprint(subs), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const run = 30 * time.Minute
				r := runContract(t, contractOpts(), subs, everySecond())
				time.Sleep(run)
				r.checkBound(t)
				// At most one poll per Interval either way; the allowance is
				// the tighter limit up to 30 subscribers.
				want := min(float64(subs)*run.Seconds()/60, run.Seconds()/2)
				if got := float64(len(r.of("regular"))); got < 0.85*want {
					t.Errorf("%v regular polls in %v, want about %v: a changing key should use its allowance", got, run, want)
				}
				if got := promtest.Value(t, r.reg, "ssegate_legacy_polling_rps"); got != float64(subs)/60 {
					t.Errorf("ssegate_legacy_polling_rps = %v, want %v", got, float64(subs)/60)
				}
			})
		})
	}
}

// TestContractNudgedChanges: the same busy key, every change nudged: each
// nudged change is polled within Interval, the regular polls still keep
// the contract, and they are the safety net, not the main load.
func TestContractNudgedChanges(t *testing.T) {
	for _, subs := range []int{1, 10, 100} {
		t.Run(fmt.Sprint(subs), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const run = 10 * time.Minute
				opts := contractOpts()
				r := runContract(t, opts, subs, everySecond())
				time.Sleep(time.Second) // admitted
				var nudges []time.Time
				for range int(run / time.Second) {
					r.crowd.signal(stream.SignalNudge)
					nudges = append(nudges, time.Now())
					time.Sleep(time.Second)
				}
				r.checkBound(t)
				polls := r.all()
				for _, n := range nudges {
					ok := false
					for _, p := range polls {
						if !p.at.Before(n) && p.at.Sub(n) <= opts.Interval {
							ok = true
							break
						}
					}
					if !ok {
						t.Fatalf("the change nudged at %v was not polled within %v", n.Format(time.TimeOnly), opts.Interval)
					}
				}
				nudged := r.of("nudge")
				for i := 1; i < len(nudged); i++ {
					if gap := nudged[i].Sub(nudged[i-1]); gap < opts.Interval {
						t.Fatalf("nudged polls %v apart, want at least %v", gap, opts.Interval)
					}
				}
				if got := len(r.of("regular")); got > len(nudged)/10 {
					t.Errorf("%d regular polls beside %d nudged ones, want the regular polls a rare safety net", got, len(nudged))
				}
			})
		})
	}
}

// TestContractSavesForAChange: a key left quiet for long (IntervalMax an
// hour) saves at most BurstPolls, and spends them at Interval as soon as a
// regular poll finds a change: changes cluster.
func TestContractSavesForAChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := contractOpts()
		opts.IntervalMax = time.Hour
		var mu sync.Mutex
		changing := false
		begin := time.Now()
		r := runContract(t, opts, 10, func() string {
			mu.Lock()
			defer mu.Unlock()
			if !changing {
				return `[{"id":1}]`
			}
			return fmt.Sprintf(`[{"id":1,"v":%d}]`, time.Since(begin)/time.Second)
		})
		time.Sleep(3 * time.Hour)
		mu.Lock()
		changing = true
		mu.Unlock()
		changedAt := time.Now()
		time.Sleep(2 * time.Hour)
		r.checkBound(t)
		var after []time.Time
		for _, at := range r.of("regular") {
			if at.After(changedAt) {
				after = append(after, at)
			}
		}
		// The first poll after the change finds it; the saved polls follow
		// at Interval (±10%), then the allowance (one per 6s) paces them.
		if len(after) < 4 {
			t.Fatalf("%d regular polls after the change", len(after))
		}
		for i := 1; i <= poller.BurstPolls-1; i++ {
			if gap := after[i].Sub(after[i-1]); gap > 2200*time.Millisecond {
				t.Errorf("saved poll %d came %v after the previous one, want within Interval: spend the savings on the change", i, gap)
			}
		}
	})
}

// TestContractNudgesWithinThePagesRate: a key whose changes are all
// announced, less often than its pages polled, costs the upstream no more
// than the pages did, nudged polls included (each spends the key's credit,
// borrowing at most one poll).
func TestContractNudgesWithinThePagesRate(t *testing.T) {
	for _, subs := range []int{1, 10} {
		t.Run(fmt.Sprint(subs), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := contractOpts()
				r := runContract(t, opts, subs, everySecond())
				// Half the pages' rate on average, at random moments.
				page := opts.LegacyInterval / time.Duration(subs)
				rng := rand.New(rand.NewPCG(3, uint64(subs)))
				const run = 2 * time.Hour
				for begin := time.Now(); time.Since(begin) < run; {
					time.Sleep(page + time.Duration(rng.Int64N(int64(2*page))))
					r.crowd.signal(stream.SignalNudge)
				}
				polls := r.all()
				pages := r.crowd.subscriberPolls(polls[0].at, time.Now(), opts.LegacyInterval)
				// +1 admission, +BurstPolls saved, +1 borrowed.
				if n := float64(len(polls)); n > math.Ceil(pages)+1+poller.BurstPolls+1 {
					t.Errorf("%v polls (%d nudged) in %v, the pages would have made %.0f", n, len(r.of("nudge")), run, pages)
				}
				r.checkBound(t)
			})
		})
	}
}

// TestContractIdleKey: a key that never changes, with 1, 10 and 100
// subscribers, an hour: polled at the stretched interval (IntervalMax /
// subscribers, never under Interval) or as the pages allow, whichever is
// rarer.
func TestContractIdleKey(t *testing.T) {
	for _, subs := range []int{1, 10, 100} {
		t.Run(fmt.Sprint(subs), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := contractOpts()
				r := runContract(t, opts, subs, func() string { return `[{"id":1}]` })
				time.Sleep(time.Hour)
				r.checkBound(t)
				ceiling := max(opts.Interval, opts.IntervalMax/time.Duration(subs))
				want := min(float64(subs)*time.Hour.Seconds()/opts.LegacyInterval.Seconds(), time.Hour.Seconds()/ceiling.Seconds())
				if n := float64(len(r.of("regular"))); n < 0.9*want || n > want {
					t.Errorf("%v regular polls of an idle key in an hour with %d subscribers, want just under %v", n, subs, want)
				}
			})
		})
	}
}

// TestContractSubscribersComeAndGo: subscribers join and leave at random,
// down to none (the key lingers), while the key changes every second.
func TestContractSubscribersComeAndGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A slow upstream: subscribers also leave while a poll is in flight.
		r := runContract(t, contractOpts(), 3, everySecond(), func(r *contractRig) { r.slow = 1500 * time.Millisecond })
		rng := rand.New(rand.NewPCG(1, 2))
		subs := 3
		var rejoined []time.Time
		for range 400 {
			time.Sleep(time.Duration(rng.IntN(8_000)) * time.Millisecond)
			next := max(0, subs+rng.IntN(9)-4)
			if rng.IntN(10) == 0 {
				next = 0
			}
			if subs == 0 && next > 0 {
				rejoined = append(rejoined, time.Now())
			}
			subs = next
			r.crowd.set(subs)
			if rng.IntN(5) == 0 {
				r.crowd.signal(stream.SignalNudge)
			}
		}
		time.Sleep(time.Minute)
		r.checkBound(t)
		// A key that had lost every subscriber is polled again once one
		// is back and its pages would have polled twice (a nudge may have
		// borrowed one): not an hour later.
		polls := r.all()
		const soon = 2 * 66 * time.Second
		for _, at := range rejoined {
			if r.crowd.subscriberPolls(at, at.Add(soon), time.Minute) < 2.2 {
				continue // gone again before their pages would have polled
			}
			ok := false
			for _, p := range polls {
				if !p.at.Before(at) && p.at.Sub(at) <= soon {
					ok = true
					break
				}
			}
			if !ok {
				t.Errorf("not polled within %v of subscribers coming back at %v", soon, at.Format(time.TimeOnly))
			}
		}
		if len(rejoined) < 5 {
			t.Errorf("only %d rejoins: the test does not exercise a key coming back", len(rejoined))
		}
	})
}

// TestContractLeaveDuringPolls: the subscribers leave just after a (slow)
// poll starts and come back 30s later. Their leaving is only heard once
// the poll is over, so the key must not credit the poll's duration at the
// old count, or it would poll on credit nobody gave it.
func TestContractLeaveDuringPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := contractOpts()
		opts.Timeout = time.Minute
		stop := make(chan struct{})
		t.Cleanup(func() { close(stop) })
		sleep := func(d time.Duration) bool {
			select {
			case <-time.After(d):
				return true
			case <-stop:
				return false
			}
		}
		away := false // guarded by rig.mu
		r := runContract(t, opts, 10, everySecond(), func(rig *contractRig) {
			rig.slow = 10 * time.Second
			rig.onPoll = func() {
				if away {
					return
				}
				away = true
				go func() {
					defer func() { rig.mu.Lock(); away = false; rig.mu.Unlock() }()
					if !sleep(100 * time.Millisecond) {
						return
					}
					rig.crowd.set(0)
					if sleep(30 * time.Second) {
						rig.crowd.set(10)
					}
				}()
			}
		})
		time.Sleep(time.Hour)
		r.checkBound(t)
		if n := len(r.of("regular")); n < 60 {
			t.Errorf("%d regular polls in an hour, want the key polled as its subscribers allow (about 100)", n)
		}
	})
}

// TestContractOff: LegacyInterval 0 keeps the adaptive interval alone.
func TestContractOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := contractOpts()
		opts.LegacyInterval = 0
		r := runContract(t, opts, 1, everySecond())
		time.Sleep(10 * time.Minute)
		if n := len(r.of("regular")); n < 270 {
			t.Errorf("%d regular polls in 10 minutes of a key changing every second with the contract off, want one per 2s", n)
		}
		if got := promtest.Value(t, r.reg, "ssegate_legacy_polling_rps"); got != 0 {
			t.Errorf("ssegate_legacy_polling_rps = %v with the contract off, want 0", got)
		}
	})
}

// fleetOf is a poller.Shared whose every turn is this replica's, for a key
// with subs clients on the whole fleet: the holder's side of the contract.
type fleetOf int

func (f fleetOf) Join(stream.Target, stream.Publisher) (poller.SharedKey, error) { return f, nil }
func (f fleetOf) Turn(ctx context.Context) (poller.Turn, error)                  { return poller.Turn{}, ctx.Err() }
func (f fleetOf) Store(context.Context, poller.Write) error                      { return nil }
func (f fleetOf) Forget(context.Context) error                                   { return nil }
func (f fleetOf) Subscribers() int                                               { return int(f) }
func (f fleetOf) Close()                                                         {}

// TestContractCountsTheFleet: the holder of a key whose 10 clients are
// spread over the fleet, 1 of them on this replica, polls as the 10 pages
// would have, not as 1; its legacy_polling_rps counts its own page only, so
// that the replicas' gauges add up to the fleet's.
func TestContractCountsTheFleet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const run = 30 * time.Minute
		opts := contractOpts()
		opts.Shared = fleetOf(10)
		r := runContract(t, opts, 1, everySecond())
		time.Sleep(run)
		want := 10 * run.Seconds() / 60
		if got := float64(len(r.of("regular"))); got < 0.85*want || got > want+poller.BurstPolls {
			t.Errorf("%v regular polls in %v for 10 subscribers on the fleet, want about %v", got, run, want)
		}
		if got := promtest.Value(t, r.reg, "ssegate_legacy_polling_rps"); got != 1.0/60 {
			t.Errorf("ssegate_legacy_polling_rps = %v, want this replica's page only, %v", got, 1.0/60)
		}
	})
}

// notHolder is a poller.Shared whose turns never come: another replica
// polls the key.
type notHolder struct{ fleetOf }

func (notHolder) Join(stream.Target, stream.Publisher) (poller.SharedKey, error) {
	return notHolder{}, nil
}
func (notHolder) Turn(ctx context.Context) (poller.Turn, error) {
	<-ctx.Done()
	return poller.Turn{}, ctx.Err()
}

// TestContractGaugeWhileAnotherReplicaPolls: a replica that does not poll
// a key still counts its own clients' pages in ssegate_legacy_polling_rps
// as they come and go.
func TestContractGaugeWhileAnotherReplicaPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := contractOpts()
		opts.Shared = notHolder{}
		r := runContract(t, opts, 1, everySecond())
		time.Sleep(time.Second)
		r.crowd.set(5)
		time.Sleep(time.Second)
		synctest.Wait()
		if got := promtest.Value(t, r.reg, "ssegate_legacy_polling_rps"); got != 5.0/60 {
			t.Errorf("ssegate_legacy_polling_rps = %v with 5 clients here, want %v", got, 5.0/60)
		}
		if n := len(r.all()); n != 0 {
			t.Errorf("%d polls by a replica that does not hold the key", n)
		}
	})
}
