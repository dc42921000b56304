package proxy

import (
	"errors"
	"net/http"
	"strings"
)

// corsAllowHeaders are the request headers a stream's preflight may ask
// for, lower case: Last-Event-ID and Cache-Control, which EventSource
// polyfills set (an EventSource itself sends a simple request), Accept, and
// Authorization for pages that send a bearer token through a polyfill. A
// preflight asking for anything else is not a stream's: it passes through.
var corsAllowHeaders = map[string]bool{
	"last-event-id": true,
	"cache-control": true,
	"accept":        true,
	"authorization": true,
}

// corsMaxAge is how long, in seconds, a browser may cache a preflight's
// answer (Chromium caps it at 7200): a polyfill that reconnects every few
// seconds does not preflight each time.
const corsMaxAge = "600"

// cors answers cross-origin event streams (Fetch standard, §3.2 "CORS
// protocol"). It touches stream answers and their preflights only:
// pass-through answers keep the upstream's own CORS headers, untouched.
type cors struct {
	any     bool                // "*": any origin, without credentials
	origins map[string]struct{} // serialized origins, compared byte for byte
}

// newCORS returns nil when origins is empty: no cross-origin streams.
// config.Validate explains a bad origin to the operator; here the list only
// has to be usable.
func newCORS(origins []string) (*cors, error) {
	if len(origins) == 0 {
		return nil, nil
	}
	c := &cors{origins: make(map[string]struct{}, len(origins))}
	for _, o := range origins {
		switch {
		case o == "*" && len(origins) == 1:
			c.any = true
		case o == "*", o == "", o == "null":
			return nil, errors.New(`proxy: CORS origins are "*" alone or a list of origins`)
		}
		c.origins[o] = struct{}{}
	}
	return c, nil
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin, or
// "" when origin may not read the answer.
func (c *cors) allowOrigin(origin string) string {
	switch {
	case origin == "":
		return "" // same origin, or not a browser
	case c.any:
		return "*"
	}
	if _, ok := c.origins[origin]; ok {
		return origin
	}
	return ""
}

// setHeaders adds the CORS headers of a stream's answer to h, before the hub
// writes it, so that every answer a page's script may need to see carries
// them: the stream, and the denials (401, 403, 404, 410) and 503s. A nil c
// adds nothing.
func (c *cors) setHeaders(h http.Header, r *http.Request) {
	if c == nil {
		return
	}
	if !c.any {
		h.Add("Vary", "Origin") // the answer differs by origin: caches must know
	}
	allow := c.allowOrigin(r.Header.Get("Origin"))
	if allow == "" {
		return // the browser hides the answer from the page
	}
	h.Set("Access-Control-Allow-Origin", allow)
	if !c.any {
		// "*" cannot carry credentials (Fetch §3.2.5); an origin of the
		// list may send its cookies, which pick the user's stream.
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// servePreflight answers the preflight of a cross-origin stream from an
// allowed origin and reports whether it did; any other OPTIONS request
// passes through, so the upstream's own CORS policy answers it.
func (p *Proxy) servePreflight(w http.ResponseWriter, r *http.Request) bool {
	c := p.cors
	if c == nil || r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") != http.MethodGet {
		return false
	}
	allow := c.allowOrigin(r.Header.Get("Origin"))
	if allow == "" {
		return false
	}
	var asked []string
	for _, v := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if !corsAllowHeaders[name] {
				return false
			}
			asked = append(asked, name)
		}
	}
	if _, pattern := p.streamPaths.Handler(r); pattern == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Origin", allow)
	if !c.any {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	h.Set("Access-Control-Allow-Methods", http.MethodGet)
	if len(asked) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(asked, ", "))
	}
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}
