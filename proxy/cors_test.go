package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// corsUpstream answers every request itself with its own CORS policy, so a
// test can tell its answers (X-Upstream) from the gateway's.
func corsUpstream(t *testing.T) *httptest.Server {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", r.Method)
		w.Header().Set("Access-Control-Allow-Origin", "https://upstream-choice.example")
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "upstream")
	}))
	t.Cleanup(up.Close)
	return up
}

// pathSource denies the keys under /api/denied/ with the status named by
// the last segment, and publishes a body for the others.
type pathSource struct{}

func (pathSource) Run(ctx context.Context, t stream.Target, p stream.Publisher) {
	switch t.Path {
	case "/api/denied/401":
		p.Deny(stream.Denial{Status: 401, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"error":"login"}`)})
		return
	case "/api/denied/404":
		p.Deny(stream.Denial{Status: 404, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"error":"gone"}`)})
		return
	}
	p.Publish([]byte(`[]`), nil)
	<-ctx.Done()
}

func corsGateway(t *testing.T, origins []string, hubOpts stream.Options) *httptest.Server {
	t.Helper()
	up := corsUpstream(t)
	hub := stream.NewHub(pathSource{}, hubOpts)
	t.Cleanup(hub.Close)
	p, _ := newProxy(t, up.URL, proxy.Options{
		Hub: hub, Keyer: stream.NewKeyer(nil),
		StreamPaths: []string{"/api/"},
		CORSOrigins: origins,
	})
	return front(t, p)
}

type corsReq struct {
	method, path string
	header       []string // name, value pairs
}

// do sends r through the gateway at base and returns the answer with its
// body read and closed (a stream is cut after its headers).
func (r corsReq) do(t *testing.T, gw *httptest.Server) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(r.method, gw.URL+r.path, nil)
	for i := 0; i+1 < len(r.header); i += 2 {
		req.Header.Add(r.header[i], r.header[i+1])
	}
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp, ""
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

const (
	app   = "https://app.example"
	other = "https://evil.example"
)

func streamReq(path, origin string) corsReq {
	h := []string{"Accept", "text/event-stream"}
	if origin != "" {
		h = append(h, "Origin", origin)
	}
	return corsReq{http.MethodGet, path, h}
}

func preflight(path, origin, method, headers string) corsReq {
	h := []string{"Origin", origin, "Access-Control-Request-Method", method}
	if headers != "" {
		h = append(h, "Access-Control-Request-Headers", headers)
	}
	return corsReq{http.MethodOptions, path, h}
}

// want is the CORS view of one answer: "" for a header means absent.
type want struct {
	status            int
	allowOrigin       string
	allowCredentials  string
	vary              string // what Vary must contain
	upstream          bool   // answered by the upstream (pass-through)
	allowHeaders      string
	allowMethods      string
	body, contentType string
}

func check(t *testing.T, name string, resp *http.Response, body string, w want) {
	t.Helper()
	h := resp.Header
	got := func(k string) string { return strings.Join(h.Values(k), ", ") }
	if resp.StatusCode != w.status {
		t.Errorf("%s: status %d, want %d", name, resp.StatusCode, w.status)
	}
	if v := got("Access-Control-Allow-Origin"); v != w.allowOrigin {
		t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", name, v, w.allowOrigin)
	}
	if v := got("Access-Control-Allow-Credentials"); v != w.allowCredentials {
		t.Errorf("%s: Access-Control-Allow-Credentials %q, want %q", name, v, w.allowCredentials)
	}
	if v := got("Vary"); w.vary != "" && !strings.Contains(v, w.vary) || w.vary == "" && strings.Contains(v, "Origin") {
		t.Errorf("%s: Vary %q, want it to contain %q", name, v, w.vary)
	}
	if up := h.Get("X-Upstream") != ""; up != w.upstream {
		t.Errorf("%s: answered by the upstream %v, want %v", name, up, w.upstream)
	}
	if v := got("Access-Control-Allow-Headers"); v != w.allowHeaders {
		t.Errorf("%s: Access-Control-Allow-Headers %q, want %q", name, v, w.allowHeaders)
	}
	if v := got("Access-Control-Allow-Methods"); v != w.allowMethods {
		t.Errorf("%s: Access-Control-Allow-Methods %q, want %q", name, v, w.allowMethods)
	}
	if w.body != "" && body != w.body {
		t.Errorf("%s: body %q, want %q", name, body, w.body)
	}
	if w.contentType != "" && h.Get("Content-Type") != w.contentType {
		t.Errorf("%s: Content-Type %q, want %q", name, h.Get("Content-Type"), w.contentType)
	}
}

