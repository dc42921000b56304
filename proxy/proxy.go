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
	"net/url"
	"strings"

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
	// StreamPaths are http.ServeMux patterns of the paths that may stream.
	// Default: every path.
	StreamPaths []string
	// Logger receives pass-through errors. Default: discard.
	Logger *slog.Logger
	// Registerer receives the proxy's metrics. Default: none.
	Registerer prometheus.Registerer
	// Nudge, when set, is served at NudgePath on this listener too.
	Nudge http.Handler
	// CORSOrigins may read event streams from another origin: serialized
	// origins, with credentials, or "*" alone for any origin without.
	// Default: none. Pass-through never gets these headers.
	CORSOrigins []string
}

// Proxy is the gateway's main http.Handler.
type Proxy struct {
	upstream    *url.URL
	hub         *stream.Hub
	keyer       *stream.Keyer
	streamPaths *http.ServeMux
	passThrough http.Handler
	nudge       http.Handler
	cors        *cors // nil: no cross-origin streams
	log         *slog.Logger
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
	p := &Proxy{upstream: opts.Upstream, hub: opts.Hub, keyer: opts.Keyer, streamPaths: mux, nudge: opts.Nudge, cors: c, log: opts.Logger}

	rp := &httputil.ReverseProxy{
		// Rewrite (not Director) so that hop-by-hop headers named in
		// Connection are dropped before we see the request, and the
		// upstream is fixed whatever the request's URI or Host.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(opts.Upstream)
			pr.SetXForwarded()
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
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// ServeHTTP routes r to the hub or to the upstream.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.nudge != nil && r.URL.Path == NudgePath {
		p.nudge.ServeHTTP(w, r)
		return
	}
	if p.hub != nil && p.servePreflight(w, r) {
		return
	}
	if p.hub != nil && p.isStream(r) {
		p.serveStream(w, r)
		return
	}
	p.passThrough.ServeHTTP(w, r)
}

// isStream reports whether r is an EventSource request on a streamable path.
func (p *Proxy) isStream(r *http.Request) bool {
	if r.Method != http.MethodGet || !AcceptsEventStream(r.Header) {
		return false
	}
	_, pattern := p.streamPaths.Handler(r)
	return pattern != ""
}

// AcceptsEventStream reports whether an Accept header lists
// text/event-stream with a non-zero weight (RFC 9110 §12.5.1).
func AcceptsEventStream(h http.Header) bool {
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

func (p *Proxy) serveStream(w http.ResponseWriter, r *http.Request) {
	p.cors.setHeaders(w.Header(), r) // first: every answer below carries them
	q, err := stream.NormalizeQuery(r.URL.RawQuery, "lastEventId")
	if err != nil {
		http.Error(w, "ssegate: malformed query string", http.StatusBadRequest)
		return
	}
	u := *p.upstream
	u.Path = joinPath(p.upstream.Path, r.URL.Path)
	u.RawPath = joinPath(p.upstream.EscapedPath(), r.URL.EscapedPath())
	u.RawQuery = q
	p.hub.ServeStream(w, r, p.keyer.Target(r.URL.Path, &u, r.Header))
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
