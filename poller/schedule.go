package poller

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// priority is the kind of a poll, which decides its turn (see scheduler).
type priority uint8

// Kinds of poll, most urgent first.
const (
	// priorityAdmission is a key's first poll: a client waits for it.
	priorityAdmission priority = iota
	// priorityNudge is a poll the upstream asked for: it knows of a change.
	priorityNudge
	// priorityRegular is the interval's poll.
	priorityRegular
	kinds = iota
)

// scheduler decides when each key may poll, across all keys: never before
// the key is due, at most MaxRPS poll starts per second spaced evenly (so
// there is no burst after a restart or at a tick), and at most Concurrency
// polls in flight. Each start goes to a due poll, chosen in three steps:
//
//  1. identity, under a Concurrency cap: the identity (stream.Key.Identity)
//     with the fewest polls in flight, so one identity's slow polls cannot
//     hold more than its share of the slots while another identity waits;
//  2. kind: first polls and established polls take turns while both are
//     due, so new keys, however fast they come, get at most (and at least)
//     every other start. Among established polls nudges go first, but a
//     regular poll due for longer than a round (keys waiting × 1/MaxRPS:
//     the time the budget needs to start each once) takes turns with them;
//  3. time: the earliest due, then the longest waiting.
//
// So, counted in starts (one per 1/MaxRPS under a budget), a due poll whose
// identity has nothing else in flight, with n polls of its kind ahead,
// starts within: 2(n+1) for a first poll; 2(n+1) for a nudge, 4(n+1) while
// regular polls are a round late; 2(n+1) for a regular poll while no nudge
// waits, a round plus 4(n+1) however many come. First polls at most double
// anyone's wait. When demand exceeds the budget the polls of a kind queue
// by due time, so every key's interval stretches alike and none starves.
type scheduler struct {
	maxInflight int // 0: unlimited
	lag         prometheus.Observer

	mu         sync.Mutex
	spacing    time.Duration // least time between two starts; 0: unlimited
	pending    ticketHeap    // not yet due, by due time
	due        int           // tickets due, in byKind
	byKind     [kinds]identityHeap
	identities map[[32]byte]*identity // those with a ticket or a poll in flight
	seq        uint64
	inflight   int
	lastStart  time.Time
	last       priority // the kind of the last start
	lastEstab  priority // the kind of the last nudged or regular start

	kick chan struct{} // wakes the dispatcher: queue or inflight changed
	done chan struct{}
	wg   sync.WaitGroup
}

// newScheduler starts a scheduler. maxRPS 0 means no rate limit;
// concurrency 0 means no limit on polls in flight. Close stops it.
func newScheduler(maxRPS float64, concurrency int, lag prometheus.Observer) *scheduler {
	s := &scheduler{
		maxInflight: concurrency, lag: lag, identities: map[[32]byte]*identity{},
		last: priorityRegular, lastEstab: priorityRegular,
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	for k := range s.byKind {
		// Without a cap on slots there is nothing to share by identity.
		s.byKind[k] = identityHeap{kind: priority(k), byInflight: concurrency > 0}
	}
	s.spacing = spacing(maxRPS)
	if s.lag == nil {
		s.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unused"})
	}
	s.wg.Add(1)
	go s.dispatch()
	return s
}

func spacing(maxRPS float64) time.Duration {
	if maxRPS <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / maxRPS)
}

// setRate changes the cap on poll starts per second (0: none): a replica's
// share of the fleet's budget changes as replicas come and go.
func (s *scheduler) setRate(maxRPS float64) {
	s.mu.Lock()
	s.spacing = spacing(maxRPS)
	s.mu.Unlock()
	s.poke()
}

// Close stops the dispatcher. Waiting callers get their context's error
// only when it ends, so close the keys' contexts first.
func (s *scheduler) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.wg.Wait()
}

