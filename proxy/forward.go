package proxy

import (
	"net/http"
	"net/netip"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/ssegate/ssegate/stream"
)

// forwarding decides the forwarding headers (stream.IsForwardingHeader) a
// request goes upstream with. Pass-through and the polls of the keys a
// request opens use the same rule, so an upstream that looks at them
// answers a stream as it answers a GET.
type forwarding struct {
	trusted []netip.Prefix // peers whose forwarding headers are kept
}

// apply replaces the forwarding headers in out, the header r goes upstream
// with, and returns the client's address. From a trusted peer the chain it
// sent is kept and its address appended to X-Forwarded-For; from any other
// peer every forwarding header it sent is dropped first, so a client cannot
// choose its own address, host or scheme as the upstream sees them.
func (f forwarding) apply(out http.Header, r *http.Request) (client string) {
	for name := range out {
		if stream.IsForwardingHeader(name) {
			delete(out, name)
		}
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil { // not a TCP peer (tests, unix sockets): nothing to add
		return r.RemoteAddr
	}
	addr := peer.Addr().Unmap().WithZone("")
	client = addr.String()
	chain := client
	if f.trusts(addr) {
		for name, vs := range r.Header {
			if stream.IsForwardingHeader(name) {
				out[name] = append([]string(nil), vs...)
			}
		}
		if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			chain = strings.Join(prior, ", ") + ", " + chain
		}
		client = f.client(r.Header, client)
	}
	out.Set("X-Forwarded-For", chain)
	if out.Get("X-Forwarded-Host") == "" && r.Host != "" {
		out.Set("X-Forwarded-Host", r.Host)
	}
	if out.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		out.Set("X-Forwarded-Proto", proto)
	}
	return client
}

func (f forwarding) trusts(a netip.Addr) bool {
	for _, p := range f.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// client is the address a trusted peer forwarded for: the rightmost hop of
// X-Forwarded-For that is not a trusted proxy (hops left of it were written
// by the client or by proxies we do not know), else X-Real-Ip, else the peer.
// A hop that is not an address ends the walk and is the answer: a trusted
// proxy wrote it, and it still tells clients apart.
func (f forwarding) client(h http.Header, peer string) string {
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(v, ",") {
			if hop = strings.TrimSpace(hop); hop != "" {
				hops = append(hops, hop)
			}
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return hops[i]
		}
		if i == 0 || !f.trusts(a) {
			return a.String()
		}
	}
	if a, ok := parseHop(h.Get("X-Real-Ip")); ok {
		return a.String()
	}
	return peer
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// withoutUpgrade returns r without a protocol upgrade (RFC 9110 §7.8),
// unless it is a WebSocket upgrade and those pass. An upstream that answers
// 101 gets a raw tunnel past every rule of this proxy: Upgrade: h2c is the
// known way to smuggle requests through one (there is no h2c upgrade
// upstream anyway: the transport speaks HTTP/2 only over TLS).
func withoutUpgrade(r *http.Request, passWebSockets bool) *http.Request {
	h := r.Header
	if len(h["Upgrade"]) == 0 && len(h["Http2-Settings"]) == 0 {
		return r
	}
	if passWebSockets && isWebSocketUpgrade(h) {
		return r
	}
	r = r.Clone(r.Context())
	r.Header.Del("Upgrade")
	r.Header.Del("Http2-Settings")
	var keep []string
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok != "" && !strings.EqualFold(tok, "Upgrade") && !strings.EqualFold(tok, "HTTP2-Settings") {
				keep = append(keep, tok)
			}
		}
	}
	r.Header.Del("Connection")
	if len(keep) > 0 {
		r.Header.Set("Connection", strings.Join(keep, ", "))
	}
	return r
}

// isWebSocketUpgrade reports whether h asks for exactly one upgrade, to
// WebSocket (RFC 6455 §4.1).
func isWebSocketUpgrade(h http.Header) bool {
	up := h.Values("Upgrade")
	return len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket") &&
		httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade")
}
