package proxy

import (
	"sync"
	"time"
)

// wheelSlots is how many turns of the heartbeat wheel one interval holds:
// streams opened within an interval/wheelSlots of each other beat together.
const wheelSlots = 64

// maxWheelSlots bounds the slots of a long interval (a channel each).
const maxWheelSlots = 4096

// wheel is the clock of every stream of a streamer: one ticker and one
// goroutine, running only while streams are open, instead of timers for
// each stream.
//
// Heartbeats: a stream joins the slot that fired last, so it first beats
// one interval after it joined (give or take a slot), and then every
// interval; all streams of a slot wake on one closed channel.
//
// Stuck writes: every turn that a quarter of stuck has passed, the wheel
// looks at each stream's write in progress and cuts those that began more
// than stuck ago (a client that stopped reading: its window is full). An
// idle stream so holds no deadline timer of its own, and no write sends
// net/http's connection goroutine a deadline to arm. Pass-through responses
// join too, for as long as they are written, with a longer bound of their
// own (sink.stuck), and never ask for a beat.
//
// A slot's channel is made when a stream first asks for it, not when the
// clock starts: with no stream open, each pass-through request starts and
// stops the clock, which then costs a goroutine and a ticker, not a
// channel per slot.
type wheel struct {
	period time.Duration // between two slots
	stuck  time.Duration // a write in progress this long is cut
	every  int           // turns between two looks at the writes

	mu    sync.Mutex
	slots []chan struct{} // closed when the slot fires; nil: nobody waits on it
	fired int             // turns since start
	sinks *sink           // every joined stream's, linked through sink.next
	stop  chan struct{}   // closed to end the running goroutine; nil: none runs
}

func newWheel(interval, stuck time.Duration) *wheel {
	n := wheelSlots
	if interval < wheelSlots*time.Millisecond {
		n = 1
	}
	// The writes are looked at on a turn, so a turn comes at least every
	// stuck/4, however long the interval: a stuck write is cut by 1.25 ×
	// stuck (with a 5 min interval, 64 slots would be 4.7 s apart). Up to
	// maxWheelSlots (a 2.8 h interval at the default 10 s).
	if q := stuck / 4; q > 0 && interval/time.Duration(n) > q {
		n = int(min((interval+q-1)/q, maxWheelSlots))
	}
	w := &wheel{period: interval / time.Duration(n), stuck: stuck, slots: make([]chan struct{}, n)}
	w.every = max(1, int(stuck/4/w.period))
	return w
}

// join adds a new stream's sink and returns its slot, starting the clock
// for the first.
func (w *wheel) join(o *sink) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	o.prev, o.next = nil, w.sinks
	if w.sinks != nil {
		w.sinks.prev = o
	}
	w.sinks = o
	if w.stop == nil {
		clear(w.slots)
		w.fired = 0
		w.stop = make(chan struct{})
		go w.run(w.stop, time.Now())
	}
	return w.fired % len(w.slots)
}

// leave removes a stream's sink, which is never cut after it returns; the
// last one out stops the clock. The stream's handler calls it before it
// returns.
func (w *wheel) leave(o *sink) {
	o.mu.Lock()
	o.left = true // o.rc is not used after its handler returned
	o.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if o.prev != nil {
		o.prev.next = o.next
	} else {
		w.sinks = o.next
	}
	if o.next != nil {
		o.next.prev = o.prev
	}
	o.prev, o.next = nil, nil
	if w.sinks == nil {
		close(w.stop)
		w.stop = nil
	}
}

// beat is closed at slot's next turn.
func (w *wheel) beat(slot int) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.slots[slot] == nil {
		w.slots[slot] = make(chan struct{})
	}
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
			for _, c := range w.turn(stop, int(now.Sub(start)/w.period), now) {
				c.o.cut(c.since)
			}
		}
	}
}

// stuckWrite is a write found in progress for longer than stuck.
type stuckWrite struct {
	o     *sink
	since int64
}

// turn fires the slots due by turn due, those of ticks a busy machine
// dropped included, and returns the writes to cut when a look at them is
// due. They are cut after w.mu is released: a cut waits for the sink's
// lock, which its handler holds while it leaves, and leaving takes w.mu.
func (w *wheel) turn(stop chan struct{}, due int, now time.Time) []stuckWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stop != stop {
		return nil // stopped meanwhile; a new clock may run
	}
	look := false
	for ; w.fired < due; w.fired++ {
		i := (w.fired + 1) % len(w.slots)
		if w.slots[i] != nil {
			close(w.slots[i])
			w.slots[i] = nil
		}
		look = look || (w.fired+1)%w.every == 0
	}
	if !look {
		return nil
	}
	var cut []stuckWrite
	before := now.Add(-w.stuck).UnixNano()
	for o := w.sinks; o != nil; o = o.next {
		b := before
		if o.stuck > 0 {
			b = now.Add(-o.stuck).UnixNano()
		}
		if since := o.since.Load(); since != 0 && since < b {
			cut = append(cut, stuckWrite{o, since})
		}
	}
	return cut
}

// cut ends o's write in progress if it is still the one that began at
// since. A write deadline in the past fails it at once: on HTTP/1 the
// connection's, on HTTP/2 the stream is reset (RST_STREAM); either way the
// handler's Write or Flush returns an error and the stream ends.
func (o *sink) cut(since int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.left || o.since.Load() != since {
		return
	}
	// A writer without deadlines (http.ErrNotSupported) cannot be cut: its
	// stream ends when the connection does. Both net/http writers support it.
	_ = o.rc.SetWriteDeadline(time.Unix(0, 1))
}
