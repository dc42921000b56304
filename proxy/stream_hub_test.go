package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/internal/ssetest"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// source is a stream.Source driven by the test: each Run hands its
// Publisher to the test and waits for its context.
type source struct {
	runs chan *run
}

type run struct {
	target stream.Target
	pub    stream.Publisher
	ctx    context.Context
	done   chan struct{}
}

func newSource() *source { return &source{runs: make(chan *run, 16)} }

func (s *source) Run(ctx context.Context, t stream.Target, p stream.Publisher) {
	r := &run{target: t, pub: p, ctx: ctx, done: make(chan struct{})}
	s.runs <- r
	<-ctx.Done()
	close(r.done)
}

func (s *source) next(t *testing.T) *run {
	t.Helper()
	synctest.Wait()
	select {
	case r := <-s.runs:
		return r
	default:
		t.Fatal("no source run started, want one")
		return nil
	}
}

func (s *source) none(t *testing.T) {
	t.Helper()
	synctest.Wait()
	select {
	case r := <-s.runs:
		t.Fatalf("a source run started for %s, want none", r.target.URL)
	default:
	}
}

// open starts a stream request for path as identity, resuming after lastID
// when it is not empty.
func open(h *gateway, k *stream.Keyer, path, identity, lastID string) *ssetest.Client {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Authorization", identity)
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	return serve(h, k, r)
}

// openFrom is open from the client address remote.
func openFrom(h *gateway, k *stream.Keyer, identity, remote string) *ssetest.Client {
	r := httptest.NewRequest(http.MethodGet, "/n", nil)
	r.RemoteAddr = remote
	r.Header.Set("Authorization", identity)
	return serve(h, k, r)
}

// serve runs r through the hub and the proxy's stream answer, in memory.
func serve(h *gateway, k *stream.Keyer, r *http.Request) *ssetest.Client {
	u := &url.URL{Scheme: "http", Host: "upstream", Path: r.URL.Path}
	return ssetest.Open(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeStream(w, r, k.Target(r.URL.Path, u, r.Header))
	}), r)
}

// gateway is a hub with the proxy's stream answer in front of it.
type gateway struct {
	*stream.Hub
	streams *proxy.Streamer
}

func (g *gateway) ServeStream(w http.ResponseWriter, r *http.Request, t stream.Target) {
	g.streams.ServeStream(w, r, t)
}

// newHub returns a hub and its stream answer, configured by opts and, when
// given, the stream options so.
func newHub(t *testing.T, src stream.Source, opts stream.Options, so ...proxy.StreamOptions) (*gateway, *stream.Keyer, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	h := stream.NewHub(src, opts)
	t.Cleanup(h.Close)
	var o proxy.StreamOptions
	if len(so) > 0 {
		o = so[0]
	}
	return &gateway{h, proxy.NewStreamer(h, o)}, stream.NewKeyer([]string{"Authorization"}), reg
}

func TestHubSnapshotThenChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, reg := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		if got := r.target.Header.Get("Authorization"); got != "alice" {
			t.Errorf("source got Authorization %q, want %q", got, "alice")
		}
		r.pub.Publish([]byte(`[1]`), nil)
		snap := a.Expect(t, "snapshot", `[1]`)
		if snap.Retry != 3000 {
			t.Errorf("got retry %d before the first event, want 3000", snap.Retry)
		}
		if a.Status() != http.StatusOK {
			t.Errorf("got status %d, want 200", a.Status())
		}
		if ct := a.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("got Content-Type %q, want text/event-stream", ct)
		}
		for _, hd := range []string{"Cache-Control", "X-Accel-Buffering"} {
			if a.Header.Get(hd) == "" {
				t.Errorf("header %s missing", hd)
			}
		}
		r.pub.Publish([]byte(`[1,2]`), []stream.Change{{Kind: stream.KindCreated, Data: []byte(`2`)}})
		created := a.Expect(t, "created", `2`)
		if created.ID == snap.ID {
			t.Errorf("created event reuses the snapshot's id %q", snap.ID)
		}

		// A later subscriber is admitted from the state: no new source run,
		// and a snapshot of the current body carrying the newest id.
		b := open(h, k, "/n", "alice", "")
		b2 := b.Expect(t, "snapshot", `[1,2]`)
		if b2.ID != created.ID {
			t.Errorf("late snapshot has id %q, want the newest %q", b2.ID, created.ID)
		}
		src.none(t)
		synctest.Wait()
		if got := promtest.Value(t, reg, "ssegate_connections_active"); got != 2 {
			t.Errorf("connections_active = %v, want 2", got)
		}
		if got := promtest.Value(t, reg, "ssegate_events_published_total", "event", "created"); got != 1 {
			t.Errorf("events_published_total{created} = %v, want 1", got)
		}
		a.Close()
		b.Close()
		if got := promtest.Value(t, reg, "ssegate_connections_active"); got != 0 {
			t.Errorf("connections_active after close = %v, want 0", got)
		}
	})
}

