package poller

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/stream"
)

// keyPlan decides when one key polls next. Three kinds of poll:
//
//   - the admission poll, at once: a client waits for it;
//   - a nudged poll, as soon as the key's last poll is Interval old (or the
//     upstream's X-Poll-Interval) and no upstream pause is running,
//     whatever the contract's credit;
//   - a regular poll, at the key's adaptive interval (back to Interval after
//     a change a regular poll found or a new subscriber, ×1.5 per unchanged
//     poll up to max(Interval, IntervalMax / subscribers)), never sooner
//     than an upstream hint's shortest interval or a pause allow, and under
//     the load contract only once the key has a whole poll of credit.
//
// A nudged poll does not bring the interval back to the minimum: a backend
// that announces its changes leaves regular polls as the safety net, so
// they go to the longest interval.
type keyPlan struct {
	opts   *Options
	credit *allowance
	gauge  prometheus.Gauge // ssegate_legacy_polling_rps
	rps    float64          // this key's share of gauge
	// local counts this replica's own subscribers, for the gauge: in a
	// fleet the credit counts every replica's, and each replica's gauge
	// must count its own pages only, so that their sum is the fleet's.
	// nil: the credit's count.
	local func() int
	hints map[Hint]prometheus.Counter
	log   *slog.Logger

	admitAt   time.Time
	admitted  bool
	nudged    bool          // a nudge waits for its poll
	interval  time.Duration // the adaptive interval
	regularAt time.Time     // the interval's (or the backoff's) next poll
	slack     float64       // jitter on waiting for credit, as a fraction of one poll's refill
	held      bool          // the planned regular poll waits for credit, not for the interval

	lastStart, prevStart time.Time
	polling              priority // kind of the poll in flight

	pausedUntil  time.Time     // an upstream-requested pause; nudges wait too
	minInterval  time.Duration // from X-Poll-Interval or max-age; 0: none
	intervalHint Hint
}

func (p *Poller) newPlan(now time.Time, subs int, log *slog.Logger) *keyPlan {
	k := &keyPlan{
		opts:     &p.opts,
		credit:   newAllowance(p.opts.LegacyInterval, now, subs),
		gauge:    p.metrics.legacy,
		hints:    p.metrics.hints,
		log:      log,
		admitAt:  now,
		interval: p.opts.Interval,
		slack:    rand.Float64() / 10,
	}
	k.syncGauge()
	return k
}

// close takes the key's share out of the gauge.
func (k *keyPlan) close() { k.gauge.Sub(k.rps) }

func (k *keyPlan) syncGauge() {
	r := k.credit.rps()
	if k.local != nil && k.credit.on() {
		r = float64(k.local()) / k.credit.legacy.Seconds()
	}
	if r != k.rps {
		k.gauge.Add(r - k.rps)
		k.rps = r
	}
}

func (k *keyPlan) advance(now time.Time, subs int, prompt bool) {
	k.credit.advance(now, subs, prompt)
	k.syncGauge()
}

// plan returns when the next poll may start and its priority.
func (k *keyPlan) plan() (time.Time, priority) {
	if !k.admitted {
		return k.admitAt, priorityAdmission
	}
	floor := latest(k.lastStart.Add(k.opts.Interval), k.pausedUntil)
	if k.nudged {
		// X-Poll-Interval is how often the upstream allows polling at all
		// (GitHub: "please obey"), so a nudge waits for it too; max-age
		// says how long an answer stays fresh, which a nudge proves wrong.
		if k.intervalHint == HintPollInterval {
			floor = latest(floor, k.lastStart.Add(k.minInterval))
		}
		return floor, priorityNudge
	}
	due := latest(latest(k.regularAt, floor), k.lastStart.Add(k.minInterval))
	k.held = false
	if !k.credit.ready() {
		ready := k.credit.readyAt()
		if k.credit.subs > 0 {
			refill := k.credit.legacy / time.Duration(k.credit.subs)
			ready = ready.Add(time.Duration(k.slack * float64(refill)))
		}
		if ready.After(due) {
			due, k.held = ready, true
		}
	}
	return due, priorityRegular
}

