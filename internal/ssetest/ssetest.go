// Package ssetest runs an event-stream handler in memory and reads what it
// writes as a network client would, through a pipe. It works inside
// testing/synctest bubbles, where real sockets do not.
package ssetest

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/sse"
)

// Client is one in-memory request to a handler.
type Client struct {
	Raw    *bufio.Reader // what the handler wrote, as bytes
	Events *sse.Reader   // the same, as events
	Header http.Header   // the response header

	w      *writer
	pr     *io.PipeReader
	cancel context.CancelFunc
	ended  chan struct{}
}

// writer is a streaming http.ResponseWriter backed by a pipe.
type writer struct {
	header   http.Header
	mu       sync.Mutex
	status   int
	pw       *io.PipeWriter
	deadline *time.Timer
}

func (w *writer) Header() http.Header { return w.header }

func (w *writer) WriteHeader(code int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.status == 0 {
		w.status = code
	}
}

func (w *writer) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}

func (w *writer) Flush() {}

// SetWriteDeadline fails the write in progress and every later one once
// the deadline passes, as net/http's writers do; the zero time clears it.
func (w *writer) SetWriteDeadline(d time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deadline != nil {
		w.deadline.Stop()
		w.deadline = nil
	}
	if d.IsZero() {
		return nil
	}
	w.deadline = time.AfterFunc(time.Until(d), func() { w.pw.CloseWithError(os.ErrDeadlineExceeded) })
	return nil
}

// Open serves r with h in a new goroutine. A write blocks until the test
// reads it, like a client whose window is full.
func Open(h http.Handler, r *http.Request) *Client {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(r.Context())
	r = r.WithContext(ctx)
	c := &Client{w: &writer{header: http.Header{}, pw: pw}, pr: pr, cancel: cancel, ended: make(chan struct{})}
	c.Header = c.w.header
	c.Raw = bufio.NewReader(pr)
	c.Events = sse.NewReader(c.Raw)
	go func() {
		defer close(c.ended)
		defer pw.Close()
		h.ServeHTTP(c.w, r)
	}()
	return c
}

// Status is the response status, 0 before the handler wrote one.
func (c *Client) Status() int {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.w.status
}

// Next reads the next event.
func (c *Client) Next(t testing.TB) sse.Event {
	t.Helper()
	ev, err := c.Events.Next()
	if err != nil {
		t.Fatalf("reading event: %v", err)
	}
	return ev
}

// Expect reads the next event and fails unless it has type typ and data.
func (c *Client) Expect(t testing.TB, typ, data string) sse.Event {
	t.Helper()
	ev := c.Next(t)
	if ev.Type != typ || ev.Data != data {
		t.Fatalf("got event %q %q, want %q %q", ev.Type, ev.Data, typ, data)
	}
	return ev
}

// Ended is closed when the handler has returned.
func (c *Client) Ended() <-chan struct{} { return c.ended }

// Close disconnects the client and waits for the handler to return.
func (c *Client) Close() {
	c.cancel()
	c.pr.Close()
	<-c.ended
}

// Abandon stops reading without cancelling the request, like a client that
// hangs; the handler returns once its writes fail.
func (c *Client) Abandon() { c.pr.Close() }
