package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ssegate/ssegate/stream"
)

// update is what a follower receives: the next part of its key's history,
// always in order and each event once.
type update struct {
	// Reset: the history this follower had does not continue (the key has a
	// new epoch, or the follower fell behind what Redis retains). Start over
	// from Body at Last, with Events the history Redis retains up to Last;
	// clients at an older position need a snapshot.
	Reset bool
	// Epoch is the epoch of Last and Events.
	Epoch stream.Epoch
	// Last is the position after this update.
	Last stream.ID
	// Events follow the previous update's Last without a gap (on a Reset,
	// they are the retained history, ending at Last).
	Events []entry
	// Body is the body at Last when the update reaches the newest state
	// Redis holds (always on a Reset and on this replica's own append);
	// nil when more events follow at once.
	Body []byte
}

// follower delivers one key's history, as Redis holds it, to this replica:
// the events any replica appends, each once, in order. It reads after every
// notification of an append, after every reconnection (notifications sent
// while the subscription was down are lost, the events are not), and when
// asked (poke).
type follower struct {
	e       *Engine
	key     string
	channel string
	fn      func(update)

	wake     chan struct{}            // one token: read now
	at       atomic.Pointer[position] // pos, for the pub/sub loop to skip news it has
	ctx      context.Context
	cancel   context.CancelFunc
	stopOnce sync.Once
	done     chan struct{}

	mu      sync.Mutex // held while fn runs, so that updates never overlap
	pos     position
	stopped bool
}

// errFollowed: the key has a follower on this engine already.
var errFollowed = errors.New("followed already")

// follow starts delivering key's history to fn, which is called from one
// goroutine at a time and must return soon; it must not call the
// follower's Stop. The first update is a Reset with the key's state, as
// soon as the key has one. One follower per key and engine.
func (e *Engine) follow(key string, fn func(update)) (*follower, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	f := &follower{e: e, key: key, channel: e.names.notify(key), fn: fn, wake: make(chan struct{}, 1), done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(e.ctx)
	f.at.Store(&position{})
	e.subMu.Lock()
	defer e.subMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		f.cancel()
		return nil, ErrClosed
	}
	if e.followers[f.channel] != nil {
		e.mu.Unlock()
		f.cancel()
		return nil, fmt.Errorf("fleet: key %s: %w", key, errFollowed)
	}
	e.followers[f.channel] = f
	ps := e.ps
	e.mu.Unlock()
	if ps != nil {
		ctx, cancel := context.WithTimeout(f.ctx, e.opts.Timeout)
		if err := ps.Subscribe(ctx, f.channel); err != nil {
			// Rebuild the subscription: the pub/sub loop then subscribes
			// every follower again and each reads what it missed.
			e.metrics.errors.WithLabelValues(opProbe).Inc()
			e.opts.Logger.Warn("fleet: subscribe failed; resubscribing", "err", err)
			_ = ps.Close()
		}
		cancel()
	}
	go f.run()
	f.poke()
	return f, nil
}

// poke asks for a read now: the newest events and body, or a Reset when
// the follower's position is no longer in the history.
func (f *follower) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Stop ends the deliveries; fn is not called after it returns.
func (f *follower) Stop() {
	f.stopOnce.Do(func() {
		e := f.e
		e.subMu.Lock()
		e.mu.Lock()
		if e.followers[f.channel] == f {
			delete(e.followers, f.channel)
		}
		ps := e.ps
		e.mu.Unlock()
		if ps != nil {
			ctx, cancel := context.WithTimeout(context.Background(), e.opts.Timeout)
			_ = ps.Unsubscribe(ctx, f.channel) // best effort: a stray message is ignored
			cancel()
		}
		e.subMu.Unlock()
		f.cancel()
		<-f.done
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
	})
}

func (f *follower) run() {
	defer close(f.done)
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		}
		for f.sync() && f.ctx.Err() == nil {
		}
	}
}

// notified is the pub/sub loop's news of an append: "<epoch> <previous id>
// <last id> <tag>".
func (f *follower) notified(payload string) {
	parts := strings.Fields(payload)
	if len(parts) == 4 {
		at := f.at.Load()
		if last, err := strconv.ParseUint(parts[2], 10, 64); err == nil &&
			string(at.Epoch) == parts[0] && uint64(at.Last) == last && at.tag == parts[3] {
			return // delivered already (this replica's own append)
		}
	}
	f.poke()
}

