package proxy

import (
	"sync"
	"time"
)

// wheelSlots is how many turns of the heartbeat wheel one interval holds:
// streams opened within an interval/wheelSlots of each other beat together.
const wheelSlots = 64

// wheel is the heartbeat clock of every stream of a streamer: one ticker
// and one goroutine, running only while streams are open, instead of a
// timer each. A stream joins the slot that fired last, so it first beats
// one interval after it joined (give or take a slot), and then every
// interval; all streams of a slot wake on one closed channel.
type wheel struct {
	period time.Duration // between two slots

	mu    sync.Mutex
	slots []chan struct{} // closed when the slot fires, then replaced
	fired int             // turns since start
	users int
	stop  chan struct{} // closed to end the running goroutine; nil: none runs
}

func newWheel(interval time.Duration) *wheel {
	n := wheelSlots
	if interval < wheelSlots*time.Millisecond {
		n = 1
	}
	return &wheel{period: interval / time.Duration(n), slots: make([]chan struct{}, n)}
}

// join returns the slot of a new stream, starting the clock for the first.
func (w *wheel) join() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.users++; w.stop == nil {
		for i := range w.slots {
			w.slots[i] = make(chan struct{})
		}
		w.fired = 0
		w.stop = make(chan struct{})
		go w.run(w.stop, time.Now())
	}
	return w.fired % len(w.slots)
}

// leave ends a stream's use of the wheel; the last one out stops the clock.
func (w *wheel) leave() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.users--; w.users == 0 {
		close(w.stop)
		w.stop = nil
	}
}

// beat is closed at slot's next turn.
func (w *wheel) beat(slot int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.slots[slot]
}

func (w *wheel) run(stop chan struct{}, start time.Time) {
	t := time.NewTicker(w.period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			w.turn(stop, int(now.Sub(start)/w.period))
		}
	}
}

// turn fires the slots due by turn due, those of ticks a busy machine
// dropped included.
func (w *wheel) turn(stop chan struct{}, due int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != stop {
		return // stopped meanwhile; a new clock may run
	}
	for ; w.fired < due; w.fired++ {
		i := (w.fired + 1) % len(w.slots)
		close(w.slots[i])
		w.slots[i] = make(chan struct{})
	}
}
