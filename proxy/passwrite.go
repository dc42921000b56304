package proxy

import (
	"net/http"
	"time"
)

// passWriteTimeout bounds one write of a pass-through response that the
// client does not take (it stopped reading: its HTTP/2 window or its socket
// buffer is full). Without it such a client holds the handler, and an
// upstream connection with it, for as long as it likes: the server has no
// WriteTimeout (it would cut streams), and HTTP/2's WriteByteTimeout sees
// only a connection that takes no bytes at all, not one stream of it. A
// slow client is not cut: only a single write that makes no progress for
// this long, which at the 32 KiB that httputil.ReverseProxy writes at once
// is under 550 bytes a second.
const passWriteTimeout = 60 * time.Second

// passWriter is a pass-through response's writer, whose writes in progress
// the streamer's wheel watches (see wheel.turn). It unwraps to the
// original writer for http.ResponseController (hijacking a WebSocket
// upgrade, deadlines).
type passWriter struct {
	http.ResponseWriter
	o *sink
}

func (w passWriter) Write(p []byte) (int, error) {
	w.o.since.Store(time.Now().UnixNano())
	n, err := w.ResponseWriter.Write(p)
	w.o.since.Store(0)
	return n, err
}

// FlushError flushes, watched as a write: flushing is where HTTP/2 waits
// for the client's window.
func (w passWriter) FlushError() error {
	w.o.since.Store(time.Now().UnixNano())
	err := w.o.rc.Flush()
	w.o.since.Store(0)
	return err
}

func (w passWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// passThroughWatched serves r from the upstream with its writes watched.
func (p *Proxy) passThroughWatched(w http.ResponseWriter, r *http.Request) {
	o := &sink{w: w, rc: http.NewResponseController(w), stuck: p.passWriteTimeout}
	p.streams.beats.join(o)
	defer p.streams.beats.leave(o)
	p.passThrough.ServeHTTP(passWriter{w, o}, r)
}