// signal takes news from the hub while the key waits.
func (k *keyPlan) signal(now time.Time, sig stream.Signal, subs int) {
	k.advance(now, subs, true)
	if !k.admitted {
		return // the admission poll is on its way
	}
	if sig&stream.SignalNudge != 0 {
		k.nudged = true
	}
	if sig&stream.SignalSubscriber != 0 {
		// A new page may mean something changed: look soon, as far as
		// the credit allows.
		k.interval = k.opts.Interval
		k.regularAt = earliest(k.regularAt, k.lastStart.Add(k.opts.Interval))
	}
}

// start reports whether the poll the scheduler just allowed may go: a
// regular poll whose credit went with subscribers that left meanwhile is
// planned again instead.
func (k *keyPlan) start(now time.Time, subs int) bool {
	k.advance(now, subs, true)
	switch {
	case !k.admitted:
		k.polling = priorityAdmission
	case k.nudged:
		k.polling = priorityNudge
	default:
		k.polling = priorityRegular
		if !k.credit.ready() {
			return false
		}
	}
	k.prevStart, k.lastStart = k.lastStart, now
	return true
}

// done plans after a poll's outcome; failures counts the consecutive
// failed polls, this one included.
func (k *keyPlan) done(now time.Time, res result, subs, failures int) {
	k.advance(now, subs, false)
	if k.polling != priorityAdmission {
		k.credit.spend() // the admission poll is the page's first load: free
	}
	k.admitted = true
	if k.polling == priorityNudge {
		k.nudged = false
	}
	k.applyHints(now, res.upstreamHeader)

	ceiling := max(k.opts.Interval, k.opts.IntervalMax/time.Duration(max(subs, 1)))
	switch {
	case k.polling == priorityNudge:
		k.interval = ceiling
	case res.outcome == Changed:
		k.interval = k.opts.Interval
	case res.outcome.failed():
		// backoff takes over; the interval resumes after it
	default:
		cur := k.interval
		if gap := k.lastStart.Sub(k.prevStart); k.held && gap > cur {
			cur = gap // the credit held the key back: stretch from what it got
		}
		k.interval = min(cur+cur/2, ceiling)
	}
	k.regularAt = now.Add(k.delay(failures, res))
	k.slack = rand.Float64() / 10
}

// delay is the interval with ±10% jitter, so keys started together spread
// out; after failures it backs off exponentially, with jitter, up to
// MaxBackoff, and never sooner than a Retry-After asked for.
func (k *keyPlan) delay(failures int, res result) time.Duration {
	if failures == 0 {
		return k.interval - k.interval/10 + rand.N(k.interval/5+1)
	}
	d := k.opts.Interval << min(failures, 30)
	if d <= 0 || d > k.opts.MaxBackoff {
		d = k.opts.MaxBackoff
	}
	d = d/2 + rand.N(d/2+1) // "equal jitter": between half and all of d
	if res.retryAfter > d {
		d = min(res.retryAfter, maxHint)
	}
	return d
}

// applyHints follows what an answer's headers ask; h is nil when no answer
// came, which keeps the hints as they were.
func (k *keyPlan) applyHints(now time.Time, h http.Header) {
	if h == nil {
		return
	}
	hs := parseHints(h, now)
	if hs.pause > 0 {
		k.hints[hs.pauseHint].Inc()
		k.pausedUntil = latest(k.pausedUntil, now.Add(hs.pause))
		k.log.Debug("upstream asked for a pause", "hint", string(hs.pauseHint), "seconds", hs.pause.Seconds())
	}
	if hs.interval > 0 {
		k.hints[hs.intervalHint].Inc()
	}
	if hs.interval != k.minInterval || hs.intervalHint != k.intervalHint {
		if hs.interval > 0 {
			k.log.Debug("upstream set the shortest interval", "hint", string(hs.intervalHint), "seconds", hs.interval.Seconds())
		} else {
			k.log.Debug("upstream stopped setting the shortest interval", "hint", string(k.intervalHint))
		}
	}
	k.minInterval, k.intervalHint = hs.interval, hs.intervalHint
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
