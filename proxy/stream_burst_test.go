package proxy_test

import (
	"fmt"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/internal/ssetest"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// One poll that yields more events than a client's queue holds becomes one
// snapshot: nobody is evicted for the upstream's burst, and everyone can
// resume afterwards, from before or after it.
func TestHubBurstBecomesSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, reg := newHub(t, src, stream.Options{ClientBuffer: 256})
		clients := []*clientT{}
		for range 3 {
			clients = append(clients, &clientT{c: open(h, k, "/n", "alice", "")})
		}
		r := src.next(t)
		r.pub.Publish([]byte(`[]`), nil)
		for _, c := range clients {
			c.first = c.c.Expect(t, "snapshot", `[]`).ID
		}

		const n = 10_000
		changes := make([]stream.Change, n)
		for i := range changes {
			changes[i] = stream.Change{Kind: stream.KindCreated, Data: fmt.Appendf(nil, `{"id":%d}`, i)}
		}
		body := []byte(`["the whole new list"]`)
		r.pub.Publish(body, changes)
		var burst string
		for _, c := range clients {
			burst = c.c.Expect(t, "snapshot", string(body)).ID
		}
		synctest.Wait()
		if got := promtest.Value(t, reg, "ssegate_clients_evicted_total", "reason", "slow"); got != 0 {
			t.Errorf("evicted{slow} = %v after a burst, want 0", got)
		}
		if got := promtest.Value(t, reg, "ssegate_events_published_total", "event", "created"); got != 0 {
			t.Errorf("published{created} = %v, want the burst as one snapshot", got)
		}

		// Resume from before the burst: the burst's snapshot, exactly once.
		for _, c := range clients {
			c.c.Close()
		}
		before := open(h, k, "/n", "alice", clients[0].first)
		if ev := before.Expect(t, "snapshot", string(body)); ev.ID != burst {
			t.Errorf("resumed snapshot has id %q, want the burst's %q", ev.ID, burst)
		}
		after := open(h, k, "/n", "alice", burst)
		r.pub.Publish([]byte(`[1]`), []stream.Change{{Kind: stream.KindCreated, Data: []byte(`1`)}})
		before.Expect(t, "created", "1")
		after.Expect(t, "created", "1") // and nothing before it
		before.Close()
		after.Close()
	})
}

type clientT struct {
	c     *ssetest.Client
	first string
}

// A denial racing a subscriber that was admitted on a live key: the hub
// writes the denial while the request goroutine has already started the
// stream. Under -race this failed when the request read it unguarded.
func TestHubDenyWhileStreaming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		a.Expect(t, "snapshot", "0")
		b := open(h, k, "/n", "alice", "")
		time.Sleep(time.Millisecond) // b is admitted and blocked writing its snapshot; no happens-before edge with the test, unlike synctest.Wait
		r.pub.Deny(stream.Denial{Status: 403})
		b.Expect(t, "snapshot", "0")
		if _, err := b.Events.Next(); err != io.EOF {
			t.Errorf("got %v after a denial, want the stream to end", err)
		}
		a.Close()
		b.Close()
	})
}

// MaxDuration ends a stream cleanly within ±10% of it; the client resumes
// where it was, with nothing missed.
func TestHubMaxDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{}, proxy.StreamOptions{MaxDuration: 100 * time.Second, Heartbeat: time.Hour})
		start := time.Now()
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		snap := a.Expect(t, "snapshot", "0")
		if _, err := a.Events.Next(); err != io.EOF {
			t.Fatalf("got %v, want the stream to end", err)
		}
		if d := time.Since(start); d < 90*time.Second || d > 110*time.Second {
			t.Errorf("stream ended after %v, want 90s to 110s", d)
		}
		r.pub.Publish([]byte(`1`), []stream.Change{{Kind: stream.KindUpdated, Data: []byte("1")}})
		b := open(h, k, "/n", "alice", snap.ID)
		b.Expect(t, "updated", "1")
		b.Close()
	})
}
