package app_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/stream"
)

// recorded is one request the upstream received.
type recorded struct {
	poll   bool // sent by the poller (User-Agent ssegate), not passed through
	uri    string
	header http.Header
}

// recorder is an upstream that records every request and answers with
// answer's list.
type recorder struct {
	URL    string
	mu     sync.Mutex
	reqs   []recorded
	answer func(w http.ResponseWriter, r *http.Request)
}

func newRecorder(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *recorder {
	rec := &recorder{answer: answer}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{poll: r.UserAgent() == "ssegate", uri: r.RequestURI, header: r.Header.Clone()})
		rec.mu.Unlock()
		rec.answer(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.URL = srv.URL
	return rec
}

// requests returns what the upstream received so far, polls or not.
func (rec *recorder) requests(polls bool) []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []recorded
	for _, r := range rec.reqs {
		if r.poll == polls {
			out = append(out, r)
		}
	}
	return out
}

// list answers a one-item list that says what the upstream saw in header.
func list(header string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `[{"id":1,"seen":%q}]`, r.Header.Get(header))
	}
}

// forwarding returns the forwarding headers of h.
func forwarding(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		if stream.IsForwardingHeader(k) {
			out[k] = vs
		}
	}
	return out
}

// openStream sends req as an EventSource would and reads its events.
func openStream(t *testing.T, c *http.Client, req *http.Request) *sub {
	t.Helper()
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream %s: got %d, want 200", req.URL, resp.StatusCode)
	}
	s := &sub{events: sse.Follow(resp.Body, 100), resp: resp}
	return s
}

// passThrough GETs req and returns the status.
func passThrough(t *testing.T, c *http.Client, req *http.Request) int {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// h2cClient speaks cleartext HTTP/2, as a load balancer would to a gateway
// with SSEGATE_H2C=true.
func h2cClient(t *testing.T) *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestPollCarriesForwardingHeaders: a poll carries the X-Forwarded-*
// headers pass-through sends for the same client.
func TestPollCarriesForwardingHeaders(t *testing.T) {
	up := newRecorder(t, list("X-Forwarded-Proto"))
	g := startGateway(t, up.URL)
	c := g.client(t)

	req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
	passThrough(t, c, req)
	s := openStream(t, c, req.Clone(req.Context()))
	s.expect(t, "snapshot", has(`"seen":"https"`))

	passed, polls := up.requests(false), up.requests(true)
	if len(passed) != 1 || len(polls) == 0 {
		t.Fatalf("upstream got %d pass-through requests and %d polls, want 1 and some", len(passed), len(polls))
	}
	want := http.Header{
		"X-Forwarded-For":   {"127.0.0.1"},
		"X-Forwarded-Host":  {strings.TrimPrefix(g.base, "https://")},
		"X-Forwarded-Proto": {"https"},
	}
	if got := forwarding(passed[0].header); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pass-through carried %v, want %v", got, want)
	}
	if got := forwarding(polls[0].header); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("poll carried %v, want what pass-through carried, %v", got, want)
	}
}

// TestTenantsByHost: an upstream that picks the tenant by host gives each
// host's stream its own tenant's data, though neither has an identity.
func TestTenantsByHost(t *testing.T) {
	up := newRecorder(t, list("X-Forwarded-Host"))
	g := startGateway(t, up.URL)
	c := g.client(t)
	var subs []*sub
	for _, host := range []string{"a.example", "b.example"} {
		req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
		req.Host = host
		subs = append(subs, openStream(t, c, req))
	}
	subs[0].expect(t, "snapshot", has(`"seen":"a.example"`))
	subs[1].expect(t, "snapshot", has(`"seen":"b.example"`))
}

// TestHTTPSOnlyUpstream: an upstream that redirects every request without
// X-Forwarded-Proto: https (Django's SECURE_SSL_REDIRECT, Rails force_ssl)
// still feeds a stream.
func TestHTTPSOnlyUpstream(t *testing.T) {
	up := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Forwarded-Proto") != "https" {
			http.Redirect(w, r, "https://"+r.Host+r.RequestURI, http.StatusMovedPermanently)
			return
		}
		list("X-Forwarded-Proto")(w, r)
	})
	g := startGateway(t, up.URL)
	req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
	openStream(t, g.client(t), req).expect(t, "snapshot", has(`"id":1`))
}

// TestTrustedProxies: behind a load balancer that ends TLS, the upstream
// sees the balancer's proto, host and client address, on pass-through and
// on polls, only when the balancer is trusted; otherwise it sees none of
// what the peer claims.
func TestTrustedProxies(t *testing.T) {
	balancer := http.Header{
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"app.example"},
		"X-Real-Ip":         {"203.0.113.7"},
		"Forwarded":         {"for=203.0.113.7;host=app.example;proto=https"},
	}
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			up := newRecorder(t, list("X-Forwarded-Proto"))
			env := []string{"SSEGATE_H2C=true"}
			if trusted {
				env = append(env, "SSEGATE_TRUSTED_PROXIES=127.0.0.1/32")
			}
			g := startGateway(t, up.URL, env...)
			base := strings.Replace(g.base, "https://", "http://", 1)
			c := h2cClient(t)
			req, _ := http.NewRequest(http.MethodGet, base+"/api/notifications", nil)
			for k, vs := range balancer {
				req.Header[k] = vs
			}
			passThrough(t, c, req)
			proto := "http"
			if trusted {
				proto = "https"
			}
			openStream(t, c, req.Clone(req.Context())).expect(t, "snapshot", has(`"seen":"`+proto+`"`))

			want := http.Header{
				"X-Forwarded-For":   {"127.0.0.1"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {strings.TrimPrefix(base, "http://")},
			}
			if trusted {
				want = balancer.Clone()
				want.Set("X-Forwarded-For", "203.0.113.7, 127.0.0.1")
			}
			for _, poll := range []bool{false, true} {
				reqs := up.requests(poll)
				if len(reqs) == 0 {
					t.Fatalf("poll=%v: no request upstream", poll)
				}
				if got := forwarding(reqs[0].header); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("poll=%v: upstream saw %v, want %v", poll, got, want)
				}
			}
		})
	}
}

