package poller

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Priority orders polls that are due at the same time.
type Priority uint8

// Priorities, most urgent first.
const (
	// PriorityAdmission is a key's first poll: a client waits for it.
	PriorityAdmission Priority = iota
	// PriorityNudge is a poll the upstream asked for: it knows of a change.
	PriorityNudge
	// PriorityRegular is the interval's poll.
	PriorityRegular
)

// Scheduler decides when each key may poll, across all keys: never before
// the key is due, at most MaxRPS poll starts per second spaced evenly (so
// there is no burst after a restart or at a tick), at most Concurrency polls
// in flight, and most urgent first, then longest waiting. When demand
// exceeds the budget every key waits its turn, so every key's interval
// stretches by the same amount instead of some keys starving.
type Scheduler struct {
	spacing     time.Duration // least time between two starts; 0: unlimited
	maxInflight int           // 0: unlimited
	lag         prometheus.Observer

	mu        sync.Mutex
	queue     ticketHeap
	seq       uint64
	inflight  int
	lastStart time.Time

	kick chan struct{} // wakes the dispatcher: queue or inflight changed
	done chan struct{}
	wg   sync.WaitGroup
}

// NewScheduler starts a scheduler. maxRPS 0 means no rate limit;
// concurrency 0 means no limit on polls in flight. Close stops it.
func NewScheduler(maxRPS float64, concurrency int, lag prometheus.Observer) *Scheduler {
	s := &Scheduler{maxInflight: concurrency, lag: lag, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if maxRPS > 0 {
		s.spacing = time.Duration(float64(time.Second) / maxRPS)
	}
	if s.lag == nil {
		s.lag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "unused"})
	}
	s.wg.Add(1)
	go s.dispatch()
	return s
}

// Close stops the dispatcher. Waiting callers get their context's error
// only when it ends, so close the keys' contexts first.
func (s *Scheduler) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.wg.Wait()
}

type ticket struct {
	due   time.Time
	prio  Priority
	seq   uint64 // FIFO among equals
	index int    // in the heap; -1 once dispatched or withdrawn
	ready chan struct{}
}

// Wait blocks until the caller may poll, then returns a release func to call
// when the poll is over. It returns early with woken true and no slot when
// wake fires (the caller re-plans and waits again), or with ctx's error.
func (s *Scheduler) Wait(ctx context.Context, due time.Time, prio Priority, wake <-chan struct{}) (release func(), woken bool, err error) {
	t := &ticket{due: due, prio: prio, ready: make(chan struct{})}
	s.mu.Lock()
	s.seq++
	t.seq = s.seq
	heap.Push(&s.queue, t)
	s.mu.Unlock()
	s.poke()

	select {
	case <-t.ready:
		return s.releaser(), false, nil
	case <-wake:
		woken = true
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	if t.index >= 0 {
		heap.Remove(&s.queue, t.index)
		s.mu.Unlock()
		s.poke()
		return nil, woken, err
	}
	s.mu.Unlock()
	// Dispatched meanwhile: the slot is ours, so give it back.
	s.releaser()()
	return nil, woken, err
}

func (s *Scheduler) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
			s.poke()
		})
	}
}

func (s *Scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// dispatch hands out slots, one at a time, in queue order.
func (s *Scheduler) dispatch() {
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
func (s *Scheduler) next() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) > 0 {
		if s.maxInflight > 0 && s.inflight >= s.maxInflight {
			return 0 // a release will poke
		}
		t := s.queue[0]
		now := time.Now()
		start := t.due
		if s.spacing > 0 && !s.lastStart.IsZero() {
			if slot := s.lastStart.Add(s.spacing); slot.After(start) {
				start = slot
			}
		}
		if start.After(now) {
			return start.Sub(now)
		}
		heap.Pop(&s.queue)
		s.inflight++
		s.lastStart = now
		if lag := now.Sub(t.due); lag > 0 {
			s.lag.Observe(lag.Seconds())
		} else {
			s.lag.Observe(0)
		}
		close(t.ready)
	}
	return 0
}

// ticketHeap orders tickets by priority, then due time, then arrival: an
// overdue regular poll keeps its place ahead of later ones.
type ticketHeap []*ticket

func (h ticketHeap) Len() int { return len(h) }
func (h ticketHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return a.seq < b.seq
}
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