func TestHubIsolatesIdentities(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		ra := src.next(t)
		b := open(h, k, "/n", "bob", "")
		rb := src.next(t)
		if ra.target.Key == rb.target.Key {
			t.Fatal("alice and bob share a key")
		}
		ra.pub.Publish([]byte(`"alice's"`), nil)
		rb.pub.Publish([]byte(`"bob's"`), nil)
		a.Expect(t, "snapshot", `"alice's"`)
		b.Expect(t, "snapshot", `"bob's"`)
		ra.pub.Publish([]byte(`"alice 2"`), []stream.Change{{Kind: stream.KindSnapshot, Data: []byte(`"alice 2"`)}})
		a.Expect(t, "snapshot", `"alice 2"`)
		rb.pub.Publish([]byte(`"bob 2"`), []stream.Change{{Kind: stream.KindSnapshot, Data: []byte(`"bob 2"`)}})
		b.Expect(t, "snapshot", `"bob 2"`)
		a.Close()
		b.Close()
	})
}

func TestHubResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		a.Expect(t, "snapshot", "0")
		r.pub.Publish([]byte(`1`), []stream.Change{{Kind: stream.KindUpdated, Data: []byte("1")}})
		seen := a.Expect(t, "updated", "1")
		a.Close()

		r.pub.Publish([]byte(`3`), []stream.Change{
			{Kind: stream.KindUpdated, Data: []byte("2")},
			{Kind: stream.KindUpdated, Data: []byte("3")},
		})
		// Exactly the missed events, no snapshot.
		b := open(h, k, "/n", "alice", seen.ID)
		b.Expect(t, "updated", "2")
		last := b.Expect(t, "updated", "3")
		b.Close()

		// Up to date: nothing until the next change.
		c := open(h, k, "/n", "alice", last.ID)
		r.pub.Publish([]byte(`4`), []stream.Change{{Kind: stream.KindUpdated, Data: []byte("4")}})
		c.Expect(t, "updated", "4")
		c.Close()

		// Unknown, malformed and foreign ids get a fresh snapshot, not an error.
		for _, id := range []string{"zzz-1", "garbage", strings.SplitN(seen.ID, "-", 2)[0] + "-999999", "\x00", strings.Repeat("9", 5000)} {
			d := open(h, k, "/n", "alice", id)
			d.Expect(t, "snapshot", "4")
			if d.Status() != http.StatusOK {
				t.Errorf("Last-Event-ID %q: got status %d, want 200", id, d.Status())
			}
			d.Close()
		}
		src.none(t)
	})
}

func TestHubResumeByQueryParameter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		snap := a.Expect(t, "snapshot", "0")
		a.Close()
		r.pub.Publish([]byte(`1`), []stream.Change{{Kind: stream.KindUpdated, Data: []byte("1")}})
		// For clients that cannot set headers; no snapshot, just what was missed.
		b := open(h, k, "/n?lastEventId="+url.QueryEscape(snap.ID), "alice", "")
		b.Expect(t, "updated", "1")
		b.Close()
		src.none(t)
	})
}

func TestHubEvictsSlowSubscriber(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, reg := newHub(t, src, stream.Options{ClientBuffer: 4})
		fast := open(h, k, "/n", "alice", "")
		slow := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		fast.Expect(t, "snapshot", "0")
		// slow never reads: its handler blocks in Write, its queue fills.
		const n = 50
		for i := 1; i <= n; i++ {
			d := []byte{byte('0' + i%10)}
			r.pub.Publish(d, []stream.Change{{Kind: stream.KindUpdated, Data: d}})
			fast.Expect(t, "updated", string(d))
		}
		synctest.Wait()
		if got := promtest.Value(t, reg, "ssegate_clients_evicted_total", "reason", "slow"); got != 1 {
			t.Errorf("evicted{slow} = %v, want 1", got)
		}
		slow.Abandon() // the network gives up on the stuck client
		<-slow.Ended()
		fast.Close()
	})
}