// TestKeyByClientIP: by default the clients of one identity share a key,
// and its polls carry the address of the client that opened it; with
// SSEGATE_KEY_BY_CLIENT_IP each address has its own key.
func TestKeyByClientIP(t *testing.T) {
	for _, byIP := range []bool{false, true} {
		t.Run(fmt.Sprint("by_ip=", byIP), func(t *testing.T) {
			up := newRecorder(t, list("X-Forwarded-For"))
			env := []string{"SSEGATE_H2C=true", "SSEGATE_TRUSTED_PROXIES=127.0.0.1/32"}
			if byIP {
				env = append(env, "SSEGATE_KEY_BY_CLIENT_IP=true")
			}
			g := startGateway(t, up.URL, env...)
			base := strings.Replace(g.base, "https://", "http://", 1)
			c := h2cClient(t)
			for _, addr := range []string{"203.0.113.1", "203.0.113.2"} {
				req, _ := http.NewRequest(http.MethodGet, base+"/api/notifications", nil)
				req.Header.Set("Authorization", "Bearer alice")
				req.Header.Set("X-Forwarded-For", addr)
				// Each gets its snapshot: the first key is open before
				// the second client arrives. Both stay open to the end.
				openStream(t, c, req).next(t)
			}
			seen := map[string]bool{}
			for _, r := range up.requests(true) {
				seen[r.header.Get("X-Forwarded-For")] = true
			}
			want := map[string]bool{"203.0.113.1, 127.0.0.1": true}
			if byIP {
				want["203.0.113.2, 127.0.0.1"] = true
			}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Errorf("polls carried X-Forwarded-For %v, want %v", seen, want)
			}
		})
	}
}

// TestUpgradeH2CStripped: an Upgrade: h2c request reaches the upstream as
// a plain request, without Upgrade, on either listener.
func TestUpgradeH2CStripped(t *testing.T) {
	for _, h2c := range []bool{false, true} {
		t.Run(fmt.Sprint("h2c=", h2c), func(t *testing.T) {
			up := newRecorder(t, list("Upgrade"))
			var env []string
			if h2c {
				env = append(env, "SSEGATE_H2C=true")
			}
			g := startGateway(t, up.URL, env...)
			addr := g.base[strings.Index(g.base, "//")+2:]
			var conn net.Conn
			var err error
			if h2c {
				conn, err = net.Dial("tcp", addr)
			} else {
				conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "GET /api/notifications HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n", addr)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			reqs := up.requests(false)
			if resp.StatusCode != http.StatusOK || len(reqs) != 1 || !strings.Contains(string(body), `"seen":""`) {
				t.Fatalf("got %d %q after %d upstream requests, want 200 from the upstream", resp.StatusCode, body, len(reqs))
			}
			for _, h := range []string{"Upgrade", "Connection", "Http2-Settings"} {
				if v := reqs[0].header.Values(h); len(v) > 0 {
					t.Errorf("upstream saw %s: %q", h, v)
				}
			}
		})
	}
}

// TestTraversalNotPolled: a stream request whose path escapes the stream
// paths once decoded is redirected to its clean form, never polled as
// written; a clean one is polled exactly at its path.
func TestTraversalNotPolled(t *testing.T) {
	up := newRecorder(t, list("X-Forwarded-Proto"))
	g := startGateway(t, up.URL, "SSEGATE_STREAM_PATHS=/api/")
	c := g.client(t)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	req, _ := http.NewRequest(http.MethodGet, g.base, nil)
	req.URL.Opaque = "/api/%2e%2e/internal/secret" // sent as written
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "/internal/secret" {
		t.Errorf("got %d to %q, want 307 to /internal/secret", resp.StatusCode, resp.Header.Get("Location"))
	}

	req, _ = http.NewRequest(http.MethodGet, g.base+"/api/items", nil)
	openStream(t, c, req).expect(t, "snapshot", has(`"id":1`))
	if len(up.requests(false)) != 0 {
		t.Errorf("upstream got %d pass-through requests, want none", len(up.requests(false)))
	}
	for _, r := range up.requests(true) {
		if r.uri != "/api/items" {
			t.Errorf("upstream polled %q, want only /api/items", r.uri)
		}
	}
}

// TestMalformedQueryStreams: a query url.ParseQuery rejects streams with
// 200, polling what pass-through fetches for the same URL.
func TestMalformedQueryStreams(t *testing.T) {
	up := newRecorder(t, list("X-Forwarded-Proto"))
	g := startGateway(t, up.URL)
	c := g.client(t)
	req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications?z=1&q=a;b&a=2", nil)
	passThrough(t, c, req)
	openStream(t, c, req.Clone(req.Context())).expect(t, "snapshot", has(`"id":1`))
	passed, polls := up.requests(false), up.requests(true)
	if len(passed) != 1 || len(polls) == 0 || polls[0].uri != passed[0].uri {
		t.Errorf("pass-through fetched %v, polls %v; want the same URL", passed, polls)
	}
}
