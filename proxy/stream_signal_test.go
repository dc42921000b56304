package proxy_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/stream"
)

// TestHubSignalsEverySubscriberChange: the source hears of every change in
// its key's subscribers (it weighs its upstream load by them), the first
// client excepted (the admission poll is for it), and a client back
// during the linger time counts as a new one.
func TestHubSignalsEverySubscriberChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{Linger: 30 * time.Second})
		var r *run
		take := func() stream.Signal {
			synctest.Wait()
			select {
			case <-r.pub.Signals():
				return r.pub.TakeSignals()
			default:
				return 0
			}
		}
		a := open(h, k, "/n", "alice", "")
		r = src.next(t)
		if s := take(); s != 0 {
			t.Errorf("first client raised %b, want nothing", s)
		}
		r.pub.Publish([]byte(`0`), nil)
		b := open(h, k, "/n", "alice", "")
		if s := take(); s != stream.SignalSubscriber || r.pub.Subscribers() != 2 {
			t.Errorf("second client raised %b with %d subscribers, want SignalSubscriber with 2", s, r.pub.Subscribers())
		}
		b.Close()
		if s := take(); s != stream.SignalSubscriberLeft || r.pub.Subscribers() != 1 {
			t.Errorf("a client leaving raised %b with %d subscribers, want SignalSubscriberLeft with 1", s, r.pub.Subscribers())
		}
		a.Close()
		if s := take(); s != stream.SignalSubscriberLeft {
			t.Errorf("the last client leaving raised %b, want SignalSubscriberLeft", s)
		}
		time.Sleep(10 * time.Second)
		c := open(h, k, "/n", "alice", "")
		defer c.Close()
		if s := take(); s != stream.SignalSubscriber {
			t.Errorf("a client back while the key lingers raised %b, want SignalSubscriber", s)
		}
	})
}
