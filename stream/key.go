package stream

import (
	"context"
	"sync"
	"time"
)

type topicState uint8

const (
	statePending topicState = iota // first poll not answered yet
	stateWaiting                   // first poll failed; clients wait for a body
	stateLive                      // a body is known
	stateDenied                    // upstream refused; the key is gone
)

// Reasons a subscriber is ended by the hub, as metric labels.
const (
	reasonSlow     = "slow"
	reasonDenied   = "denied"
	reasonShutdown = "shutdown"
)

// keyState is one key's state and subscribers.
type keyState struct {
	hub    *Hub
	target Target
	cancel context.CancelFunc

	mu      sync.Mutex
	state   topicState
	ready   chan struct{} // closed once the first poll's outcome is known
	store   Store         // body, ids and history
	snap    *Event        // snapshot of the store's current state; nil when stale
	subs    map[*Subscription]struct{}
	denial  *Denial
	linger  *time.Timer
	removed bool
	signals Signal
	sigCh   chan struct{} // holds one token while signals is not empty
}

var _ Publisher = (*keyState)(nil)

func newTopic(h *Hub, t Target, cancel context.CancelFunc) *keyState {
	return &keyState{
		hub:    h,
		target: t,
		cancel: cancel,
		ready:  make(chan struct{}),
		store:  h.opts.Store(t),
		subs:   make(map[*Subscription]struct{}),
		sigCh:  make(chan struct{}, 1),
	}
}

func (t *keyState) signal(s Signal) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.raiseLocked(s)
}

// raiseLocked records s and wakes the source; t.mu must be held.
func (t *keyState) raiseLocked(s Signal) {
	t.signals |= s
	select {
	case t.sigCh <- struct{}{}:
	default: // a token is already waiting
	}
}

// Signals implements Publisher.
func (t *keyState) Signals() <-chan struct{} { return t.sigCh }

// TakeSignals implements Publisher.
func (t *keyState) TakeSignals() Signal {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.signals
	t.signals = 0
	return s
}

func (t *keyState) closeReady() {
	select {
	case <-t.ready:
	default:
		close(t.ready)
	}
}

// join adds a subscriber resuming after the wire ID last ("": none; an ID
// of another epoch gets a snapshot). It returns nil when the key was
// removed meanwhile.
func (t *keyState) join(lastEventID string) *Subscription {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return nil
	}
	if t.linger != nil {
		t.linger.Stop()
		t.linger = nil
	}
	sub := newSubscription(t, t.hub.opts.ClientBuffer)
	if t.state == stateLive {
		evs, ok, err := t.store.Since(lastEventID)
		if err != nil {
			t.hub.opts.Logger.Warn("reading a key's history failed; sending a snapshot", "key", t.target.Key.String(), "err", err)
		}
		if ok {
			sub.backlog = evs
		} else {
			sub.backlog = []*Event{t.snapshotLocked()}
		}
	}
	t.subs[sub] = struct{}{}
	if len(t.subs) > 1 || t.state != statePending { // not the admission poll's own client
		t.raiseLocked(SignalSubscriber)
	}
	return sub
}

// leave removes sub; the last one out starts the linger timer.
func (t *keyState) leave(sub *Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.subs[sub]; ok {
		delete(t.subs, sub)
		t.raiseLocked(SignalSubscriberLeft)
	}
	if len(t.subs) > 0 || t.removed {
		return
	}
	if t.linger != nil {
		t.linger.Stop()
	}
	t.linger = time.AfterFunc(t.hub.opts.Linger, t.expire)
}

func (t *keyState) expire() {
	h := t.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.subs) == 0 {
		h.remove(t)
	}
}

// end closes sub's stream for reason; t.mu must be held.
func (t *keyState) end(sub *Subscription, reason string) {
	if _, ok := t.subs[sub]; !ok {
		return
	}
	delete(t.subs, sub)
	t.raiseLocked(SignalSubscriberLeft)
	sub.reason = reason
	close(sub.done)
	t.hub.metrics.evicted(reason)
}

// snapshotLocked returns the snapshot event for the current state, encoding
// it once per state however many clients join.
func (t *keyState) snapshotLocked() *Event {
	if t.snap == nil {
		ep, last, body, _ := t.store.Current()
		t.snap = NewEvent(ep, last, KindSnapshot, body)
	}
	return t.snap
}

// Publish implements Publisher.
func (t *keyState) Publish(body []byte, changes []Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return
	}
	if t.state != stateLive {
		// First body: every waiting subscriber starts with it.
		if _, _, err := t.store.Reset(body); err != nil {
			// The subscribers wait on; the next poll publishes again.
			t.hub.opts.Logger.Warn("storing a key's first body failed", "key", t.target.Key.String(), "err", err)
			return
		}
		t.state, t.snap = stateLive, nil
		t.fanout(t.snapshotLocked())
		t.closeReady()
		return
	}
	if t.flood(changes) {
		// More events than a client's queue or the history could take:
		// one snapshot instead, so that nobody is evicted for the
		// upstream's burst and every client can still resume.
		t.hub.opts.Logger.Debug("burst published as one snapshot", "key", t.target.Key.String(), "events", len(changes))
		changes = []Change{{Kind: KindSnapshot, Data: body}}
	}
	evs, err := t.store.Append(body, changes)
	t.snap = nil
	if err != nil {
		// Nothing was sent: the subscribers keep the previous state, and
		// the next change reaches them with the store's next ids.
		t.hub.opts.Logger.Warn("storing a key's changes failed", "key", t.target.Key.String(), "events", len(changes), "err", err)
		return
	}
	for _, e := range evs {
		t.hub.metrics.published[e.Kind].Inc()
		t.fanout(e)
		if e.Kind == KindSnapshot {
			// It holds the whole new body: clients that join now get it
			// too, instead of a second encoding of the same bytes.
			t.snap = e
		} else {
			t.snap = nil
		}
	}
}

// flood reports whether changes are more than a subscriber's queue holds, or
// more than the history keeps (by count or by bytes, roughly: the encoding
// adds a few bytes per line).
func (t *keyState) flood(changes []Change) bool {
	o := &t.hub.opts
	if len(changes) <= 1 {
		return false
	}
	if len(changes) > o.ClientBuffer || len(changes) > o.HistorySize {
		return true
	}
	if o.HistoryBytes <= 0 {
		return false
	}
	n := 0
	for _, c := range changes {
		n += len(c.Data)
	}
	return n > o.HistoryBytes
}

// fanout queues e for every subscriber, evicting those whose queue is full:
// a slow client must never hold up the others or grow memory.
func (t *keyState) fanout(e *Event) {
	for sub := range t.subs {
		if !sub.offer(e) {
			t.end(sub, reasonSlow)
		}
	}
}

// Unavailable implements Publisher.
func (t *keyState) Unavailable() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == statePending {
		t.state = stateWaiting
		t.closeReady()
	}
}

// Deny implements Publisher.
func (t *keyState) Deny(d Denial) {
	h := t.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	h.remove(t)
	t.state, t.denial = stateDenied, &d
	for sub := range t.subs {
		sub.denial = &d
		t.end(sub, reasonDenied)
	}
	t.closeReady()
}

// Subscribers implements Publisher.
func (t *keyState) Subscribers() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.subs)
}
