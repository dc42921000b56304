package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/internal/ssetest"
	"github.com/ssegate/ssegate/proxy"
)

// upstreamBody answers every request with 200 and body.
type upstreamBody func() io.Reader

func (b upstreamBody) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/octet-stream"}},
		Body: io.NopCloser(b()), Request: r}, nil
}

// trickle yields a 1 KiB chunk a second, n times.
type trickle struct{ n int }

func (t *trickle) Read(p []byte) (int, error) {
	if t.n == 0 {
		return 0, io.EOF
	}
	t.n--
	time.Sleep(time.Second)
	return copy(p, strings.Repeat("x", min(len(p), 1024))), nil
}

// A pass-through response that the client stops taking would hold its
// handler and an upstream connection for ever (the server has no
// WriteTimeout): a write that makes no progress for a minute is cut, 60 to
// 62.5 s after it began. A slow client that keeps reading is not.
func TestPassThroughCutsStuckWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, _ := url.Parse("http://upstream.invalid")
		p, err := proxy.New(proxy.Options{Upstream: up, Transport: upstreamBody(func() io.Reader { return strings.NewReader(strings.Repeat("x", 1<<20)) })})
		if err != nil {
			t.Fatal(err)
		}
		stuck := ssetest.Open(p, httptest.NewRequest(http.MethodGet, "/big", nil)) // never reads
		ended := func() bool {
			synctest.Wait()
			select {
			case <-stuck.Ended():
				return true
			default:
				return false
			}
		}
		if ended() {
			t.Fatal("the handler returned before the client read anything")
		}
		time.Sleep(time.Minute - time.Millisecond)
		if ended() {
			t.Fatal("a write was cut before a minute")
		}
		time.Sleep(2*time.Second + 500*time.Millisecond + time.Millisecond)
		if !ended() {
			t.Fatal("a write blocked for 62.5 s was not cut")
		}

		p, err = proxy.New(proxy.Options{Upstream: up, Transport: upstreamBody(func() io.Reader { return &trickle{n: 200} })})
		if err != nil {
			t.Fatal(err)
		}
		slow := ssetest.Open(p, httptest.NewRequest(http.MethodGet, "/slow", nil))
		got, err := io.Copy(io.Discard, slow.Raw)
		if err != nil || got != 200<<10 {
			t.Errorf("a slow response read %d bytes in 200 s (%v), want all %d", got, err, 200<<10)
		}
		<-slow.Ended()
	})
}
