// Package proxy is ssegate's HTTP front. A GET that asks for an event stream
// on a streamable path is answered by the stream hub; every other request
// goes to the fixed upstream through httputil.ReverseProxy, unchanged.
package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssegate/ssegate/stream"
)

// Options configure a Proxy.
type Options struct {
	// Upstream is where every request goes. Required.
	Upstream *url.URL
	// Transport carries pass-through requests. Default http.DefaultTransport.
	Transport http.RoundTripper
	// Hub answers event streams. Nil: every request passes through.
	Hub *stream.Hub
	// Keyer derives stream keys. Required with Hub.
	Keyer *stream.Keyer
	// Stream configures the event streams' HTTP side: retry, heartbeats,
	// write deadlines, maximum duration.
	Stream StreamOptions
	// StreamPaths are http.ServeMux patterns of the paths that may stream.
	// Default: every path.
	StreamPaths []string
	// Logger receives pass-through errors. Default: discard.
	Logger *slog.Logger
	// Registerer receives the proxy's metrics. Default: none.
	Registerer prometheus.Registerer
	// TrustedProxies are the peers whose forwarding headers are kept and
	// extended, and whose X-Forwarded-For names the client. Default: none.
	TrustedProxies []netip.Prefix
	// PassWebSockets forwards WebSocket upgrades; every other upgrade is
	// always stripped. Default false.
	PassWebSockets bool
	// CORSOrigins may read event streams from another origin: serialized
	// origins, with credentials, or "*" alone for any origin without.
	// Default: none. Pass-through never gets these headers.
	CORSOrigins []string
}

// Proxy is the gateway's main http.Handler.
type Proxy struct {
	upstream    *url.URL
	hub         *stream.Hub
	streams     *streamer
	keyer       *stream.Keyer
	streamPaths *http.ServeMux
	passThrough http.Handler
	cors        *cors // nil: no cross-origin streams
	log         *slog.Logger
	forwarding  forwarding
	passWS      bool
	// passWriteTimeout is passWriteTimeout; tests shorten it.
	passWriteTimeout time.Duration
}

var _ http.Handler = (*Proxy)(nil)

// New returns a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Upstream == nil || !opts.Upstream.IsAbs() {
		return nil, errors.New("proxy: upstream must be an absolute URL")
	}
	if opts.Hub != nil && opts.Keyer == nil {
		return nil, errors.New("proxy: a hub needs a keyer")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.StreamPaths) == 0 {
		opts.StreamPaths = []string{"/"}
	}
	mux := http.NewServeMux()
	for _, p := range opts.StreamPaths {
		if err := register(mux, p); err != nil {
			return nil, err
		}
	}
	c, err := newCORS(opts.CORSOrigins)
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: opts.Upstream, hub: opts.Hub, streams: newStreamer(opts.Hub, opts.Stream), keyer: opts.Keyer, streamPaths: mux, cors: c, log: opts.Logger,
		forwarding: forwarding{trusted: opts.TrustedProxies}, passWS: opts.PassWebSockets, passWriteTimeout: passWriteTimeout}

	rp := &httputil.ReverseProxy{
		// Rewrite (not Director) so that hop-by-hop headers named in
		// Connection are dropped before we see the request, and the
		// upstream is fixed whatever the request's URI or Host.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(opts.Upstream)
			p.forwarding.apply(pr.Out.Header, pr.In)
		},
		Transport:    opts.Transport,
		ErrorHandler: p.upstreamError,
		ErrorLog:     slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	requests := promauto.With(opts.Registerer).NewCounterVec(prometheus.CounterOpts{
		Name: "ssegate_http_requests_total",
		Help: "Requests passed through to the upstream, by status code and method.",
	}, []string{"code", "method"})
	p.passThrough = promhttp.InstrumentHandlerCounter(requests, rp)
	return p, nil
}

func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil { // ServeMux panics on a bad pattern
			err = fmt.Errorf("proxy: stream path %q: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, streamPath{})
	return nil
}

// streamPath marks the patterns of stream paths in a ServeMux; it is never
// served.
type streamPath struct{}

func (streamPath) ServeHTTP(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }

// ServeHTTP routes r to the hub or to the upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		// Forwarded, a CONNECT would be a tunnel (over HTTP/2 both ways,
		// the body is one), past every rule of this proxy.
		http.Error(w, "ssegate: CONNECT is not forwarded", http.StatusNotImplemented)
		return
	}
	if p.hub != nil && p.servePreflight(w, r) {
		return
	}
	if p.hub != nil && r.Method == http.MethodGet && acceptsEventStream(r.Header) {
		switch h := p.streamRoute(r); h.(type) {
		case streamPath:
			p.serveStream(w, r)
			return
		case nil:
		default:
			// The redirect to the clean path: a cross-origin EventSource
			// follows it only if this answer carries CORS headers too.
			p.cors.setHeaders(w.Header(), r)
			h.ServeHTTP(w, r)
			return
		}
	}
	p.passThroughWatched(w, withoutUpgrade(r, p.passWS))
}

