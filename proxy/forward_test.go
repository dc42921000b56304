package proxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// forwardedSource publishes, as a key's body, the URL and the forwarding
// headers its polls would carry.
type forwardedSource struct{}

func (forwardedSource) Run(ctx context.Context, t stream.Target, p stream.Publisher) {
	b, _ := json.Marshal(map[string]any{"url": t.URL.String(), "forward": t.Forward})
	p.Publish(b, nil)
	<-ctx.Done()
}

type polled struct {
	URL     string
	Forward http.Header
}

// forged are forwarding headers a client makes up.
var forged = http.Header{
	"X-Forwarded-For":    {"198.51.100.1"},
	"X-Forwarded-Host":   {"forged.example"},
	"X-Forwarded-Proto":  {"gopher"},
	"X-Forwarded-Prefix": {"/forged"},
	"Forwarded":          {"for=198.51.100.1;host=forged.example"},
	"X-Real-Ip":          {"198.51.100.1"},
}

// TestForwardingHeaders: pass-through and the polls of a stream carry the
// same forwarding headers; a client's own are dropped unless its peer is a
// trusted proxy, whose chain is kept and extended.
func TestForwardingHeaders(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fwd := http.Header{}
		for k, vs := range r.Header {
			if stream.IsForwardingHeader(k) {
				fwd[k] = vs
			}
		}
		_ = json.NewEncoder(w).Encode(fwd)
	}))
	defer up.Close()

	tests := []struct {
		name    string
		trusted []netip.Prefix
		want    func(gwHost string) http.Header
	}{
		{"untrusted peer", nil, func(gwHost string) http.Header {
			return http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Host": {gwHost}, "X-Forwarded-Proto": {"https"}}
		}},
		{"peer in another range", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, func(gwHost string) http.Header {
			return http.Header{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Host": {gwHost}, "X-Forwarded-Proto": {"https"}}
		}},
		{"trusted peer", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, func(string) http.Header {
			want := forged.Clone()
			want.Set("X-Forwarded-For", "198.51.100.1, 127.0.0.1")
			return want
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := stream.NewHub(forwardedSource{}, stream.Options{})
			defer hub.Close()
			p, _ := newProxy(t, up.URL, proxy.Options{Hub: hub, Keyer: stream.NewKeyer(nil), TrustedProxies: tt.trusted})
			gw := front(t, p)
			want := tt.want(strings.TrimPrefix(gw.URL, "https://"))

			req, _ := http.NewRequest(http.MethodGet, gw.URL+"/n", nil)
			for k, vs := range forged {
				req.Header[k] = vs
			}
			resp, err := gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got http.Header
			err = json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if err != nil || !equalHeader(got, want) {
				t.Errorf("pass-through: upstream saw %v, %v; want %v", got, err, want)
			}

			req.Header.Set("Accept", "text/event-stream")
			resp, err = gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			ev, err := sse.NewReader(resp.Body).Next()
			var poll polled
			if err == nil {
				err = json.Unmarshal([]byte(ev.Data), &poll)
			}
			if err != nil || !equalHeader(poll.Forward, want) {
				t.Errorf("poll: would send %v, %v; want %v", poll.Forward, err, want)
			}
		})
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, vs := range a {
		if strings.Join(vs, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// TestStreamsPerClientBehindTrustedProxy: behind a trusted proxy the limit
// per IP counts the client it forwards for (the rightmost address in
// X-Forwarded-For that is not a trusted proxy), not the proxy; from an
// untrusted peer, the peer, whatever it claims.
func TestStreamsPerClientBehindTrustedProxy(t *testing.T) {
	up := echo(t)
	for _, trusted := range []bool{false, true} {
		hub := stream.NewHub(echoSource{}, stream.Options{MaxStreamsPerIP: 1})
		defer hub.Close()
		opts := proxy.Options{Hub: hub, Keyer: stream.NewKeyer(nil)}
		if trusted {
			opts.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
		}
		p, _ := newProxy(t, up.URL, opts)
		gw := front(t, p)
		open := func(xff string) int {
			req, _ := http.NewRequest(http.MethodGet, gw.URL+"/n", nil)
			req.Header.Set("Accept", "text/event-stream")
			req.Header.Set("X-Forwarded-For", xff)
			resp, err := gw.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusOK {
				if _, err := sse.NewReader(resp.Body).Next(); err != nil { // admitted and serving
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { resp.Body.Close() })
			return resp.StatusCode
		}
		first := open("203.0.113.1, 10.0.0.2")
		other := open("203.0.113.1, 203.0.113.2, 10.0.0.3") // a forged hop, then another client
		same := open("198.51.100.9, 203.0.113.1")           // forged left of the same client
		want := []int{200, 503, 503}
		if trusted {
			want = []int{200, 200, 503}
		}
		if got := []int{first, other, same}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("trusted=%v: streams got %v, want %v", trusted, got, want)
		}
	}
}

// TestNoTunnels: no upgrade but WebSocket (and that only when enabled)
// reaches the upstream, and no CONNECT; an upstream that switches protocols
// anyway gets no tunnel.
func TestNoTunnels(t *testing.T) {
	var switched atomic.Bool
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Upgrade", "Connection", "Http2-Settings", "X-Custom"} {
			w.Header().Set("X-Got-"+h, strings.Join(r.Header.Values(h), ","))
		}
		w.Header().Set("X-Got-Method", r.Method)
		if r.Header.Get("X-Switch") != "" { // an upstream that upgrades unasked
			switched.Store(true)
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "h2c")
			w.WriteHeader(http.StatusSwitchingProtocols)
		}
	}))
	defer up.Close()

	const h2c = "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings, X-Hop\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nX-Custom: kept\r\n"
	const ws = "GET /x HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	tests := []struct {
		name        string
		passWS      bool
		request     string
		wantUpgrade string
	}{
		{"h2c", false, h2c, ""},
		{"h2c with WebSockets on", true, h2c, ""},
		{"websocket off", false, ws, ""},
		{"websocket and h2c", true, strings.Replace(ws, "Upgrade: websocket", "Upgrade: websocket, h2c", 1), ""},
		{"websocket on", true, ws, "websocket"},
	}
	for _, tt := range tests {
		p, _ := newProxy(t, up.URL, proxy.Options{PassWebSockets: tt.passWS})
		gw := front(t, p)
		resp := rawHTTP1(t, gw, tt.request+"\r\n")
		resp.Body.Close()
		if got := resp.Header.Get("X-Got-Upgrade"); got != tt.wantUpgrade {
			t.Errorf("%s: upstream saw Upgrade %q, want %q", tt.name, got, tt.wantUpgrade)
		}
		if tt.wantUpgrade == "" && (resp.Header.Get("X-Got-Connection") != "" || resp.Header.Get("X-Got-Http2-Settings") != "") {
			t.Errorf("%s: upstream saw Connection %q, HTTP2-Settings %q; want neither", tt.name,
				resp.Header.Get("X-Got-Connection"), resp.Header.Get("X-Got-Http2-Settings"))
		}
		if resp.Header.Get("X-Got-Method") != http.MethodGet || (strings.Contains(tt.request, "X-Custom") && resp.Header.Get("X-Got-X-Custom") != "kept") {
			t.Errorf("%s: the request itself did not pass through: %v", tt.name, resp.Header)
		}
	}

	// An upstream that switches to h2c unasked: the client gets no 101.
	p, _ := newProxy(t, up.URL, proxy.Options{})
	gw := front(t, p)
	resp := rawHTTP1(t, gw, strings.Replace(h2c, "X-Custom: kept", "X-Switch: 1", 1)+"\r\n")
	resp.Body.Close()
	if !switched.Load() || resp.StatusCode == http.StatusSwitchingProtocols {
		t.Errorf("upstream switched %v; client got %d, want no 101", switched.Load(), resp.StatusCode)
	}

	// CONNECT never reaches the upstream.
	resp = rawHTTP1(t, gw, "CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n")
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("X-Got-Method") != "" {
		t.Errorf("CONNECT: got %d, upstream saw %q; want 501 and nothing upstream", resp.StatusCode, resp.Header.Get("X-Got-Method"))
	}
}

