package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// echo is an upstream that answers with what it received.
func echo(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Got-Method", r.Method)
		w.Header().Set("X-Got-URI", r.RequestURI)
		w.Header().Set("X-Got-Host", r.Host)
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Custom", "X-Hop", "Accept"} {
			w.Header().Set("X-Got-"+h, r.Header.Get(h))
		}
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "body=%s", body)
	}))
	t.Cleanup(up.Close)
	return up
}

// front serves p over TLS with HTTP/2 enabled, as the gateway does.
func front(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func newProxy(t *testing.T, upstream string, opts proxy.Options) (*proxy.Proxy, *prometheus.Registry) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	opts.Upstream, opts.Registerer = u, reg
	p, err := proxy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, reg
}

func TestPassThroughOverHTTP2(t *testing.T) {
	up := echo(t)
	p, reg := newProxy(t, up.URL, proxy.Options{})
	gw := front(t, p)
	c := gw.Client()

	tests := []struct {
		method, path, body string
	}{
		{http.MethodGet, "/api/items?b=2&a=1&a=0", ""},
		{http.MethodPost, "/api/items?x=%2F", `{"title":"hi"}`},
		{http.MethodPut, "/a%2Fb/c", "put body"},
		{http.MethodDelete, "/api/items/7", ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, gw.URL+tt.path, strings.NewReader(tt.body))
		req.Header.Set("X-Custom", "kept")
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("%s %s: got %s, want HTTP/2", tt.method, tt.path, resp.Proto)
		}
		checks := map[string]string{
			"X-Got-Method":            tt.method,
			"X-Got-Uri":               tt.path,
			"X-Got-Host":              strings.TrimPrefix(up.URL, "http://"),
			"X-Got-X-Custom":          "kept",
			"X-Got-Accept":            "application/json",
			"X-Got-X-Forwarded-For":   "127.0.0.1",
			"X-Got-X-Forwarded-Proto": "https",
			"X-Got-X-Forwarded-Host":  strings.TrimPrefix(gw.URL, "https://"),
		}
		for k, want := range checks {
			if v := resp.Header.Get(k); v != want {
				t.Errorf("%s %s: upstream saw %s = %q, want %q", tt.method, tt.path, strings.TrimPrefix(k, "X-Got-"), v, want)
			}
		}
		if resp.StatusCode != http.StatusCreated || string(got) != "body="+tt.body {
			t.Errorf("%s %s: got %d %q, want 201 %q", tt.method, tt.path, resp.StatusCode, got, "body="+tt.body)
		}
	}
	if got := promtest.Value(t, reg, "ssegate_http_requests_total", "code", "201", "method", "post"); got != 1 {
		t.Errorf("http_requests_total{201,post} = %v, want 1", got)
	}
}

// rawHTTP1 sends one raw HTTP/1.1 request over TLS and returns the response.
func rawHTTP1(t *testing.T, gw *httptest.Server, request string) *http.Response {
	t.Helper()
	conn, err := tls.Dial("tcp", gw.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestHopByHopHeadersDropped(t *testing.T) {
	up := echo(t)
	p, _ := newProxy(t, up.URL, proxy.Options{})
	gw := front(t, p)
	resp := rawHTTP1(t, gw, "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: X-Hop\r\nX-Hop: secret\r\nX-Custom: kept\r\n\r\n")
	if v := resp.Header.Get("X-Got-X-Hop"); v != "" {
		t.Errorf("header named in Connection reached the upstream: %q", v)
	}
	if v := resp.Header.Get("X-Got-X-Custom"); v != "kept" {
		t.Errorf("X-Custom = %q, want kept", v)
	}
}

func TestNeverAnOpenProxy(t *testing.T) {
	up := echo(t)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request reached a host that is not the upstream: %s", r.URL)
	}))
	defer evil.Close()
	p, _ := newProxy(t, up.URL, proxy.Options{})
	gw := front(t, p)
	resp := rawHTTP1(t, gw, "GET "+evil.URL+"/steal HTTP/1.1\r\nHost: "+strings.TrimPrefix(evil.URL, "http://")+"\r\n\r\n")
	if got := resp.Header.Get("X-Got-Uri"); got != "/steal" {
		t.Errorf("upstream saw %q, want /steal on the configured upstream", got)
	}
}