// streamRoute tells how an EventSource request is answered: streamPath to
// stream it, nil to pass it through (not a stream path), or the redirect
// http.ServeMux would answer. A stream path is matched and polled only in
// its canonical form: "/api/%2e%2e/secret" matches "/api/" as written, and
// polled as written the upstream would resolve it to "/secret". Such a
// request, and any whose decoded path has "//", "." or ".." segments, is
// redirected to the cleaned path and routed afresh there.
func (p *Proxy) streamRoute(r *http.Request) http.Handler {
	if ambiguousPath(r.URL.Path) {
		return nil // passes through as written, as any plain GET would
	}
	h, pattern := p.streamPaths.Handler(r)
	if clean := cleanPath(r.URL.Path); clean != r.URL.Path {
		_, cleanPattern := p.streamPaths.Handler(&http.Request{Method: r.Method, Host: r.Host, URL: &url.URL{Path: clean}})
		if pattern == "" && cleanPattern == "" {
			return nil
		}
		u := url.URL{Path: clean, RawQuery: r.URL.RawQuery}
		return http.RedirectHandler(u.String(), http.StatusTemporaryRedirect)
	}
	if pattern == "" {
		return nil
	}
	return h // streamPath, or ServeMux's redirect from /tree to /tree/
}

// ambiguousPath reports a path that some servers resolve differently from
// Go: a backslash (IIS and ASP.NET read it as "/") or a dot segment with
// path parameters ("..;" is ".." to Tomcat and Jetty). Such a path is never
// a stream: matched against SSEGATE_STREAM_PATHS it could name another path
// upstream.
func ambiguousPath(p string) bool {
	if strings.Contains(p, `\`) {
		return true
	}
	for seg := range strings.SplitSeq(p, "/") {
		if name, _, params := strings.Cut(seg, ";"); params && (name == "." || name == "..") {
			return true
		}
	}
	return false
}

// cleanPath is the canonical form http.ServeMux gives a path: rooted, no
// empty, "." or ".." segments, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

// acceptsEventStream reports whether an Accept header lists
// text/event-stream with a non-zero weight (RFC 9110 §12.5.1).
func acceptsEventStream(h http.Header) bool {
	for _, v := range h.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/event-stream" {
				continue
			}
			if q, ok := params["q"]; ok && strings.Trim(q, "0.") == "" {
				continue // q=0 means "not acceptable"
			}
			return true
		}
	}
	return false
}

// serveStream answers r, on a canonical stream path, from the hub.
func (p *Proxy) serveStream(w http.ResponseWriter, r *http.Request) {
	p.cors.setHeaders(w.Header(), r) // first: every answer below carries them
	if sub := p.subscribe(w, r); sub != nil {
		p.streams.serve(w, r, sub)
	}
}

// subscribe subscribes r to its stream, or refuses it and returns nil. The
// target lives in its frame, gone before the stream writes: the key's HMAC
// and the first flush are a stream's deepest calls, and each must stay
// within the 4 KB its stack starts with.
func (p *Proxy) subscribe(w http.ResponseWriter, r *http.Request) *stream.Subscription {
	var t stream.Target
	ip := p.streamTarget(r, &t)
	return p.streams.subscribe(w, r, &t, ip)
}

// streamTarget sets t to r's stream target and returns the client's
// address. Its frames are kept small: a handler whose stack never needs
// more than the stock server's keeps its size.
func (p *Proxy) streamTarget(r *http.Request, t *stream.Target) string {
	u := p.streamURL(r)
	// The header as pass-through would send it: the key and the polls
	// see the forwarding headers the upstream would see on a GET.
	h := requestHeader(r.Header)
	client := p.forwarding.apply(h, r)
	*t = p.keyer.Target(r.URL.Path, u, h)
	return client
}

// requestHeader is h without its forwarding headers, which apply decides:
// a new map sharing h's value slices, not a deep clone (nothing here or in
// the keyer writes into them, and Target copies what it keeps), since
// every stream opened pays for it. Not inlined: in the caller's frame the
// map's few hundred bytes would double a stream's stack.
//
//go:noinline
func requestHeader(h http.Header) http.Header {
	out := make(http.Header, len(h)+3) // and X-Forwarded-For, -Host, -Proto
	for name, vs := range h {
		if !stream.IsForwardingHeader(name) {
			out[name] = vs
		}
	}
	return out
}

// streamURL is the upstream URL r's stream polls.
func (p *Proxy) streamURL(r *http.Request) *url.URL {
	u := *p.upstream
	u.Path = joinPath(p.upstream.Path, r.URL.Path)
	u.RawPath = joinPath(p.upstream.EscapedPath(), r.URL.EscapedPath())
	u.RawQuery = stream.NormalizeQuery(r.URL.RawQuery, lastEventIDParam)
	return &u
}

func joinPath(a, b string) string {
	switch {
	case a == "" || a == "/":
		return b
	case b == "" || b == "/":
		return a
	}
	return strings.TrimSuffix(a, "/") + "/" + strings.TrimPrefix(b, "/")
}

// upstreamError answers a failed pass-through with a short 502: the client
// learns the upstream failed, not how our network looks.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client left; nobody reads an answer
	}
	// The path only: a query may carry a token.
	p.log.Warn("pass-through failed", "method", r.Method, "path", r.URL.Path, "err", err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte("ssegate: upstream unavailable\n")) // nothing to do if the client left
}