// sync reads what follows the follower's position and delivers it. It
// reports whether more may follow at once.
func (f *follower) sync() (more bool) {
	// Every read asks for the body: a hub needs the newest one for the
	// snapshots of clients that join, and it comes only with a read that
	// reaches the newest event, one per change at most, which is less than
	// what each replica polling the upstream would read.
	const withBody = true
	f.mu.Lock()
	pos := f.pos
	f.mu.Unlock()
	if pos.Epoch == "" {
		return f.reset(pos)
	}
	r, err := f.e.since(f.ctx, f.key, pos, f.e.opts.HistorySize, withBody)
	if errors.Is(err, errUnknown) {
		return f.reset(pos)
	}
	if err != nil {
		return false // read again at reconnection or at the next notification
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.pos != pos {
		return !f.stopped // an append of this replica delivered meanwhile
	}
	if len(r.Events) > 0 || r.Body != nil {
		f.fn(update{Epoch: pos.Epoch, Last: r.Next.Last, Events: r.Events, Body: r.Body})
	}
	f.setPos(r.Next)
	return r.Next.Last < r.Last.Last
}

// reset starts over from the key's whole state in Redis.
func (f *follower) reset(pos position) (more bool) {
	st, evs, ok, err := f.e.load(f.ctx, f.key)
	if err != nil || !ok {
		return false // no state yet: the first append's notification brings it
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped || f.pos != pos {
		return !f.stopped
	}
	f.fn(update{Reset: true, Epoch: st.Epoch, Last: st.Last, Events: evs, Body: st.Body})
	f.setPos(st.position)
	return false
}

// setPos must be called with f.mu held.
func (f *follower) setPos(p position) {
	f.pos = p
	f.at.Store(&p)
}

// offer hands this replica's own append to the key's follower, if any, so
// that the local clients need no read of Redis: delivered at once when it
// follows the follower's position, else left to the read the notification
// triggers.
func (e *Engine) offer(key string, prev, pos position, w write) {
	e.mu.Lock()
	f := e.followers[e.names.notify(key)]
	e.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.stopped:
	case f.pos == pos:
		// A read delivered the events first; the body it did not.
		f.fn(update{Epoch: pos.Epoch, Last: pos.Last, Body: w.Body})
	case prev.Epoch == "":
		f.fn(update{Reset: true, Epoch: pos.Epoch, Last: pos.Last, Body: w.Body})
		f.setPos(pos)
	case f.pos == prev:
		u := update{Epoch: pos.Epoch, Last: pos.Last, Body: w.Body}
		if pos.Last > prev.Last {
			u.Events = make([]entry, 0, len(w.Changes))
			for i, c := range w.Changes {
				u.Events = append(u.Events, entry{ID: prev.Last + 1 + stream.ID(i), Kind: c.Kind, Data: c.Data})
			}
		}
		f.fn(u)
		f.setPos(pos)
	default:
		f.poke()
	}
}

// Nudges delivers the payloads other replicas publish with PublishNudge
// (not this replica's own). It is closed by Close. When the receiver falls
// behind by 64 nudges, further ones are dropped: a nudge only hastens a
// poll.
func (e *Engine) Nudges() <-chan []byte { return e.nudges }

// PublishNudge sends payload to every other replica; the receiver matches
// it against its keys and signals the pollers of those it holds. The
// payload must carry no credential (send a keyed hash of one).
func (e *Engine) PublishNudge(ctx context.Context, payload []byte) error {
	msg := make([]byte, 0, len(e.token)+1+len(payload))
	msg = append(append(append(msg, e.token...), ' '), payload...)
	return e.do(ctx, opPublish, func(ctx context.Context) error {
		return e.rdb.Publish(ctx, e.names.nudge(), msg).Err()
	})
}

func (e *Engine) gotNudge(payload string) {
	from, body, ok := strings.Cut(payload, " ")
	if !ok || from == e.token {
		return
	}
	select {
	case e.nudges <- []byte(body):
	default:
	}
}

var errProbeLost = errors.New("fleet: liveness probe not answered")

// ping checks the command connection, apart from the subscription.
func (e *Engine) ping() error {
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	defer cancel()
	return e.rdb.Ping(ctx).Err()
}

// pubsubLoop keeps this replica's subscription alive: the probe channel,
// the nudge channel and each follower's notification channel, on one
// connection, probed by publishing to the replica's own channel. A probe
// that does not come back within probeTimeout means the subscription is
// dead even if the connection looks open (a NAT or proxy dropped it, a
// failover left it on the old node): it is closed and rebuilt, and every
// follower reads what it may have missed.
func (e *Engine) pubsubLoop(first chan struct{}) {
	defer e.wg.Done()
	opened := sync.OnceFunc(func() { close(first) })
	defer opened()
	for e.ctx.Err() == nil {
		answered := false
		err := e.serve(func() { answered = true; opened() })
		if e.ctx.Err() != nil {
			return
		}
		if answered && e.ping() == nil {
			// Only the subscription was lost (CLIENT KILL, a proxy
			// dropping it) while commands still work: rebuild it at
			// once, still connected; the new subscription makes every
			// follower read what it missed. Polls stay shared, and
			// clients get no resync. A subscription that fails before
			// its first probe comes back counts as Redis being away.
			e.opts.Logger.Info("fleet: subscription lost; rebuilding it", "err", err)
			continue
		}
		e.setConnected(false, err)
		opened()
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(e.opts.probeInterval):
		}
	}
}

