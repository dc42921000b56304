package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// countingWriter is a ResponseWriter that discards what it gets and counts
// the events written (one per "\n\n").
type countingWriter struct {
	h      http.Header
	events *atomic.Int64
}

func (w countingWriter) Header() http.Header { return w.h }
func (w countingWriter) WriteHeader(int)     {}
func (w countingWriter) Flush()              {}

// SetWriteDeadline is supported, as on real HTTP/1 and HTTP/2 writers.
func (w countingWriter) SetWriteDeadline(time.Time) error { return nil }
func (w countingWriter) Write(b []byte) (int, error) {
	for i := 1; i < len(b); i++ {
		if b[i] == '\n' && b[i-1] == '\n' {
			w.events.Add(1)
		}
	}
	return len(b), nil
}

// chanSource hands its publisher to the benchmark.
type chanSource chan stream.Publisher

func (s chanSource) Run(ctx context.Context, _ stream.Target, p stream.Publisher) {
	s <- p
	<-ctx.Done()
}

// BenchmarkFanout publishes one event to n subscribers of one key and waits
// until every subscriber has written it: the cost of one change for n
// clients, with allocations per publish (the aim: none per subscriber).
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			src := make(chanSource, 1)
			h := stream.NewHub(src, stream.Options{ClientBuffer: 256})
			defer h.Close()
			streams := proxy.NewStreamer(h, proxy.StreamOptions{Heartbeat: time.Hour})
			k := stream.NewKeyer(nil)
			u, _ := url.Parse("http://up/n")
			var events atomic.Int64
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			for range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/n", nil)
					streams.ServeStream(countingWriter{h: http.Header{}, events: &events}, r, k.Target("/n", u, r.Header))
				}()
			}
			pub := <-src
			pub.Publish([]byte(`[]`), nil)
			for events.Load() < int64(n) { // every snapshot written
				time.Sleep(time.Millisecond)
			}
			data := []byte(`{"id":1,"title":"Notification","read":false}`)
			changes := []stream.Change{{Kind: stream.KindCreated, Data: data}}
			want := int64(n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				pub.Publish(data, changes)
				want += int64(n)
				for events.Load() < want {
					time.Sleep(10 * time.Microsecond)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/subscriber")
			cancel()
			wg.Wait()
		})
	}
}
