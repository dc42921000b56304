package poller

import (
	"math"
	"time"
)

// BurstPolls is the most regular polls a key may save up under the load
// contract, to spend soon after a change it finds.
const BurstPolls = 3

// allowance is one key's share of the load contract: the polls its
// subscribers' pages would have made, at one per subscriber per legacy
// interval, saved up to BurstPolls. Every regular poll waits for a whole
// poll of credit and spends it, so the regular polls of a key over any
// window W never exceed ceil(W × S / legacy) + BurstPolls, S being the
// time-weighted number of subscribers. A nudged poll never waits for
// credit, but spends a poll all the same, borrowing at most one in advance
// (the answer it brings makes the next regular poll unnecessary): so while
// a key's changes are announced less often than its pages polled, all its
// polls together stay within their rate too. The admission poll is free:
// the page that joined would have polled at once too.
type allowance struct {
	legacy time.Duration // 0: no contract
	credit float64       // polls saved
	subs   int           // subscribers since at
	at     time.Time
}

func newAllowance(legacy time.Duration, now time.Time, subs int) *allowance {
	return &allowance{legacy: legacy, subs: subs, at: now}
}

func (a *allowance) on() bool { return a.legacy > 0 }

// rps is what the subscribers' pages would cost the upstream now.
func (a *allowance) rps() float64 {
	if !a.on() {
		return 0
	}
	return float64(a.subs) / a.legacy.Seconds()
}

// advance credits the time since the last call and records subs as the
// count from now on. prompt says that the count changed just now (a
// subscriber signal woke the key): the previous count held until now.
// Otherwise it may have dropped at any moment since the last call (during
// a poll), so the lower count is credited for the whole stretch: the error
// is always on the upstream's side.
func (a *allowance) advance(now time.Time, subs int, prompt bool) {
	if !a.on() {
		return
	}
	if d := now.Sub(a.at); d > 0 {
		rate := a.subs
		if !prompt {
			rate = min(rate, subs)
		}
		a.credit = min(a.credit+float64(rate)*d.Seconds()/a.legacy.Seconds(), BurstPolls)
	}
	a.at, a.subs = now, subs
}

// readyAt is when the credit reaches one poll at the current rate: now
// when it already has, far in the future (never) with no subscribers.
func (a *allowance) readyAt() time.Time {
	if !a.on() || a.credit >= 1 {
		return a.at
	}
	if a.subs == 0 {
		return a.at.Add(never)
	}
	missing := (1 - a.credit) * a.legacy.Seconds() / float64(a.subs)
	// Round up: readiness must not be reached a nanosecond early.
	return a.at.Add(time.Duration(math.Ceil(missing * float64(time.Second))))
}

// ready reports whether a regular poll may start.
func (a *allowance) ready() bool { return !a.on() || a.credit >= 1-1e-9 }

// spend takes one poll of credit, borrowing at most one in advance.
func (a *allowance) spend() { a.credit = max(a.credit-1, -1) }

// never stands for "no poll planned": the key re-plans when a subscriber
// joins, so this is only a bound on the wait.
const never = time.Hour