func TestUnreachableUpstreamIs502(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var logs bytes.Buffer
	p, reg := newProxy(t, "http://"+addr, proxy.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	gw := front(t, p)
	resp, err := gw.Client().Get(gw.URL + "/x?token=s3cret")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream unavailable") {
		t.Errorf("got %d %q, want 502 with a short reason", resp.StatusCode, body)
	}
	if strings.Contains(string(body), addr) {
		t.Errorf("502 body reveals the upstream address: %q", body)
	}
	if strings.Contains(logs.String(), "s3cret") || !strings.Contains(logs.String(), "pass-through failed") {
		t.Errorf("log leaks the query or lacks the failure:\n%s", logs.String())
	}
	if got := promtest.Value(t, reg, "ssegate_http_requests_total", "code", "502"); got != 1 {
		t.Errorf("http_requests_total{502} = %v, want 1", got)
	}
}

func TestUpstreamBasePathIsJoined(t *testing.T) {
	up := echo(t)
	p, _ := newProxy(t, up.URL+"/legacy/", proxy.Options{})
	gw := front(t, p)
	resp, err := gw.Client().Get(gw.URL + "/api/n?q=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Got-Uri"); got != "/legacy/api/n?q=1" {
		t.Errorf("upstream saw %q, want /legacy/api/n?q=1", got)
	}
}

func TestAcceptsEventStream(t *testing.T) {
	tests := []struct {
		accept string
		want   bool
	}{
		{"text/event-stream", true},
		{"TEXT/Event-Stream", true},
		{"application/json, text/event-stream;q=0.9", true},
		{"text/event-stream; q=0", false},
		{"text/event-stream;q=0.000", false},
		{"text/event-stream;q=0.001", true},
		{"*/*", false}, // a plain fetch is a poll, not a stream
		{"application/json", false},
		{"", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.accept != "" {
			h.Set("Accept", tt.accept)
		}
		if got := proxy.AcceptsEventStream(h); got != tt.want {
			t.Errorf("Accept %q: got %v, want %v", tt.accept, got, tt.want)
		}
	}
}

func TestStreamRouting(t *testing.T) {
	up := echo(t)
	hub := stream.NewHub(echoSource{}, stream.Options{})
	defer hub.Close()
	p, _ := newProxy(t, up.URL+"/base", proxy.Options{
		Hub: hub, Keyer: stream.NewKeyer([]string{"Authorization"}),
		StreamPaths: []string{"/api/notifications", "/feeds/"},
	})
	gw := front(t, p)
	tests := []struct {
		method, path, accept string
		stream               bool
		polls                string // the URL polled upstream
	}{
		{"GET", "/api/notifications", "text/event-stream", true, up.URL + "/base/api/notifications"},
		{"GET", "/feeds/a/b?z=1&a=2&a=1&lastEventId=x", "text/event-stream", true, up.URL + "/base/feeds/a/b?a=2&a=1&z=1"},
		{"GET", "/api/notifications", "application/json", false, ""},
		{"POST", "/api/notifications", "text/event-stream", false, ""},
		{"GET", "/api/other", "text/event-stream", false, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, gw.URL+tt.path, nil)
		req.Header.Set("Accept", tt.accept)
		resp, err := gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		isStream := resp.Header.Get("Content-Type") == "text/event-stream"
		if isStream != tt.stream {
			t.Errorf("%s %s Accept %s: streamed %v, want %v", tt.method, tt.path, tt.accept, isStream, tt.stream)
		}
		if isStream {
			ev, err := sse.NewReader(resp.Body).Next()
			if err != nil || ev.Type != "snapshot" || ev.Data != tt.polls {
				t.Errorf("%s: got %+v, %v; want a snapshot of %s", tt.path, ev, err, tt.polls)
			}
		}
		resp.Body.Close()
	}
}

// echoSource publishes the polled URL as the body, so a test can see what
// the poller would fetch.
type echoSource struct{}

func (echoSource) Run(ctx context.Context, t stream.Target, p stream.Publisher) {
	p.Publish([]byte(t.URL.String()), nil)
	<-ctx.Done()
}