// A client that stops reading holds its handler in a write; the stream is
// cut between WriteTimeout and 1.25 × WriteTimeout after that write began,
// while a client that reads stays, idle or not, however long.
func TestHubCutsStuckWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{}, proxy.StreamOptions{Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second})
		reader := open(h, k, "/n", "alice", "")
		stuck := open(h, k, "/n", "alice", "") // never reads
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		reader.Expect(t, "snapshot", "0")
		synctest.Wait() // stuck's handler is in its first write now
		// reader takes its heartbeats, idle for an hour.
		go func() {
			for {
				if _, err := reader.Raw.ReadString('\n'); err != nil {
					return
				}
			}
		}()
		ended := func(c *ssetest.Client) bool {
			synctest.Wait()
			select {
			case <-c.Ended():
				return true
			default:
				return false
			}
		}
		time.Sleep(10*time.Second - time.Millisecond)
		if ended(stuck) {
			t.Fatal("a write was cut before WriteTimeout")
		}
		time.Sleep(2*time.Second + 500*time.Millisecond + time.Millisecond)
		if !ended(stuck) {
			t.Fatal("a write blocked for 1.25 × WriteTimeout was not cut")
		}
		time.Sleep(time.Hour)
		if ended(reader) {
			t.Fatal("a reading client was cut")
		}
		reader.Close()
	})
}

func TestHubHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{}, proxy.StreamOptions{Heartbeat: 15 * time.Second})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		a.Expect(t, "snapshot", "0")
		start := time.Now()
		line, err := a.Raw.ReadString('\n')
		if err != nil || line != ":\n" {
			t.Fatalf("got %q, %v; want a comment line", line, err)
		}
		if got := time.Since(start); got != 15*time.Second {
			t.Errorf("heartbeat after %v, want 15s", got)
		}
		a.Close()
	})
}

func TestHubLinger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, reg := newHub(t, src, stream.Options{Linger: 30 * time.Second})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		a.Expect(t, "snapshot", "0")
		a.Close()

		time.Sleep(29 * time.Second)
		synctest.Wait()
		if r.ctx.Err() != nil {
			t.Fatal("source stopped before the linger time")
		}
		// A reconnect within the linger time finds the same poller and state.
		b := open(h, k, "/n", "alice", "")
		b.Expect(t, "snapshot", "0")
		src.none(t)
		b.Close()

		time.Sleep(30*time.Second + time.Millisecond)
		synctest.Wait()
		select {
		case <-r.done:
		default:
			t.Fatal("source still running after the linger time")
		}
		for _, name := range []string{"ssegate_keys_active", "ssegate_streams_active"} {
			if got := promtest.Value(t, reg, name); got != 0 {
				t.Errorf("%s = %v, want 0", name, got)
			}
		}
	})
}

