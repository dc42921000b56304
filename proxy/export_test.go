package proxy

import (
	"net/http"

	"github.com/ssegate/ssegate/stream"
)

// Streamer is the stream answer alone, for tests that drive a hub without
// a whole proxy in front.
type Streamer = streamer

// NewStreamer is newStreamer.
func NewStreamer(h *stream.Hub, o StreamOptions) *Streamer { return newStreamer(h, o) }

// ServeStream answers r with t's stream for the peer of r.
func (s *streamer) ServeStream(w http.ResponseWriter, r *http.Request, t stream.Target) {
	if sub := s.subscribe(w, r, &t, peerIP(r)); sub != nil {
		s.serve(w, r, sub)
	}
}

// WithHTTP2 returns o serving HTTP/2 with c's limits instead of the
// server's own.
func WithHTTP2(o ServerOptions, c *http.HTTP2Config) ServerOptions {
	o.http2 = c
	return o
}

// AcceptsEventStream is acceptsEventStream.
var AcceptsEventStream = acceptsEventStream