type ticket struct {
	due   time.Time
	prio  priority
	id    *identity
	seq   uint64 // FIFO among equals
	isDue bool   // in id.due[prio] rather than in pending
	index int    // in its heap; -1 once dispatched or withdrawn
	ready chan struct{}
}

// identity is one identity's share of the scheduler.
type identity struct {
	hash     [32]byte
	inflight int
	tickets  int               // waiting, due or not
	due      [kinds]ticketHeap // due tickets by kind
	index    [kinds]int        // in scheduler.byKind; -1 without due tickets of the kind
}

// Wait blocks until the caller may poll, then returns a release func to call
// when the poll is over. id is the key's identity (stream.Key.Identity). It
// returns early with woken true and no slot when wake fires (the caller
// re-plans and waits again), or with ctx's error.
func (s *scheduler) Wait(ctx context.Context, id [32]byte, due time.Time, prio priority, wake <-chan struct{}) (release func(), woken bool, err error) {
	t := &ticket{due: due, prio: prio, ready: make(chan struct{})}
	s.mu.Lock()
	s.seq++
	t.seq = s.seq
	t.id = s.identities[id]
	if t.id == nil {
		t.id = &identity{hash: id, index: [kinds]int{-1, -1, -1}}
		s.identities[id] = t.id
	}
	t.id.tickets++
	heap.Push(&s.pending, t)
	s.mu.Unlock()
	s.poke()

	select {
	case <-t.ready:
		return s.releaser(t.id), false, nil
	case <-wake:
		woken = true
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	if t.index >= 0 {
		s.withdraw(t)
		s.mu.Unlock()
		s.poke()
		return nil, woken, err
	}
	s.mu.Unlock()
	// Dispatched meanwhile: the slot is ours, so give it back.
	s.releaser(t.id)()
	return nil, woken, err
}

// withdraw takes t out of the queue, with s.mu held.
func (s *scheduler) withdraw(t *ticket) {
	id := t.id
	if !t.isDue {
		heap.Remove(&s.pending, t.index)
	} else {
		heap.Remove(&id.due[t.prio], t.index)
		s.fixKind(id, t.prio)
		s.due--
	}
	id.tickets--
	s.forget(id)
}

func (s *scheduler) releaser(id *identity) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.inflight--
			s.setInflight(id, -1)
			s.mu.Unlock()
			s.poke()
		})
	}
}

func (s *scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// dispatch hands out slots, one at a time.
func (s *scheduler) dispatch() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		wait := s.next()
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-s.kick:
		case <-timer.C:
		case <-s.done:
			return
		}
		timer.Stop()
	}
}

// next dispatches every ticket it can now and returns how long to wait for
// the next one (0: until poked).
func (s *scheduler) next() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.maxInflight > 0 && s.inflight >= s.maxInflight {
			return 0 // a release will poke
		}
		now := time.Now()
		for len(s.pending) > 0 && !s.pending[0].due.After(now) {
			t := heap.Pop(&s.pending).(*ticket)
			t.isDue = true
			s.due++
			heap.Push(&t.id.due[t.prio], t)
			s.fixKind(t.id, t.prio)
		}
		kind, ok := s.pick(now)
		if !ok {
			if len(s.pending) > 0 {
				return s.pending[0].due.Sub(now)
			}
			return 0
		}
		if s.spacing > 0 && !s.lastStart.IsZero() {
			if slot := s.lastStart.Add(s.spacing); slot.After(now) {
				return slot.Sub(now)
			}
		}
		id := s.byKind[kind].ids[0]
		t := heap.Pop(&id.due[kind]).(*ticket)
		id.tickets--
		s.due--
		s.last = kind
		if kind != priorityAdmission {
			s.lastEstab = kind
		}
		s.inflight++
		s.setInflight(id, +1) // fixes id's place in byKind[kind] too
		s.lastStart = now
		s.lag.Observe(max(now.Sub(t.due), 0).Seconds())
		close(t.ready)
	}
}

