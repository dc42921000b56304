package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/ssegate/ssegate/proxy"
)

// BenchmarkPassThrough: one GET through the proxy's pass-through path, in
// process (no network): what the proxy adds to a request, the watch on its
// writes included, with no stream open (so the clock starts and stops
// with each request).
func BenchmarkPassThrough(b *testing.B) {
	body := make([]byte, 4<<10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	p, err := proxy.New(proxy.Options{Upstream: u})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/x", nil))
		if w.Code != http.StatusOK || w.Body.Len() != len(body) {
			b.Fatalf("got %d, %d bytes", w.Code, w.Body.Len())
		}
		_, _ = io.Copy(io.Discard, w.Body)
	}
}
