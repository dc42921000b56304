package stream_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/ssegate/ssegate/stream"
)

// The keyed hashes a Keyer reuses are keyed with its current secret: after
// SetSecret no key is derived with a state of the old one, however many
// were pooled before.
func TestKeyerReusedHashesFollowTheSecret(t *testing.T) {
	u, _ := url.Parse("http://upstream.example/n")
	h := http.Header{"Authorization": {"Bearer a"}, "X-Forwarded-Proto": {"https"}}
	opts := func(secret string) stream.KeyerOptions {
		return stream.KeyerOptions{IdentityHeaders: []string{"Authorization"}, Secret: []byte(secret)}
	}
	k := stream.NewKeyerWith(opts("old secret"))
	old := k.Target("/n", u, h).Key
	for range 10 {
		if got := k.Target("/n", u, h).Key; got != old {
			t.Fatalf("a reused hash gave another key: %v, want %v", got, old)
		}
	}
	k.SetSecret([]byte("new secret"))
	want := stream.NewKeyerWith(opts("new secret")).Target("/n", u, h).Key
	for range 10 {
		if got := k.Target("/n", u, h).Key; got != want || got == old {
			t.Fatalf("after SetSecret: key %v, want %v (the old one is %v)", got, want, old)
		}
	}
}