// TestStreamPathsCleaned: a stream path is matched and polled in its
// canonical form; any other form is redirected to it, as http.ServeMux
// would, and never polled as written.
func TestStreamPathsCleaned(t *testing.T) {
	up := echo(t)
	hub := stream.NewHub(echoSource{}, stream.Options{})
	defer hub.Close()
	p, _ := newProxy(t, up.URL, proxy.Options{Hub: hub, Keyer: stream.NewKeyer(nil), StreamPaths: []string{"/api/"}})
	gw := front(t, p)
	c := gw.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	tests := []struct {
		path     string
		status   int
		location string // for a redirect
		polls    string // for a stream
	}{
		{"/api/%2e%2e/internal/secret", http.StatusTemporaryRedirect, "/internal/secret", ""},
		{"/api/..%2Finternal", http.StatusTemporaryRedirect, "/internal", ""},
		{"/api/x/%2E%2E/%2e%2E/internal?q=1", http.StatusTemporaryRedirect, "/internal?q=1", ""},
		{"/api//x", http.StatusTemporaryRedirect, "/api/x", ""},
		{"/api/./x/", http.StatusTemporaryRedirect, "/api/x/", ""},
		{"/other/../api/x", http.StatusTemporaryRedirect, "/api/x", ""},
		{"/api", http.StatusTemporaryRedirect, "/api/", ""},
		{"/api/a%2Fb", http.StatusOK, "", up.URL + "/api/a%2Fb"},
		{"/api/x", http.StatusOK, "", up.URL + "/api/x"},
		{"/other//x", http.StatusCreated, "", ""}, // not a stream path: passes through as written
		// Resolved upstream by rules Go does not know: never a stream.
		{"/api/..;/internal", http.StatusCreated, "", ""},
		{"/api/.;x/internal", http.StatusCreated, "", ""},
		{"/api/..%5Cinternal", http.StatusCreated, "", ""},
		{"/api/%5c..%5cinternal", http.StatusCreated, "", ""},
		{"/api/a;b", http.StatusOK, "", up.URL + "/api/a;b"}, // parameters on an ordinary segment stream
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, gw.URL, nil)
		req.URL.Opaque, req.URL.RawQuery, _ = strings.Cut(tt.path, "?") // sent exactly as written
		req.Header.Set("Accept", "text/event-stream")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
			t.Errorf("%s: got %d to %q, want %d to %q", tt.path, resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
		}
		if tt.polls != "" {
			ev, err := sse.NewReader(resp.Body).Next()
			if err != nil || ev.Data != tt.polls {
				t.Errorf("%s: polls %q, %v; want %q", tt.path, ev.Data, err, tt.polls)
			}
		}
		if tt.status == http.StatusCreated && resp.Header.Get("X-Got-Uri") != tt.path {
			t.Errorf("%s: upstream saw %q, want it as written", tt.path, resp.Header.Get("X-Got-Uri"))
		}
		resp.Body.Close()
	}
}

// TestMalformedQueryStreams: a query url.ParseQuery rejects streams, and
// the poll fetches what pass-through fetches for the same URL.
func TestMalformedQueryStreams(t *testing.T) {
	up := echo(t)
	hub := stream.NewHub(echoSource{}, stream.Options{})
	defer hub.Close()
	p, _ := newProxy(t, up.URL, proxy.Options{Hub: hub, Keyer: stream.NewKeyer(nil)})
	gw := front(t, p)
	for _, q := range []string{"q=a;b", "z=1&q=a;b&a=2", "a=%zz&b=1", "x=%"} {
		resp, err := gw.Client().Get(gw.URL + "/n?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		passed := up.URL + resp.Header.Get("X-Got-Uri")

		req, _ := http.NewRequest(http.MethodGet, gw.URL+"/n?"+q, nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err = gw.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var data string
		if ev, err := sse.NewReader(resp.Body).Next(); err == nil {
			data = ev.Data
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || strings.TrimSuffix(data, "?") != strings.TrimSuffix(passed, "?") {
			t.Errorf("?%s: got %d polling %q, want 200 polling what pass-through fetched, %q", q, resp.StatusCode, data, passed)
		}
	}
}
