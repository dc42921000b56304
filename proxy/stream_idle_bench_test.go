package proxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/bench"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// BenchmarkIdleStream opens b.N event streams through a real proxy.Proxy
// over loopback TLS, and as many to the stock floor server of
// internal/bench (the denominator), and reports what one idle stream holds
// in the process after a GC: heap-B/stream and stack-B/stream (goroutine
// stacks), client side included, which is the same for both servers.
// h2: 100 streams per HTTP/2 connection (tabs of a browser); h1: one
// HTTP/1.1 connection each (as behind a load balancer). allocs/op counts
// allocations per stream opened, client's included.
func BenchmarkIdleStream(b *testing.B) {
	for _, proto := range []string{"h2", "h1"} {
		for _, server := range []string{"ssegate", "floor"} {
			b.Run(proto+"/"+server, func(b *testing.B) {
				var h http.Handler
				var path string
				if server == "floor" {
					h, path = bench.NewFloor(), "/events"
				} else {
					h, path = idleProxy(b), "/n"
				}
				srv := httptest.NewUnstartedServer(h)
				srv.EnableHTTP2 = proto == "h2"
				srv.StartTLS()
				defer srv.Close()
				openIdle(b, srv.URL+path, proto == "h2")
			})
		}
	}
}

// idleProxy is a proxy whose one key has published its first body.
func idleProxy(b *testing.B) http.Handler {
	src := make(chanSource, 1)
	h := stream.NewHub(src, stream.Options{Registerer: prometheus.NewRegistry()})
	b.Cleanup(h.Close)
	up, _ := url.Parse("http://upstream.invalid")
	p, err := proxy.New(proxy.Options{Upstream: up, Hub: h, Keyer: stream.NewKeyer(nil), StreamPaths: []string{"/n"}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	go func() { (<-src).Publish([]byte(`[]`), nil) }()
	return p
}

// openIdle opens b.N streams to url, each read up to its first event, and
// reports the memory they hold once idle.
func openIdle(b *testing.B, url string, h2 bool) {
	ctx, cancel := context.WithCancel(context.Background())
	var trs []*http.Transport
	defer func() {
		cancel()
		for _, tr := range trs {
			tr.CloseIdleConnections()
		}
	}()
	transport := func() *http.Transport {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2, MaxConnsPerHost: 1}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
			tr.MaxConnsPerHost = 0
		}
		trs = append(trs, tr)
		return tr
	}
	open := func(tr *http.Transport) io.ReadCloser {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		var first [64]byte
		if _, err := resp.Body.Read(first[:]); err != nil {
			b.Fatal(err)
		}
		return resp.Body
	}
	tr := transport()
	open(tr).Close() // the key's first body, the connection
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	bodies := make([]io.ReadCloser, 0, b.N)
	var mu sync.Mutex
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if h2 && n%100 == 0 && n > 0 {
			tr = transport()
		}
		n++
		body := open(tr)
		mu.Lock()
		bodies = append(bodies, body)
		mu.Unlock()
	}
	b.StopTimer()
	time.Sleep(100 * time.Millisecond) // every handler parked
	runtime.GC()
	runtime.GC() // the second shrinks the stacks the first found idle
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "heap-B/stream")
	b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/float64(n), "stack-B/stream")
	for _, body := range bodies {
		body.Close()
	}
}
