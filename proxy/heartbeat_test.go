package proxy

import (
	"testing"
	"testing/synctest"
	"time"
)

// A stream beats one interval after it joined, give or take a slot, and
// then every interval; the clock stops with the last stream (synctest
// fails on a goroutine left running).
func TestWheel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = 16 * time.Second
		w := newWheel(interval, 10*time.Second)
		sa, sb, sc := &sink{}, &sink{}, &sink{}
		beats := func(slot int, from time.Time, n int) {
			t.Helper()
			for i := range n {
				<-w.beat(slot)
				if got, want := time.Since(from), time.Duration(i+1)*interval; got > want || got <= want-w.period {
					t.Errorf("beat %d after %v, want within a slot before %v", i+1, got, want)
				}
			}
		}
		start := time.Now()
		a := w.join(sa)
		time.Sleep(5*time.Second + time.Millisecond)
		bStart := time.Now()
		b := w.join(sb)
		done := make(chan struct{})
		go func() { beats(b, bStart, 3); close(done) }()
		beats(a, start, 3)
		<-done
		w.leave(sa)
		w.leave(sb)

		// A new stream after the clock stopped starts it afresh.
		time.Sleep(time.Hour)
		start = time.Now()
		c := w.join(sc)
		beats(c, start, 1)
		w.leave(sc)
	})
}
