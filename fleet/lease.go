package fleet

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// The poll lease is an efficiency lease, not a lock: it makes one replica
// poll a key for the fleet, and if two ever poll for a moment (a pause longer
// than the lease, a clock jump) the second's append gets errConflict, so a
// poll is wasted but the history stays whole.

// tryAcquire takes the key's poll lease for this replica if it is free, or
// renews it if this replica holds it already. held reports which is true
// now. wait is, when another replica holds it, the time until its lease
// runs out unless renewed: when to try again to take over at once. It also
// reports subs, this replica's clients of the key, and returns the fleet's.
func (e *Engine) tryAcquire(ctx context.Context, key string, subs int) (held bool, wait time.Duration, fleetSubs int, err error) {
	if err := checkKey(key); err != nil {
		return false, 0, 0, err
	}
	var res []any
	err = e.do(ctx, opAcquire, func(ctx context.Context) (err error) {
		res, err = acquireScript.Run(ctx, e.rdb, []string{e.names.lease(key), e.names.state(key), e.names.subs(key)},
			e.token, e.opts.LeaseTime.Milliseconds(), subs).Slice()
		return err
	})
	if err != nil {
		return false, 0, 0, err
	}
	if len(res) != 3 {
		return false, 0, 0, fmt.Errorf("fleet: acquire: unexpected reply of %d values", len(res))
	}
	fleetSubs = int(num(res[2]))
	switch num(res[0]) {
	case 0:
		wait = time.Duration(max(num(res[1]), 0)) * time.Millisecond
		e.setHeld(key, false)
		return false, wait, fleetSubs, nil
	case 2:
		if str(res[1]) != "" && str(res[1]) != e.token {
			e.metrics.takeovers.Inc()
		}
	}
	e.setHeld(key, true)
	return true, 0, fleetSubs, nil
}

// renew extends the key's lease if this replica still holds it, and the
// life of the key's state with it. held is false when the lease was lost.
// Like tryAcquire, it reports subs and returns the fleet's.
func (e *Engine) renew(ctx context.Context, key string, subs int) (held bool, fleetSubs int, err error) {
	if err := checkKey(key); err != nil {
		return false, 0, err
	}
	var res []any
	err = e.do(ctx, opRenew, func(ctx context.Context) (err error) {
		res, err = renewScript.Run(ctx, e.rdb, []string{e.names.lease(key), e.names.state(key), e.names.events(key), e.names.subs(key)},
			e.token, e.opts.LeaseTime.Milliseconds(), e.opts.stateTTL.Milliseconds(), subs).Slice()
		return err
	})
	if err != nil {
		return false, 0, err
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("fleet: renew: unexpected reply of %d values", len(res))
	}
	held = num(res[0]) == 1
	e.setHeld(key, held)
	return held, int(num(res[1])), nil
}

// release gives the key's lease up if this replica holds it, so another
// replica with clients of the key takes over without waiting it out.
func (e *Engine) release(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	e.setHeld(key, false)
	return e.do(ctx, opRelease, func(ctx context.Context) error {
		return releaseScript.Run(ctx, e.rdb, []string{e.names.lease(key)}, e.token).Err()
	})
}

// forget deletes the key's state and history if this replica holds its
// lease: the upstream denied the key, and no replica may hand the stored
// body to a client that joins as if the upstream had not. The next replica
// to poll it starts from nothing: a denial again, or a new epoch.
func (e *Engine) forget(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return e.do(ctx, opAppend, func(ctx context.Context) error {
		return forgetScript.Run(ctx, e.rdb, []string{e.names.lease(key), e.names.state(key), e.names.events(key)}, e.token).Err()
	})
}

func (e *Engine) setHeld(key string, held bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.held[key]; ok == held {
		return
	}
	if held {
		e.held[key] = struct{}{}
	} else {
		delete(e.held, key)
	}
	e.metrics.leasesHeld.Set(float64(len(e.held)))
}

// lease keeps trying to hold one key's poll lease while it runs: the loop a
// key's poller runs beside its polls. It renews at a third of the lease
// time; a replica that does not hold it tries again when the holder's lease
// would run out, so a dead holder is replaced within the lease time.
type lease struct {
	e    *Engine
	key  string
	held watched[bool] // whether this replica holds the lease now: while it does, it polls the key
	seen atomic.Int64  // when a holder (this replica or another) was last seen, Unix ns
	// subs counts this replica's clients of the key, reported with each
	// acquire or renewal; fleet is the fleet's sum as last read.
	subs  func() int
	fleet atomic.Int64
}

// fleetSubscribers is the key's clients on every live replica, as the
// lease loop last read them (each replica reports its own at least every
// third of the lease time); 0 before the first read.
func (l *lease) fleetSubscribers() int { return int(l.fleet.Load()) }

func (l *lease) count() int {
	if l.subs == nil {
		return 0
	}
	return l.subs()
}

// holderSeen is when this loop last saw the lease held, by any replica.
func (l *lease) holderSeen() time.Time {
	if ns := l.seen.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// newLease returns the lease loop of key; call Run to start it.
func (e *Engine) newLease(key string) *lease { return &lease{e: e, key: key} }

// Run acquires and renews the lease until ctx is done, then releases it.
// While Redis is unreachable the lease counts as lost once it would have
// run out; the caller then polls alone anyway (Engine.Connected).
func (l *lease) Run(ctx context.Context) {
	renew := l.e.opts.LeaseTime / 3
	var validUntil time.Time // while held: when the lease may run out unless renewed
	defer func() {
		if held, _ := l.held.get(); held {
			l.held.set(false)
			rctx, cancel := context.WithTimeout(context.Background(), l.e.opts.Timeout)
			_ = l.e.release(rctx, l.key)
			cancel()
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		was, _ := l.held.get()
		next := renew
		start := time.Now()
		var held bool
		var wait time.Duration
		var err error
		if was {
			// Give up at validUntil even if Redis does not answer: from
			// then on another replica may hold it.
			rctx, cancel := context.WithDeadline(ctx, validUntil)
			var n int
			if held, n, err = l.e.renew(rctx, l.key, l.count()); err == nil {
				l.fleet.Store(int64(n))
			}
			if err == nil && !held {
				next = 0 // lost it (this replica paused too long): see who has it
			}
			cancel()
		} else {
			var n int
			if held, wait, n, err = l.e.tryAcquire(ctx, l.key, l.count()); err == nil {
				l.fleet.Store(int64(n))
			}
		}
		switch {
		case err != nil:
			// Keep polling until the lease would have run out: a
			// renewal that failed to answer may still have landed.
			held = was && time.Now().Before(validUntil)
			if held {
				next = min(next, time.Until(validUntil))
			}
		case held:
			// The lease runs from when Redis ran the call, after start;
			// the margin covers clock drift between here and Redis.
			validUntil = start.Add(l.e.opts.LeaseTime - l.e.opts.LeaseTime/10)
		case wait > 0 && wait < next:
			next = wait + time.Millisecond // the moment the holder's lease runs out
		}
		if held || err == nil && wait > 0 {
			l.seen.Store(time.Now().UnixNano())
		}
		l.held.set(held)
		if err != nil && !held {
			// Try again as soon as Redis is back, or in a while.
			up, connCh := l.e.WatchConnected()
			if up {
				connCh = nil // a reply error, not an outage
			}
			select {
			case <-ctx.Done():
				return
			case <-connCh:
				next = 0
			case <-time.After(renew):
				next = 0
			}
		}
		t.Reset(next)
	}
}
