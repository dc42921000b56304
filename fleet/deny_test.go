package fleet

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// replicaHub is one replica's hub and poller on an engine.
func replicaHub(t *testing.T, e *Engine) *stream.Hub {
	t.Helper()
	p := poller.New(poller.Options{Interval: 50 * time.Millisecond, IntervalMax: 50 * time.Millisecond, Shared: e.Shared()})
	h := stream.NewHub(p, stream.Options{HistorySize: 100})
	t.Cleanup(func() { h.Close(); p.Close() })
	return h
}

// waitStart waits for sub's first outcome, as the proxy does: its first
// event (its backlog, or what is queued once it is placed), or its denial.
func waitStart(t *testing.T, sub *stream.Subscription) ([]*stream.Event, *stream.Denial) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	select {
	case <-sub.Ready():
	case <-sub.Done():
	case <-timeout:
		t.Fatal("no outcome within 5s")
	}
	if d := sub.Denial(); d != nil {
		return nil, d
	}
	if evs := sub.Start(); len(evs) > 0 {
		return evs, nil
	}
	for {
		select {
		case <-sub.Wake():
			if evs := sub.Take(nil); len(evs) > 0 {
				return evs, nil
			}
			continue // an empty wake: an earlier Take had them
		case <-sub.Done():
			return nil, sub.Denial()
		case <-timeout:
			t.Fatal("no event or denial within 5s")
		}
		return nil, nil
	}
}

// A key the upstream denied is denied on every replica: a client that joins
// another replica afterwards gets the denial, never the body the fleet
// stored before it.
func TestDeniedKeyIsNotServedFromTheFleetsState(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	var denied atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if denied.Load() {
			http.Error(w, "revoked", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"id":1,"secret":"s3cr3t"}]`))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/items")
	keyer := stream.NewKeyerWith(stream.KeyerOptions{IdentityHeaders: []string{"Authorization"}, Secret: []byte("0123456789abcdef0123456789abcdef")})
	target := keyer.Target("/items", u, http.Header{"Authorization": {"Bearer ann"}})
	ha, hb := replicaHub(t, a), replicaHub(t, b)

	sub, err := ha.Subscribe(target, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if evs, d := waitStart(t, sub); d != nil || len(evs) != 1 || evs[0].Kind != stream.KindSnapshot {
		t.Fatalf("first client: backlog %v, denial %v; want a snapshot", evs, d)
	}
	eventually(t, 2*time.Second, "the body is stored in Redis", func() bool {
		_, ok, _ := a.state(bg, target.Key.ID())
		return ok
	})

	denied.Store(true)
	select {
	case <-sub.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the first client's stream did not end on the denial")
	}
	if sub.Denial() == nil {
		t.Fatal("the first client's stream ended without the denial")
	}

	// A client of the same identity on another replica, which never had
	// the key: the upstream says 401, so must the gateway.
	sub2, err := hb.Subscribe(target, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Close()
	if evs, d := waitStart(t, sub2); d == nil {
		t.Fatalf("a client joining another replica after the denial got %d events (%s), not the denial", len(evs), evs[0].Wire())
	} else if d.Status != http.StatusUnauthorized {
		t.Errorf("denial status %d, want 401", d.Status)
	}
}

// While the holder's first polls fail, a client of the key on another
// replica is let in (200 and heartbeats, as a single process does after a
// failed first poll) instead of waiting for headers, and gets the first
// body when the upstream recovers.
func TestFailingFirstPollLetsOtherReplicasClientsIn(t *testing.T) {
	v := newEnv(t)
	a, b := v.open(), v.open()
	var ok atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"id":1}]`))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/n")
	tg := stream.NewKeyerWith(stream.KeyerOptions{Secret: []byte("0123456789abcdef0123456789abcdef")}).Target("/n", u, http.Header{})
	ha, hb := replicaHub(t, a), replicaHub(t, b)
	sa, err := ha.Subscribe(tg, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	select {
	case <-sa.Ready(): // A polled and failed: its own client is in
	case <-time.After(5 * time.Second):
		t.Fatal("A's client not let in after a failed first poll")
	}
	sb, err := hb.Subscribe(tg, "", "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	select {
	case <-sb.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("B's client still waits for headers while the holder's polls fail")
	}
	if sb.Denial() != nil || len(sb.Start()) != 0 {
		t.Fatal("B's client got something before any body")
	}
	ok.Store(true)
	evs, _ := waitStart(t, sb)
	if len(evs) != 1 || evs[0].Kind != stream.KindSnapshot {
		t.Fatalf("B's client got %d events, want the first body's snapshot", len(evs))
	}
}