// pick chooses the kind of the next start (see scheduler), among the
// due tickets of the identities with the fewest polls in flight.
func (s *scheduler) pick(now time.Time) (priority, bool) {
	fewest := -1
	for k := range s.byKind {
		if ids := s.byKind[k].ids; len(ids) > 0 && (fewest < 0 || ids[0].inflight < fewest) {
			fewest = ids[0].inflight
		}
	}
	var has [kinds]bool
	for k := range s.byKind {
		ids := s.byKind[k].ids
		has[k] = len(ids) > 0 && (ids[0].inflight == fewest || s.maxInflight == 0)
	}
	estab := priorityRegular
	if has[priorityNudge] {
		estab = priorityNudge
		if has[priorityRegular] && s.lastEstab == priorityNudge {
			round := time.Duration(len(s.pending)+s.due) * s.spacing
			if first := s.byKind[priorityRegular].ids[0].due[priorityRegular][0]; now.Sub(first.due) > round {
				estab = priorityRegular
			}
		}
	}
	switch {
	case has[priorityAdmission] && (s.last != priorityAdmission || !has[estab]):
		return priorityAdmission, true
	case has[estab]:
		return estab, true
	}
	return 0, false
}

// setInflight changes id's polls in flight, which orders it among
// identities in every kind.
func (s *scheduler) setInflight(id *identity, delta int) {
	id.inflight += delta
	for k := range id.due {
		s.fixKind(id, priority(k))
	}
	s.forget(id)
}

// fixKind puts id where it belongs in byKind[k] after its due tickets of
// kind k or its polls in flight changed.
func (s *scheduler) fixKind(id *identity, k priority) {
	h := &s.byKind[k]
	switch {
	case len(id.due[k]) == 0 && id.index[k] >= 0:
		heap.Remove(h, id.index[k])
	case len(id.due[k]) > 0 && id.index[k] < 0:
		heap.Push(h, id)
	case id.index[k] >= 0:
		heap.Fix(h, id.index[k])
	}
}

// forget drops id once it has nothing waiting or in flight.
func (s *scheduler) forget(id *identity) {
	if id.tickets == 0 && id.inflight == 0 {
		delete(s.identities, id.hash)
	}
}

// ticketHeap orders tickets by due time, then arrival: an overdue poll
// keeps its place ahead of later ones.
type ticketHeap []*ticket

func (h ticketHeap) Len() int           { return len(h) }
func (h ticketHeap) Less(i, j int) bool { return h[i].before(h[j]) }
func (h ticketHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *ticketHeap) Push(x any) {
	t := x.(*ticket)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *ticketHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

func (a *ticket) before(b *ticket) bool {
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return a.seq < b.seq
}

// identityHeap orders the identities with due tickets of one kind by polls
// in flight, then by their first due ticket of the kind.
type identityHeap struct {
	kind       priority
	byInflight bool
	ids        []*identity
}

func (h *identityHeap) Len() int { return len(h.ids) }
func (h *identityHeap) Less(i, j int) bool {
	a, b := h.ids[i], h.ids[j]
	if h.byInflight && a.inflight != b.inflight {
		return a.inflight < b.inflight
	}
	return a.due[h.kind][0].before(b.due[h.kind][0])
}
func (h *identityHeap) Swap(i, j int) {
	h.ids[i], h.ids[j] = h.ids[j], h.ids[i]
	h.ids[i].index[h.kind], h.ids[j].index[h.kind] = i, j
}
func (h *identityHeap) Push(x any) {
	id := x.(*identity)
	id.index[h.kind] = len(h.ids)
	h.ids = append(h.ids, id)
}
func (h *identityHeap) Pop() any {
	id := h.ids[len(h.ids)-1]
	h.ids[len(h.ids)-1] = nil
	h.ids = h.ids[:len(h.ids)-1]
	id.index[h.kind] = -1
	return id
}