// serve runs one subscription until it fails.
func (e *Engine) serve(opened func()) error {
	ps := e.sub.Subscribe(e.ctx)
	defer ps.Close()
	probeCh, nudgeCh := e.names.probe(e.token), e.names.nudge()
	e.subMu.Lock()
	e.mu.Lock()
	chans := []string{probeCh, nudgeCh}
	for ch := range e.followers {
		chans = append(chans, ch)
	}
	e.ps = ps
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(e.ctx, e.opts.Timeout)
	err := ps.Subscribe(ctx, chans...)
	cancel()
	e.subMu.Unlock()
	defer func() {
		e.mu.Lock()
		if e.ps == ps {
			e.ps = nil
		}
		e.mu.Unlock()
	}()
	if err != nil {
		return fmt.Errorf("fleet: subscribe: %w", err)
	}

	resynced := false // the followers read since this subscription began
	var probe string  // the outstanding probe's payload; "" when none
	var sentAt time.Time
	next := time.Now() // the next probe
	for {
		if probe == "" && !time.Now().Before(next) {
			probe, sentAt = randomHex(8), time.Now()
			err := e.do(e.ctx, opProbe, func(ctx context.Context) error {
				return e.rdb.Publish(ctx, probeCh, probe).Err()
			})
			if err != nil {
				return err
			}
		}
		deadline := next
		if probe != "" {
			deadline = sentAt.Add(e.opts.probeTimeout)
			if !time.Now().Before(deadline) {
				e.metrics.errors.WithLabelValues(opProbe).Inc()
				return errProbeLost
			}
		}
		msg, err := ps.ReceiveTimeout(e.ctx, max(time.Until(deadline), time.Millisecond))
		switch {
		case e.ctx.Err() != nil:
			return nil
		case err != nil && isTimeout(err):
			continue
		case err != nil:
			return fmt.Errorf("fleet: subscription: %w", err)
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue // subscription confirmations, pongs
		}
		switch m.Channel {
		case probeCh:
			if m.Payload != probe {
				continue // a late answer to an earlier probe
			}
			probe, next = "", sentAt.Add(e.opts.probeInterval)
			e.heartbeat()
			if e.setConnected(true, nil) || !resynced {
				// Notifications sent while no subscription listened
				// are lost: every follower reads.
				e.resync()
			}
			resynced = true
			opened()
		case nudgeCh:
			e.gotNudge(m.Payload)
		default:
			e.mu.Lock()
			f := e.followers[m.Channel]
			e.mu.Unlock()
			if f != nil {
				f.notified(m.Payload)
			}
		}
	}
}

// resync makes every follower read: notifications may have been lost while
// the engine was not connected.
func (e *Engine) resync() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.followers {
		f.poke()
	}
}
