package stream_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/ssegate/ssegate/stream"
)

// BenchmarkTarget is what keying one stream request costs: the target, its
// identity and forwarding headers and the two keyed hashes of its key.
// Everything it allocates is garbage once the hub has the subscription, so
// B/op and allocs/op are per stream opened, not held.
func BenchmarkTarget(b *testing.B) {
	k := stream.NewKeyerWith(stream.KeyerOptions{IdentityHeaders: []string{"Authorization", "Cookie"}})
	u, _ := url.Parse("http://upstream.example/api/notifications?page=1")
	h := http.Header{
		"Authorization":     {"Bearer 0123456789abcdef"},
		"Cookie":            {"session=abc; theme=dark"},
		"Accept":            {"text/event-stream"},
		"X-Forwarded-For":   {"192.0.2.1"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"app.example"},
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Target("/api/notifications", u, h)
	}
}