func TestHubDenial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})

		// At admission: the client gets the upstream's answer.
		a := open(h, k, "/n", "mallory", "")
		r := src.next(t)
		r.pub.Deny(stream.Denial{Status: 401, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"error":"login"}`)})
		body, _ := io.ReadAll(a.Raw)
		if a.Status() != 401 || string(body) != `{"error":"login"}` {
			t.Errorf("got %d %q, want 401 with the upstream's body", a.Status(), body)
		}
		<-r.done

		// Mid-session: the stream ends.
		b := open(h, k, "/n", "alice", "")
		r = src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		b.Expect(t, "snapshot", "0")
		r.pub.Deny(stream.Denial{Status: 403})
		if _, err := b.Events.Next(); err != io.EOF {
			t.Errorf("got %v after a denial, want the stream to end", err)
		}
		<-b.Ended()
		// The denied key is gone: the next client starts a fresh poll.
		c := open(h, k, "/n", "alice", "")
		src.next(t)
		c.Close()
	})
}

func TestHubUnavailableThenRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Unavailable()
		line, err := a.Raw.ReadString('\n')
		if err != nil || line != "retry: 3000\n" || a.Status() != 200 {
			t.Fatalf("got %q, %v, status %d; want the stream opened with 200", line, err, a.Status())
		}
		r.pub.Publish([]byte(`"up"`), nil)
		a.Expect(t, "snapshot", `"up"`)
		a.Close()
	})
}

func TestHubCloseEndsStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{})
		a := open(h, k, "/n", "alice", "")
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		a.Expect(t, "snapshot", "0")
		h.Close()
		if _, err := a.Events.Next(); err != io.EOF {
			t.Errorf("got %v after Close, want the stream to end", err)
		}
		<-r.done
		// Later streams end at once, cleanly, so that an EventSource
		// reconnects (elsewhere) instead of giving up on a 503.
		b := open(h, k, "/n", "alice", "")
		rest, _ := io.ReadAll(b.Raw)
		if b.Status() != http.StatusOK || string(rest) != "retry: 3000\n\n" {
			t.Errorf("after Close got %d %q, want 200 with only the retry field", b.Status(), rest)
		}
	})
}

// refused checks that c was answered 503 with a Retry-After.
func refused(t *testing.T, c *ssetest.Client, why string) {
	t.Helper()
	io.ReadAll(c.Raw)
	if c.Status() != http.StatusServiceUnavailable || c.Header.Get("Retry-After") == "" {
		t.Errorf("%s: got status %d, Retry-After %q; want 503 with Retry-After", why, c.Status(), c.Header.Get("Retry-After"))
	}
}

func TestHubLimits(t *testing.T) {
	publishAll := func(src *source) {
		for {
			select {
			case r := <-src.runs:
				r.pub.Publish([]byte(`0`), nil)
			default:
				return
			}
		}
	}
	t.Run("max streams", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			src := newSource()
			h, k, reg := newHub(t, src, stream.Options{MaxConnections: 2})
			a := openFrom(h, k, "alice", "192.0.2.1:1")
			b := openFrom(h, k, "bob", "192.0.2.2:1")
			synctest.Wait()
			publishAll(src)
			a.Expect(t, "snapshot", "0")
			b.Expect(t, "snapshot", "0")
			refused(t, openFrom(h, k, "alice", "192.0.2.3:1"), "third stream")
			if got := promtest.Value(t, reg, "ssegate_streams_rejected_total", "reason", "max_connections"); got != 1 {
				t.Errorf("rejected{max_connections} = %v, want 1", got)
			}
			a.Close()
			c := openFrom(h, k, "alice", "192.0.2.3:1")
			c.Expect(t, "snapshot", "0")
			b.Close()
			c.Close()
		})
	})
	t.Run("per IP", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			src := newSource()
			h, k, _ := newHub(t, src, stream.Options{MaxStreamsPerIP: 1})
			a := openFrom(h, k, "alice", "192.0.2.1:1")
			synctest.Wait()
			publishAll(src)
			a.Expect(t, "snapshot", "0")
			refused(t, openFrom(h, k, "alice", "192.0.2.1:2"), "second stream from one address")
			b := openFrom(h, k, "alice", "[2001:db8::1]:1")
			b.Expect(t, "snapshot", "0")
			a.Close()
			b.Close()
		})
	})
	t.Run("max keys", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			src := newSource()
			h, k, reg := newHub(t, src, stream.Options{MaxKeys: 1})
			a := openFrom(h, k, "alice", "192.0.2.1:1")
			synctest.Wait()
			publishAll(src)
			a.Expect(t, "snapshot", "0")
			refused(t, openFrom(h, k, "bob", "192.0.2.2:1"), "a second key")
			a2 := openFrom(h, k, "alice", "192.0.2.3:1") // the same key is fine
			a2.Expect(t, "snapshot", "0")
			src.none(t)
			if got := promtest.Value(t, reg, "ssegate_streams_rejected_total", "reason", "max_keys"); got != 1 {
				t.Errorf("rejected{max_keys} = %v, want 1", got)
			}
			a.Close()
			a2.Close()
		})
	})
}

// However long the heartbeat interval (the configuration allows any), a
// stuck write is cut within 1.25 × WriteTimeout: the wheel must look at
// the writes at least every WriteTimeout/4, not once per slot of a long
// interval (5 min / 64 slots is 4.7 s).
func TestHubCutsStuckWriteLongHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{}, proxy.StreamOptions{Heartbeat: 5 * time.Minute, WriteTimeout: 10 * time.Second})
		stuck := open(h, k, "/n", "alice", "") // never reads
		r := src.next(t)
		r.pub.Publish([]byte(`0`), nil)
		synctest.Wait() // stuck's handler is in its first write now
		ended := func() bool {
			synctest.Wait()
			select {
			case <-stuck.Ended():
				return true
			default:
				return false
			}
		}
		time.Sleep(10*time.Second - time.Millisecond)
		if ended() {
			t.Fatal("a write was cut before WriteTimeout")
		}
		time.Sleep(2*time.Second + 500*time.Millisecond + time.Millisecond)
		if !ended() {
			t.Error("a write blocked for 1.25 × WriteTimeout was not cut")
			time.Sleep(time.Minute)
			if !ended() {
				t.Fatal("a stuck write was never cut")
			}
		}
	})
}
