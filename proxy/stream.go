package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// WriteTimeout bounds one blocked write to a client (a client that stopped
	// reading): the stream is cut between WriteTimeout and 1.25 × WriteTimeout
	// after the write began.
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

// The values of a stream's response headers, shared by every stream instead
// of a slice each (Header.Set allocates one per call): net/http copies the
// header when it writes it and never writes into these slices, and nothing
// here does. Their capacity is their length, so an Add appends to a copy.
var (
	eventStreamType = []string{"text/event-stream"}
	noCache         = []string{"no-cache"}
	noBuffering     = []string{"no"}
)

// maxChunk bounds what is gathered into one write and flush: a batch of
// small events costs one flush, and a resume of a long history never costs
// a buffer the size of the history. A larger event is written from its
// shared encoding as it is. keepChunk is the most a stream keeps between
// batches: a burst's buffer is released once written.
const (
	maxChunk  = 32 << 10
	keepChunk = 4 << 10
)

// streamer answers event-stream requests from a hub.
type streamer struct {
	hub   *stream.Hub
	opts  StreamOptions
	retry []byte // the encoded retry field every stream starts with
	beats *wheel // every stream's heartbeat clock
}

func newStreamer(hub *stream.Hub, opts StreamOptions) *streamer {
	opts.setDefaults()
	return &streamer{hub: hub, opts: opts, retry: stream.AppendRetry(nil, opts.Retry.Milliseconds()), beats: newWheel(opts.Heartbeat, opts.WriteTimeout)}
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

// serve answers r with the event stream of sub, which it closes. The
// response is 200 with a stream, or the upstream's denial (401, 403, 404).
//
// serve stays small, and start returns before the stream writes or waits:
// a stream spends its life parked under serve and run, and its deepest
// call is the first flush, so every frame on the way is kept small enough
// for its stack to stay at the 4 KB the stock server's handlers have.
func (s *streamer) serve(w http.ResponseWriter, r *http.Request, sub *stream.Subscription) {
	defer sub.Close()
	if !s.start(w, r, sub) {
		return
	}
	out := &sink{w: w, rc: http.NewResponseController(w)}
	slot := s.beats.join(out)
	defer s.beats.leave(out)
	// The retry field and the backlog (a snapshot, or the events missed).
	backlog := sub.Start()
	if err := out.send(s.retry, backlog); err != nil {
		return // the client left
	}
	out.buf = nil // gathered the retry field and the backlog: an idle stream keeps no buffer
	sub.Delivered(len(backlog))
	// A write error means the client left: nothing to do.
	if err := s.run(r.Context(), out, sub, slot); err == nil && r.ProtoMajor == 1 {
		out.ending(s.opts.WriteTimeout)
	}
}

// start waits for the key's first outcome and answers the request's head:
// 200 for a stream, or the denial. It reports whether the stream goes on.
func (s *streamer) start(w http.ResponseWriter, r *http.Request, sub *stream.Subscription) bool {
	// From here on a stream the hub ends (shutdown, or evicted as slow even
	// before its first byte) still gets 200, its backlog and a clean end:
	// an EventSource gives up for good on any other status, but reconnects
	// after a clean end, with its Last-Event-ID.
	select {
	case <-sub.Ready():
	case <-sub.Done():
	case <-r.Context().Done():
		return false
	}
	// The key may be denied while this request passed on Ready.
	if d := sub.Denial(); d != nil {
		writeDenial(w, d)
		return false
	}
	hdr := w.Header()
	hdr["Content-Type"] = eventStreamType
	hdr["Cache-Control"] = noCache
	hdr["X-Accel-Buffering"] = noBuffering // nginx and friends: do not buffer
	w.WriteHeader(http.StatusOK)
	return true
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

// subscribe subscribes r to t for the client at ip, or answers the refusal
// (503 over a limit; 200 and an immediate end while the hub closes) and
// returns nil.
func (s *streamer) subscribe(w http.ResponseWriter, r *http.Request, t *stream.Target, ip string) *stream.Subscription {
	sub, err := s.hub.Subscribe(*t, lastEventID(r), ip)
	if err != nil {
		s.refuse(w, err)
		return nil
	}
	return sub
}

// sink writes a stream's bytes. A write that a client does not take (it
// stopped reading, its flow-control window is full) would block its
// handler for ever: the streamer's wheel cuts it after WriteTimeout
// (wheel.turn, sink.cut), rather than a write deadline per stream, which
// on HTTP/2 costs a timer each and a message to the connection's
// goroutine whenever it is moved.
type sink struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte // gathers small events; never past maxChunk

	since atomic.Int64  // when the write in progress began (UnixNano); 0: none
	stuck time.Duration // a write in progress this long is cut; 0: the wheel's

	mu   sync.Mutex // orders a cut after the handler's leave
	left bool       // the handler is leaving: rc may not be used by a cut

	prev, next *sink // in the wheel's list; guarded by the wheel's mu
}

// flush writes b and flushes it.
func (o *sink) flush(b []byte) error {
	o.since.Store(time.Now().UnixNano())
	_, err := o.w.Write(b)
	if err == nil {
		if err = o.rc.Flush(); err != nil {
			err = fmt.Errorf("flushing: %w", err)
		}
	} else {
		err = fmt.Errorf("writing: %w", err)
	}
	o.since.Store(0)
	return err
}

// ending bounds the writes net/http makes after an HTTP/1 stream's handler
// returns (the last chunk), which the wheel no longer watches: to a client
// that stopped reading they would block the connection's goroutine for
// ever. net/http clears the deadline once the response is finished. On
// HTTP/2 nothing is left but END_STREAM, an empty DATA frame that no
// flow-control window holds back, and a connection that takes no bytes at
// all is closed by its WriteByteTimeout.
func (o *sink) ending(d time.Duration) {
	_ = o.rc.SetWriteDeadline(time.Now().Add(d))
}

// send writes prefix and evs, gathering them into writes of at most
// maxChunk unless one event is larger, which is written from its shared
// encoding.
func (o *sink) send(prefix []byte, evs []*stream.Event) error {
	pending, copied := prefix, false // pending may alias a shared encoding
	for _, e := range evs {
		wire := e.Wire()
		if len(pending) > 0 && len(pending)+len(wire) > maxChunk {
			if err := o.flush(pending); err != nil {
				return err
			}
			pending, copied = nil, false
		}
		switch {
		case len(pending) == 0:
			pending = wire // no copy while it stays alone
		case !copied:
			o.buf = append(append(o.buf[:0], pending...), wire...)
			pending, copied = o.buf, true
		default:
			o.buf = append(o.buf, wire...)
			pending = o.buf
		}
	}
	var err error
	if len(pending) > 0 {
		err = o.flush(pending)
	}
	if cap(o.buf) > keepChunk {
		o.buf = nil
	}
	return err
}

// run writes the live events and heartbeats until the client leaves or
// the hub ends the stream.
func (s *streamer) run(ctx context.Context, out *sink, sub *stream.Subscription, slot int) error {
	beat := s.beats.beat(slot)
	var expired <-chan time.Time // nil: never
	if d := s.opts.MaxDuration; d > 0 {
		t := time.NewTimer(d - d/10 + rand.N(d/5+1))
		defer t.Stop()
		expired = t.C
	}
	var evs []*stream.Event
	for {
		select {
		case <-sub.Wake():
			if evs = sub.Take(evs); len(evs) == 0 {
				continue // an earlier Take got them
			}
			if err := out.send(nil, evs); err != nil {
				return err
			}
			sub.Delivered(len(evs))
			clear(evs) // an idle stream keeps no event alive
		case <-beat:
			beat = s.beats.beat(slot)
			if err := out.flush(heartbeat); err != nil {
				return err
			}
		case <-expired:
			return nil // a clean end: the client reconnects and resumes
		case <-sub.Done():
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}
