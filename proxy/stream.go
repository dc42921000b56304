package proxy

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ssegate/ssegate/stream"
)

// StreamOptions configure the HTTP side of event streams. Zero fields take
// the defaults of DefaultStreamOptions.
type StreamOptions struct {
	// Retry is sent to clients as the SSE reconnection time.
	Retry time.Duration
	// Heartbeat is the time between comment lines.
	Heartbeat time.Duration
	// WriteTimeout bounds one blocked write to a client, beyond the heartbeat
	// interval (a write happens at least once per heartbeat).
	WriteTimeout time.Duration
	// MaxDuration ends a stream cleanly after this long, ±10% so that
	// streams opened together do not all reconnect together; the client
	// resumes with its Last-Event-ID, on whichever replica the balancer
	// picks. 0: never.
	MaxDuration time.Duration
}

// DefaultStreamOptions are the defaults of StreamOptions.
func DefaultStreamOptions() StreamOptions {
	return StreamOptions{Retry: 3 * time.Second, Heartbeat: 15 * time.Second, WriteTimeout: 10 * time.Second}
}

func (o *StreamOptions) setDefaults() {
	d := DefaultStreamOptions()
	for _, f := range []struct{ v, def *time.Duration }{{&o.Retry, &d.Retry}, {&o.Heartbeat, &d.Heartbeat}, {&o.WriteTimeout, &d.WriteTimeout}} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
}

// lastEventIDParam is the query parameter that carries the resume point for
// clients that cannot set headers; it is not part of the key.
const lastEventIDParam = "lastEventId"

// heartbeat is a comment line: browsers ignore it, proxies see traffic.
var heartbeat = []byte(":\n\n")

// maxBatch and maxChunk bound what is gathered into one write and flush:
// a batch of small events costs one flush, and a resume of a long history
// never costs a buffer the size of the history. A larger event is written
// from its shared encoding as it is.
const (
	maxBatch = 64
	maxChunk = 32 << 10
)

// streamer answers event-stream requests from a hub.
type streamer struct {
	hub   *stream.Hub
	opts  StreamOptions
	retry []byte // the encoded retry field every stream starts with
}

func newStreamer(hub *stream.Hub, opts StreamOptions) *streamer {
	opts.setDefaults()
	return &streamer{hub: hub, opts: opts, retry: stream.AppendRetry(nil, opts.Retry.Milliseconds())}
}

// lastEventID returns the client's resume point: the Last-Event-ID header
// (what EventSource sends on reconnect), or the lastEventId query parameter
// for clients that cannot set headers.
func lastEventID(r *http.Request) string {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		return v
	}
	return r.URL.Query().Get(lastEventIDParam)
}

// peerIP is the peer's address without its port.
func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// serve answers r with the event stream of t for the client at ip. The
// response is 200 with a stream, the upstream's denial (401, 403, 404), or
// 503 with Retry-After over a limit; while the hub closes it is 200 with an
// immediate end (see refuse).
func (s *streamer) serve(w http.ResponseWriter, r *http.Request, t stream.Target, ip string) {
	sub, err := s.hub.Subscribe(t, lastEventID(r), ip)
	if err != nil {
		s.refuse(w, err)
		return
	}
	defer sub.Close()
	// From here on a stream the hub ends (shutdown, or evicted as slow even
	// before its first byte) still gets 200, its backlog and a clean end:
	// an EventSource gives up for good on any other status, but reconnects
	// after a clean end, with its Last-Event-ID.

	ctx := r.Context()
	select {
	case <-sub.Ready():
	case <-sub.Done():
	case <-ctx.Done():
		return
	}
	// The key may be denied while this request passed on Ready.
	if d := sub.Denial(); d != nil {
		writeDenial(w, d)
		return
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx and friends: do not buffer
	w.WriteHeader(http.StatusOK)
	_ = s.write(ctx, w, sub) // a write error means the client left: nothing to do
}

// refuse answers a stream the hub cannot take now. Over a limit that is 503
// with Retry-After (an EventSource does not retry it; the page's code can).
// While the hub closes it is 200 with the retry field and an immediate end,
// so that the EventSource reconnects, to another instance behind the load
// balancer, instead of giving up.
func (s *streamer) refuse(w http.ResponseWriter, err error) {
	if errors.Is(err, stream.ErrClosed) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.retry) // ending the stream is the message
		return
	}
	w.Header().Set("Retry-After", "5")
	http.Error(w, "ssegate: "+strings.TrimPrefix(err.Error(), "stream: "), http.StatusServiceUnavailable)
}

func writeDenial(w http.ResponseWriter, d *stream.Denial) {
	for k, vs := range d.Header {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(d.Body)))
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.Body) // the response is complete either way
}

// write runs the stream until the client leaves or the hub ends it.
func (s *streamer) write(ctx context.Context, w http.ResponseWriter, sub *stream.Subscription) error {
	rc := http.NewResponseController(w)
	// A write happens at least once per heartbeat, so a deadline of one
	// heartbeat plus WriteTimeout fires only for a client that stopped
	// reading (flow-control window full): it unblocks the Write, and the
	// stream ends instead of holding a goroutine for ever. On HTTP/2 each
	// SetWriteDeadline is a message to the connection's goroutine and a
	// timer reset, so it is re-armed only once half of WriteTimeout has
	// passed: every write still has at least Heartbeat + WriteTimeout/2.
	slack := s.opts.Heartbeat + s.opts.WriteTimeout
	var armed time.Time
	flush := func(buf []byte) error {
		if now := time.Now(); now.Sub(armed) > s.opts.WriteTimeout/2 {
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
	backlog := sub.Start()
	var buf []byte
	pending, copied := s.retry, false // pending may alias a shared encoding
	for _, e := range backlog {
		wire := e.Wire()
		if len(pending)+len(wire) > maxChunk {
			if err := flush(pending); err != nil {
				return err
			}
			pending, copied = nil, false
		}
		switch {
		case len(pending) == 0:
			pending = wire // no copy while it stays alone
		case !copied:
			buf = append(append(buf[:0], pending...), wire...)
			pending, copied = buf, true
		default:
			buf = append(buf, wire...)
			pending = buf
		}
	}
	if err := flush(pending); err != nil {
		return err
	}
	sub.Delivered(len(backlog))

	hb := time.NewTicker(s.opts.Heartbeat)
	defer hb.Stop()
	var expired <-chan time.Time // nil: never
	if d := s.opts.MaxDuration; d > 0 {
		t := time.NewTimer(d - d/10 + rand.N(d/5+1))
		defer t.Stop()
		expired = t.C
	}
	queue := sub.Events()
	for {
		select {
		case <-expired:
			return nil // a clean end: the client reconnects and resumes
		case e := <-queue:
			// Gather what is already queued into one write and one flush.
			n := 1
			if len(queue) == 0 || e.Size() >= maxChunk {
				if err := flush(e.Wire()); err != nil {
					return err
				}
			} else {
				// buf never grows past maxChunk: an event that would take it
				// there is written from its own shared bytes after it.
				buf = append(buf[:0], e.Wire()...)
				var large *stream.Event
				for ; n < maxBatch && len(queue) > 0 && large == nil; n++ {
					next := <-queue
					if len(buf)+next.Size() > maxChunk {
						large = next
						continue
					}
					buf = append(buf, next.Wire()...)
				}
				if err := flush(buf); err != nil {
					return err
				}
				if large != nil {
					if err := flush(large.Wire()); err != nil {
						return err
					}
				}
			}
			sub.Delivered(n)
		case <-hb.C:
			if err := flush(heartbeat); err != nil {
				return err
			}
		case <-sub.Done():
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
