package stream_test

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/stream"
)

// nextEvent waits for sub's next live event.
func nextEvent(t testing.TB, sub *stream.Subscription) *stream.Event {
	t.Helper()
	for {
		select {
		case <-sub.Wake():
			if evs := sub.Take(nil); len(evs) > 0 {
				if len(evs) > 1 {
					t.Fatalf("%d events queued, want one", len(evs))
				}
				return evs[0]
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
			return nil
		}
	}
}

func newTestHub(t testing.TB, buffer int) (*stream.Hub, pubSource, stream.Target) {
	src := make(pubSource, 1)
	h := stream.NewHub(src, stream.Options{ClientBuffer: buffer, Registerer: prometheus.NewRegistry()})
	t.Cleanup(h.Close)
	tg := stream.NewKeyer(nil).Target("/n", &url.URL{Scheme: "http", Host: "up", Path: "/n"}, http.Header{})
	return h, src, tg
}

func created(i int) []stream.Change {
	return []stream.Change{{Kind: stream.KindCreated, Data: fmt.Appendf(nil, "%d", i)}}
}

// A subscriber that does not take its events is evicted at the buffer's
// size, not before; the events it took no longer count against it, and
// they come out in order, sharing the published encodings.
func TestSubscriptionQueue(t *testing.T) {
	const buffer = 4
	h, src, tg := newTestHub(t, buffer)
	sub, err := h.Subscribe(tg, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub := <-src
	pub.Publish([]byte(`[]`), nil)
	nextEvent(t, sub) // the first body, as a snapshot
	for i := range buffer {
		pub.Publish(fmt.Appendf(nil, "[%d]", i), created(i))
	}
	<-sub.Wake()
	evs := sub.Take(nil)
	if len(evs) != buffer {
		t.Fatalf("took %d events, want %d", len(evs), buffer)
	}
	for i, e := range evs {
		if want := fmt.Sprintf("data: %d\n\n", i); string(e.Wire()[len(e.Wire())-len(want):]) != want {
			t.Errorf("event %d is %q, want data %d", i, e.Wire(), i)
		}
	}
	for i := range buffer {
		pub.Publish(fmt.Appendf(nil, "[%d]", i), created(i))
	}
	select {
	case <-sub.Done():
		t.Fatal("evicted with a full queue, want only past it")
	default:
	}
	pub.Publish([]byte(`[9]`), created(9))
	select {
	case <-sub.Done():
	default:
		t.Fatal("not evicted past its buffer")
	}
}

// Take hands back the spare array as the next queue: delivery allocates
// nothing once both arrays exist, and an array a lag grew is dropped.
func TestSubscriptionTakeReuses(t *testing.T) {
	h, src, tg := newTestHub(t, 256)
	sub, err := h.Subscribe(tg, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub := <-src
	pub.Publish([]byte(`[]`), nil)
	evs := sub.Take(nil)
	for i := range 100 {
		pub.Publish(fmt.Appendf(nil, "[%d]", i), created(i))
	}
	evs = sub.Take(evs)
	if len(evs) != 100 {
		t.Fatalf("took %d, want 100", len(evs))
	}
	grown := evs
	evs = sub.Take(evs) // the grown array is dropped, not queued into
	pub.Publish([]byte(`[x]`), created(100))
	if evs = sub.Take(evs); len(evs) != 1 || &evs[0] == &grown[0] {
		t.Fatalf("took %d events into the grown array, want 1 in a small one", len(evs))
	}
	if grown[0] != nil {
		t.Error("a returned array still holds its events")
	}
}

// BenchmarkSubscribe is the heap one idle subscriber costs the hub: the
// subscription, its channels and its place in the key, after the snapshot
// was taken. B/op and allocs/op are per subscriber (held, not garbage);
// bytes/idle is the live heap measured after a GC.
func BenchmarkSubscribe(b *testing.B) {
	h, src, tg := newTestHub(b, 256)
	first, err := h.Subscribe(tg, "", "192.0.2.1")
	if err != nil {
		b.Fatal(err)
	}
	pub := <-src
	pub.Publish([]byte(`[]`), nil)
	first.Start()
	subs := make([]*stream.Subscription, 0, b.N)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	for b.Loop() {
		sub, err := h.Subscribe(tg, "", "192.0.2.1")
		if err != nil {
			b.Fatal(err)
		}
		sub.Start()
		subs = append(subs, sub)
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(subs)), "bytes/idle")
	for _, s := range subs {
		s.Close()
	}
	first.Close()
}

// BenchmarkOfferTake fans one event out to n subscribers, each of which
// takes it, as a writer does: the hub's cost per subscriber per event,
// allocations included (the aim: none per subscriber).
func BenchmarkOfferTake(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h, src, tg := newTestHub(b, 256)
			subs := make([]*stream.Subscription, n)
			spare := make([][]*stream.Event, n)
			for i := range subs {
				sub, err := h.Subscribe(tg, "", "192.0.2.1")
				if err != nil {
					b.Fatal(err)
				}
				defer sub.Close()
				sub.Start()
				subs[i] = sub
			}
			pub := <-src
			pub.Publish([]byte(`[]`), nil)
			data := []byte(`{"id":1,"title":"Notification","read":false}`)
			changes := []stream.Change{{Kind: stream.KindCreated, Data: data}}
			b.ReportAllocs()
			for b.Loop() {
				pub.Publish(data, changes)
				for i, sub := range subs {
					<-sub.Wake()
					spare[i] = sub.Take(spare[i])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber")
		})
	}
}
