package stream

import (
	"context"
	"sync"
	"time"
)

// keyPhase is where a key is in its life.
type keyPhase uint8

const (
	statePending keyPhase = iota // first poll not answered yet
	stateWaiting                 // first poll failed; clients wait for a body
	stateLive                    // a body is known
	stateDenied                  // upstream refused; the key is gone
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

	mu    sync.Mutex
	state keyPhase
	ready chan struct{} // closed once the first poll's outcome is known
	store *store        // body, ids and history
	snap  *Event        // snapshot of the store's current state; nil when stale
	subs  map[*Subscription]struct{}
	// waiting holds the subscribers not yet placed in the history, by the
	// Last-Event-ID they resume after: they joined before the first body,
	// with an id another replica issued and this one has not reached yet,
	// or while a replicated body was not at hand for their snapshot. They
	// get nothing from fanout until placeLocked puts them in.
	waiting map[*Subscription]string
	denial  *Denial
	linger  *time.Timer
	removed bool
	signals Signal
	sigCh   chan struct{} // holds one token while signals is not empty
}

var _ Publisher = (*keyState)(nil)

func newKeyState(h *Hub, t Target, cancel context.CancelFunc) *keyState {
	return &keyState{
		hub:     h,
		target:  t,
		cancel:  cancel,
		ready:   make(chan struct{}),
		store:   newStore(h.opts.HistorySize, h.opts.HistoryBytes),
		subs:    make(map[*Subscription]struct{}),
		waiting: make(map[*Subscription]string),
		sigCh:   make(chan struct{}, 1),
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
	if t.state != stateLive || !t.backlogLocked(sub, lastEventID) {
		t.waiting[sub] = lastEventID
		sub.unplaced = true
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
		delete(t.waiting, sub)
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
	delete(t.waiting, sub)
	t.raiseLocked(SignalSubscriberLeft)
	sub.reason = reason
	close(sub.done)
	t.hub.metrics.evicted(reason)
}

// snapshotLocked returns the snapshot event for the current state, encoding
// it once per state however many clients join.
func (t *keyState) snapshotLocked() *Event {
	if t.snap == nil {
		t.snap = NewEvent(t.store.epoch, t.store.last, KindSnapshot, t.store.body)
	}
	return t.snap
}

// backlogLocked gives a joining sub what it needs before the live events:
// the events after lastEventID, or a snapshot. It returns false, giving
// nothing, when the sub must wait (see waiting).
func (t *keyState) backlogLocked(sub *Subscription, lastEventID string) bool {
	evs, ok, ahead := t.store.since(lastEventID)
	switch {
	case ok:
		sub.backlog = evs
	case ahead || !t.store.fresh:
		return false
	default:
		sub.backlog = []*Event{t.snapshotLocked()}
	}
	return true
}

// placeLocked puts the waiting subscribers in the history now that it
// moved: each gets, on its queue, the events after its Last-Event-ID, or a
// snapshot when those are unknown or more than the queue holds.
func (t *keyState) placeLocked() {
	if t.state != stateLive {
		return
	}
	for sub, after := range t.waiting {
		evs, ok, ahead := t.store.since(after)
		if ahead || (!ok || len(evs) > sub.free()) && !t.store.fresh {
			continue
		}
		if !ok || len(evs) > sub.free() {
			evs = []*Event{t.snapshotLocked()}
		}
		delete(t.waiting, sub)
		sub.unplaced = false
		for _, e := range evs {
			if !sub.offer(e) {
				t.end(sub, reasonSlow)
				break
			}
		}
	}
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
		t.store.reset(body)
		t.state, t.snap = stateLive, nil
		t.placeLocked()
		t.closeReady()
		return
	}
	if t.flood(len(changes), changes) {
		// More events than a client's queue or the history could take:
		// one snapshot instead, so that nobody is evicted for the
		// upstream's burst and every client can still resume.
		t.hub.opts.Logger.Debug("burst published as one snapshot", "key", t.target.Key.String(), "events", len(changes))
		changes = []Change{{Kind: KindSnapshot, Data: body}}
	}
	t.fanoutLocked(t.store.append(body, changes))
}

// fanoutLocked sends newly stored events to every placed subscriber, then
// places the waiting ones.
func (t *keyState) fanoutLocked(evs []*Event) {
	t.snap = nil
	for _, e := range evs {
		t.hub.metrics.published[e.Kind].Inc()
		t.fanout(e)
		if e.Kind == KindSnapshot && e.ID == t.store.last && t.store.fresh {
			// It holds the whole new body: clients that join now get it
			// too, instead of a second encoding of the same bytes.
			t.snap = e
		} else {
			t.snap = nil
		}
	}
	t.placeLocked()
}

// Replicate implements Publisher.
func (t *keyState) Replicate(u Replicated) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return nil
	}
	s := t.store
	live := t.state == stateLive && !u.Reset && u.Epoch == s.epoch
	switch {
	case live && len(u.Events) == 0 && u.Last == s.last:
		// The body of a state this replica has the events of.
		if u.Body != nil && !s.fresh {
			s.body, s.fresh, t.snap = u.Body, true, nil
			t.placeLocked()
		}
		return nil
	case live && len(u.Events) > 0 && u.Events[0].ID == s.last+1 && u.Events[len(u.Events)-1].ID == u.Last &&
		!(u.Body != nil && t.flood(len(u.Events), nil)):
		s.extend(u.Events, u.Body)
		t.fanoutLocked(u.Events)
		return nil
	case u.Body == nil:
		return ErrNeedBody
	}
	// A new life of the key, a gap, or a burst: start over from the body.
	// Subscribers placed in the old history get a snapshot; waiting ones
	// may resume in the new one.
	wasLive := t.state == stateLive
	if t.flood(len(u.Events), nil) {
		u.Events = nil
	}
	s.adopt(u.Epoch, u.Last, u.Body, u.Events)
	t.state, t.snap = stateLive, nil
	if wasLive {
		snap := t.snapshotLocked()
		t.hub.metrics.published[KindSnapshot].Inc()
		for sub := range t.subs {
			if !sub.unplaced {
				if !sub.offer(snap) {
					t.end(sub, reasonSlow)
				}
			}
		}
	}
	t.placeLocked()
	t.closeReady()
	return nil
}

// flood reports whether n events (changes, when given, for their size) are
// more than a subscriber's queue holds, or more than the history keeps (by
// count or by bytes, roughly: the encoding adds a few bytes per line).
func (t *keyState) flood(n int, changes []Change) bool {
	o := &t.hub.opts
	if n <= 1 {
		return false
	}
	if n > o.ClientBuffer || n > o.HistorySize {
		return true
	}
	if o.HistoryBytes <= 0 {
		return false
	}
	size := 0
	for _, c := range changes {
		size += len(c.Data)
	}
	return size > o.HistoryBytes
}

// fanout queues e for every subscriber, evicting those whose queue is full:
// a slow client must never hold up the others or grow memory.
func (t *keyState) fanout(e *Event) {
	for sub := range t.subs {
		if sub.unplaced { // a field, not a map lookup: this runs per subscriber per event
			continue
		}
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