// TestCORSStreams: an allowed origin's page can read its streams, their
// denials and preflights; anything else, and every pass-through answer,
// is left as the upstream (or the browser's default) has it.
func TestCORSStreams(t *testing.T) {
	base := corsGateway(t, []string{app, "http://127.0.0.1:3000"}, stream.Options{})
	// The upstream's own answer, untouched: its origin, its Vary, nothing of ours.
	passThrough := want{status: 200, allowOrigin: "https://upstream-choice.example", upstream: true, body: "upstream"}
	preflightOK := want{status: 204, allowOrigin: app, allowCredentials: "true", allowMethods: "GET",
		vary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"}
	tests := []struct {
		name string
		req  corsReq
		want want
	}{
		{"stream from an allowed origin", streamReq("/api/n", app),
			want{status: 200, allowOrigin: app, allowCredentials: "true", vary: "Origin", contentType: "text/event-stream"}},
		{"stream from another allowed origin", streamReq("/api/n", "http://127.0.0.1:3000"),
			want{status: 200, allowOrigin: "http://127.0.0.1:3000", allowCredentials: "true", vary: "Origin", contentType: "text/event-stream"}},
		{"stream from an origin not listed", streamReq("/api/n", other),
			want{status: 200, vary: "Origin", contentType: "text/event-stream"}},
		{"stream from an origin differing in case", streamReq("/api/n", "https://APP.example"),
			want{status: 200, vary: "Origin", contentType: "text/event-stream"}},
		{"stream without Origin", streamReq("/api/n", ""),
			want{status: 200, vary: "Origin", contentType: "text/event-stream"}},
		{"401 denial to an allowed origin", streamReq("/api/denied/401", app),
			want{status: 401, allowOrigin: app, allowCredentials: "true", vary: "Origin", body: `{"error":"login"}`, contentType: "application/json"}},
		{"404 denial to an allowed origin", streamReq("/api/denied/404", app),
			want{status: 404, allowOrigin: app, allowCredentials: "true", vary: "Origin", body: `{"error":"gone"}`, contentType: "application/json"}},
		{"404 denial to an origin not listed", streamReq("/api/denied/404", other),
			want{status: 404, vary: "Origin", body: `{"error":"gone"}`}},

		{"preflight of a polyfill", preflight("/api/n", app, "GET", "last-event-id,cache-control"),
			func() want { w := preflightOK; w.allowHeaders = "last-event-id, cache-control"; return w }()},
		{"preflight with a bearer token", preflight("/api/n", app, "GET", "Authorization, Last-Event-ID"),
			func() want { w := preflightOK; w.allowHeaders = "authorization, last-event-id"; return w }()},
		{"preflight without headers", preflight("/api/n", app, "GET", ""), preflightOK},
		{"preflight from an origin not listed", preflight("/api/n", other, "GET", "last-event-id"), passThrough},
		{"preflight of another method", preflight("/api/n", app, "POST", "last-event-id"), passThrough},
		{"preflight of another header", preflight("/api/n", app, "GET", "last-event-id, x-custom"), passThrough},
		{"preflight outside the stream paths", preflight("/other", app, "GET", "last-event-id"), passThrough},

		{"pass-through GET from an allowed origin", corsReq{http.MethodGet, "/api/n", []string{"Origin", app, "Accept", "application/json"}}, passThrough},
		{"pass-through POST from an allowed origin", corsReq{http.MethodPost, "/api/n", []string{"Origin", app, "Accept", "text/event-stream"}}, passThrough},
	}
	for _, tt := range tests {
		resp, body := tt.req.do(t, base)
		check(t, tt.name, resp, body, tt.want)
	}
}

// TestCORSAnyOrigin: "*" lets any page read its streams, never with
// credentials (a browser refuses "*" to a request with cookies).
func TestCORSAnyOrigin(t *testing.T) {
	base := corsGateway(t, []string{"*"}, stream.Options{})
	for _, tt := range []struct {
		name string
		req  corsReq
		want want
	}{
		{"stream", streamReq("/api/n", other), want{status: 200, allowOrigin: "*", contentType: "text/event-stream"}},
		{"stream without Origin", streamReq("/api/n", ""), want{status: 200, contentType: "text/event-stream"}},
		{"denial", streamReq("/api/denied/401", other), want{status: 401, allowOrigin: "*", body: `{"error":"login"}`}},
		{"preflight", preflight("/api/n", other, "GET", "last-event-id"),
			want{status: 204, allowOrigin: "*", allowMethods: "GET", allowHeaders: "last-event-id", vary: "Origin, Access-Control-Request-Method"}},
	} {
		resp, body := tt.req.do(t, base)
		check(t, tt.name, resp, body, tt.want)
	}
}

// TestCORSOff: without origins, streams carry no CORS header and every
// preflight is the upstream's.
func TestCORSOff(t *testing.T) {
	base := corsGateway(t, nil, stream.Options{})
	resp, body := streamReq("/api/n", app).do(t, base)
	check(t, "stream", resp, body, want{status: 200, contentType: "text/event-stream"})
	resp, body = preflight("/api/n", app, "GET", "last-event-id").do(t, base)
	check(t, "preflight", resp, body, want{status: 200, allowOrigin: "https://upstream-choice.example", upstream: true, body: "upstream"})
}

// TestCORSRefusals: a 503 over a limit carries the headers too, so the
// page's script can see it and retry later.
func TestCORSRefusals(t *testing.T) {
	base := corsGateway(t, []string{app}, stream.Options{MaxConnections: 1})
	req, _ := http.NewRequest(http.MethodGet, base.URL+"/api/n", nil)
	req.Header.Set("Accept", "text/event-stream")
	first, err := base.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	resp, body := streamReq("/api/n", app).do(t, base)
	check(t, "503", resp, body, want{status: 503, allowOrigin: app, allowCredentials: "true", vary: "Origin"})
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestCORSOriginsChecked(t *testing.T) {
	for _, origins := range [][]string{{"*", app}, {app, ""}, {"null"}} {
		u, _ := http.NewRequest(http.MethodGet, "http://upstream.test", nil)
		if _, err := proxy.New(proxy.Options{Upstream: u.URL, CORSOrigins: origins}); err == nil {
			t.Errorf("CORSOrigins %q accepted, want an error", origins)
		}
	}
}

// TestCORSOnCleanPathRedirect: the redirect to a stream path's clean form
// carries the CORS headers too, or a cross-origin EventSource could not
// follow it.
func TestCORSOnCleanPathRedirect(t *testing.T) {
	gw := corsGateway(t, []string{app}, stream.Options{})
	c := gw.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodGet, gw.URL+"/api//n", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Origin", app)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	check(t, "redirect to the clean path", resp, "", want{status: http.StatusTemporaryRedirect, allowOrigin: app, allowCredentials: "true", vary: "Origin"})
}
