package stream

import "sync"

// maxSpare bounds the queue array a subscription keeps between events: the
// array a lagging client grew is dropped once it has caught up, so an idle
// subscription holds a few words, not ClientBuffer slots.
const maxSpare = 16

// Subscription is one client's place in a key: the events still to deliver
// (the backlog, then the bounded live queue) and a done channel the hub
// closes to end it. The HTTP answer is the caller's: the hub hands out
// encoded events and never sees a request or a response.
type Subscription struct {
	keyState *keyState
	ip       string
	backlog  []*Event // delivered first: resumed events or the snapshot
	mu       sync.Mutex
	queue    []*Event      // live events not yet taken; grows only while the client lags
	limit    int           // most events queued; more means the client is too slow
	wake     chan struct{} // holds a token while queue may be non-empty
	done     chan struct{}
	reason   string  // why done was closed; set before closing
	denial   *Denial // set before done is closed on a denial
	started  bool    // Start was called: counted as an open stream
	unplaced bool    // in its key's waiting set; guarded by the key's lock
}

func newSubscription(ks *keyState, buffer int) *Subscription {
	return &Subscription{keyState: ks, limit: buffer, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// offer queues e unless buffer events are already queued (the client is too
// slow); it is called with the key's lock held, never blocks, and shares
// e's bytes.
func (s *Subscription) offer(e *Event) bool {
	s.mu.Lock()
	if len(s.queue) >= s.limit {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // a token is already waiting
	}
	return true
}

// free is how many more events the queue takes now.
func (s *Subscription) free() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit - len(s.queue)
}

// Subscribe admits a client of t from the address clientIP, resuming after
// lastEventID as the client sent it (empty: none). A Last-Event-ID that is
// unknown, expired, malformed or from another process gets a fresh
// snapshot, never an error. The errors are the admission's: ErrClosed,
// ErrTooManyConnections, ErrTooManyPerIP, ErrTooManyKeys. The caller must
// Close the subscription.
func (h *Hub) Subscribe(t Target, lastEventID, clientIP string) (*Subscription, error) {
	if err := h.admit(clientIP); err != nil {
		h.metrics.reject(err)
		return nil, err
	}
	sub, err := h.subscribe(t, lastEventID)
	if err != nil {
		h.release(clientIP)
		h.metrics.reject(err)
		return nil, err
	}
	sub.ip = clientIP
	return sub, nil
}

// Ready is closed once the key's first poll has an outcome: a body, a
// failure that may pass, or a denial.
func (s *Subscription) Ready() <-chan struct{} { return s.keyState.ready }

// Done is closed when the hub ends the subscription: the client was too
// slow, the key was denied, or the hub closes.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Denial is the upstream's refusal that ended the subscription, or nil. It
// may be read only once Done is closed: the hub writes it before closing.
func (s *Subscription) Denial() *Denial {
	select {
	case <-s.done:
		return s.denial
	default:
		return nil
	}
}

// Start counts the subscription as an open stream and returns its backlog
// (a snapshot, or the events missed), which is delivered before the live
// events.
func (s *Subscription) Start() []*Event {
	if !s.started {
		s.started = true
		s.keyState.hub.metrics.connsActive.Inc()
		s.keyState.hub.metrics.connsTotal.Inc()
	}
	b := s.backlog
	s.backlog = nil
	return b
}

// Wake holds a token once live events were queued since the last Take; a
// Take after it may still find none (an earlier Take got them).
func (s *Subscription) Wake() <-chan struct{} { return s.wake }

// Take returns the live events queued since the last Take, in order, and
// makes spare (the slice an earlier Take returned, done with) the queue's
// array for reuse, so that delivery allocates nothing in the steady state.
// The events' wire bytes are shared with every other subscriber and the
// history: never modify them. Events taken no longer count against the
// client's buffer.
func (s *Subscription) Take(spare []*Event) []*Event {
	clear(spare) // the queue must not keep delivered events alive
	if cap(spare) > maxSpare {
		spare = nil
	}
	s.mu.Lock()
	evs := s.queue
	s.queue = spare[:0]
	s.mu.Unlock()
	return evs
}

// Delivered counts n events written to the client.
func (s *Subscription) Delivered(n int) { s.keyState.hub.metrics.delivered.Add(float64(n)) }

// Close leaves the key (the last one out starts its linger) and releases
// the client's place under the limits.
func (s *Subscription) Close() {
	h := s.keyState.hub
	if s.started {
		h.metrics.connsActive.Dec()
	}
	s.keyState.leave(s)
	h.release(s.ip)
}
