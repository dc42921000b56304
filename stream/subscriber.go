package stream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Subscriber is one client's place in a topic: the events still to write
// (backlog, then the bounded queue) and a done channel the hub closes to end
// the stream.
type Subscriber struct {
	topic   *topic
	backlog []*Event    // written first: resumed events or the snapshot
	queue   chan *Event // live events; full means the client is too slow
	done    chan struct{}
	reason  string  // why done was closed; set before closing
	denial  *Denial // set before done is closed on a denial
}

// maxBatch and maxChunk bound what is gathered into one write and flush:
// a batch of small events costs one flush, and a resume of a long history
// never costs a buffer the size of the history. A larger event is written
// from its shared encoding as it is.
const (
	maxBatch = 64
	maxChunk = 32 << 10
)

// LastEventID returns the client's resume point: the Last-Event-ID header
// (what EventSource sends on reconnect), or the lastEventId query parameter
// for clients that cannot set headers.
func LastEventID(r *http.Request) string {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		return v
	}
	return r.URL.Query().Get("lastEventId")
}

// ServeStream answers r with the event stream of t. The response is 200 with
// a stream, the upstream's denial (401, 403, 404), or 503 with Retry-After
// over a limit (Options.MaxStreams, MaxStreamsPerIP, MaxKeys) or while the
// hub closes. A Last-Event-ID that is unknown, expired, malformed or from another
// process gets a fresh snapshot, never an error.
func (h *Hub) ServeStream(w http.ResponseWriter, r *http.Request, t Target) {
	ip := clientIP(r)
	if err := h.admit(ip); err != nil {
		h.refuse(w, err)
		return
	}
	defer h.release(ip)
	sub, err := h.subscribe(t, LastEventID(r))
	if err != nil {
		h.refuse(w, err)
		return
	}
	defer sub.topic.leave(sub)
	// From here on a stream the hub ends (shutdown, or evicted as slow even
	// before its first byte) still gets 200, its backlog and a clean end:
	// an EventSource gives up for good on any other status, but reconnects
	// after a clean end, with its Last-Event-ID.

	ctx := r.Context()
	select {
	case <-sub.topic.ready:
	case <-sub.done:
	case <-ctx.Done():
		return
	}
	// sub.denial is written before done is closed, and only then may it be
	// read: the topic may be denied while this request passed on ready.
	select {
	case <-sub.done:
		if d := sub.denial; d != nil {
			writeDenial(w, d)
			return
		}
	default:
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx and friends: do not buffer
	w.WriteHeader(http.StatusOK)

	h.metrics.connsActive.Inc()
	h.metrics.connsTotal.Inc()
	defer h.metrics.connsActive.Dec()
	_ = h.write(ctx, w, sub) // a write error means the client left: nothing to do
}

// refuse answers a stream the hub cannot take now. Over a limit that is 503
// with Retry-After (an EventSource does not retry it; the page's code can).
// While the hub closes it is 200 with the retry field and an immediate end,
// so that the EventSource reconnects, to another instance behind the load
// balancer, instead of giving up.
func (h *Hub) refuse(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrClosed) {
		h.metrics.rejected.WithLabelValues("shutdown").Inc()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(h.retry) // ending the stream is the message
		return
	}
	var reason string
	switch {
	case errors.Is(err, ErrTooManyStreams):
		reason = "max_connections"
	case errors.Is(err, ErrTooManyPerIP):
		reason = "max_streams_per_ip"
	case errors.Is(err, ErrTooManyKeys):
		reason = "max_keys"
	}
	h.metrics.rejected.WithLabelValues(reason).Inc()
	w.Header().Set("Retry-After", "5")
	http.Error(w, "ssegate: "+strings.TrimPrefix(err.Error(), "stream: "), http.StatusServiceUnavailable)
}

type clientIPKey struct{}

// WithClientIP returns a copy of ctx that tells ServeStream the client's
// address, for MaxStreamsPerIP: the proxy takes it from the forwarding
// headers of a trusted load balancer.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// clientIP is the address WithClientIP set, else the peer's without its
// port (behind an untrusted load balancer, the balancer).
func clientIP(r *http.Request) string {
	if ip, ok := r.Context().Value(clientIPKey{}).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeDenial(w http.ResponseWriter, d *Denial) {
	for k, vs := range d.Header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(d.Body)))
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.Body) // the response is complete either way
}

// write runs the stream until the client leaves or the hub ends it.
func (h *Hub) write(ctx context.Context, w http.ResponseWriter, sub *Subscriber) error {
	rc := http.NewResponseController(w)
	// A write happens at least once per heartbeat, so a deadline of one
	// heartbeat plus WriteTimeout fires only for a client that stopped
	// reading (flow-control window full): it unblocks the Write, and the
	// stream ends instead of holding a goroutine for ever. On HTTP/2 each
	// SetWriteDeadline is a message to the connection's goroutine and a
	// timer reset, so it is re-armed only once half of WriteTimeout has
	// passed: every write still has at least Heartbeat + WriteTimeout/2.
	slack := h.opts.Heartbeat + h.opts.WriteTimeout
	var armed time.Time
	flush := func(buf []byte) error {
		if now := time.Now(); now.Sub(armed) > h.opts.WriteTimeout/2 {
			if err := rc.SetWriteDeadline(now.Add(slack)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			armed = now
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
		return rc.Flush()
	}

	// The retry field and the backlog (a snapshot, or the events missed),
	// in chunks of at most maxChunk unless one event is larger.
	var buf []byte
	pending, copied := h.retry, false // pending may alias a shared encoding
	for _, e := range sub.backlog {
		if len(pending)+len(e.wire) > maxChunk {
			if err := flush(pending); err != nil {
				return err
			}
			pending, copied = nil, false
		}
		switch {
		case len(pending) == 0:
			pending = e.wire // no copy while it stays alone
		case !copied:
			buf = append(append(buf[:0], pending...), e.wire...)
			pending, copied = buf, true
		default:
			buf = append(buf, e.wire...)
			pending = buf
		}
	}
	if err := flush(pending); err != nil {
		return err
	}
	h.metrics.delivered.Add(float64(len(sub.backlog)))
	sub.backlog = nil

	hb := time.NewTicker(h.opts.Heartbeat)
	defer hb.Stop()
	var expired <-chan time.Time // nil: never
	if d := h.opts.MaxDuration; d > 0 {
		t := time.NewTimer(d - d/10 + rand.N(d/5+1))
		defer t.Stop()
		expired = t.C
	}
	for {
		select {
		case <-expired:
			return nil // a clean end: the client reconnects and resumes
		case e := <-sub.queue:
			// Gather what is already queued into one write and one flush.
			n := 1
			if len(sub.queue) == 0 || len(e.wire) >= maxChunk {
				if err := flush(e.wire); err != nil {
					return err
				}
			} else {
				buf = append(buf[:0], e.wire...)
				for ; n < maxBatch && len(sub.queue) > 0 && len(buf) < maxChunk; n++ {
					buf = append(buf, (<-sub.queue).wire...)
				}
				if err := flush(buf); err != nil {
					return err
				}
			}
			h.metrics.delivered.Add(float64(n))
		case <-hb.C:
			if err := flush(heartbeat); err != nil {
				return err
			}
		case <-sub.done:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
