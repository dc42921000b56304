package proxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// stuckConn is a connection whose writes block, once stuck, as a full
// socket buffer does: until its write deadline passes.
type stuckConn struct {
	net.Conn
	mu       sync.Mutex
	stuck    bool
	deadline time.Time
	changed  chan struct{} // closed and replaced when stuck or deadline change
	unstuck  chan error    // a blocked write's outcome
}

func (c *stuckConn) state() (bool, time.Time, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stuck, c.deadline, c.changed
}

func (c *stuckConn) set(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *stuckConn) Write(b []byte) (int, error) {
	for {
		stuck, dl, changed := c.state()
		if !stuck {
			return c.Conn.Write(b)
		}
		if !dl.IsZero() && !time.Now().Before(dl) {
			c.unstuck <- os.ErrDeadlineExceeded
			return 0, os.ErrDeadlineExceeded
		}
		var timeout <-chan time.Time
		if !dl.IsZero() {
			timeout = time.After(time.Until(dl))
		}
		select {
		case <-changed:
		case <-timeout:
		}
	}
}

func (c *stuckConn) SetWriteDeadline(t time.Time) error {
	c.set(func() { c.deadline = t })
	return c.Conn.SetWriteDeadline(t)
}

func (c *stuckConn) SetDeadline(t time.Time) error {
	c.set(func() { c.deadline = t })
	return c.Conn.SetDeadline(t)
}

type stuckListener struct {
	net.Listener
	conns chan *stuckConn
}

func (l *stuckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &stuckConn{Conn: c, changed: make(chan struct{}), unstuck: make(chan error, 1)}
	l.conns <- sc
	return sc, nil
}

// liveSource publishes one body for every key and waits.
type liveSource struct{}

func (liveSource) Run(ctx context.Context, _ stream.Target, p stream.Publisher) {
	p.Publish([]byte(`[0]`), nil)
	<-ctx.Done()
}

// An HTTP/1.1 stream that ends cleanly (here at MaxDuration) while its
// client has stopped reading and the socket buffer is full: net/http's
// end of the response (the last chunk) is a write the client does not
// take either, and WriteTimeout must bound it too, or the connection's
// goroutine waits for the client for ever.
func TestStreamEndBoundedOnHTTP1(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	h, k, _ := newHub(t, liveSource{}, stream.Options{}, proxy.StreamOptions{
		Heartbeat: time.Hour, WriteTimeout: writeTimeout, MaxDuration: time.Second,
	})
	u := &url.URL{Scheme: "http", Host: "upstream", Path: "/n"}
	srv := proxy.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeStream(w, r, k.Target(r.URL.Path, u, r.Header))
	}), proxy.ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := &stuckListener{Listener: ln, conns: make(chan *stuckConn, 1)}
	go srv.Serve(sl)
	defer srv.Close()

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /n HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nAuthorization: alice\r\n\r\n")
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: [0]") {
			break
		}
	}
	sc := <-sl.conns
	sc.set(func() { sc.stuck = true }) // the client stops reading; its buffers are full
	start := time.Now()
	select {
	case <-sc.unstuck:
		t.Logf("the response's end was cut %v after the stuck began", time.Since(start).Round(time.Millisecond))
	case <-time.After(1100*time.Millisecond + 2*writeTimeout):
		t.Fatal("the end of a cleanly ended HTTP/1.1 stream blocks for ever on a client that does not read")
	}
}
