package proxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"

	"github.com/ssegate/ssegate/certs"
	"github.com/ssegate/ssegate/proxy"
)

func TestServerLimits(t *testing.T) {
	srv := proxy.NewServer(http.NotFoundHandler(), proxy.ServerOptions{})
	if srv.WriteTimeout != 0 {
		t.Errorf("WriteTimeout = %v, want none: it would cut every event stream", srv.WriteTimeout)
	}
	if srv.ReadHeaderTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Errorf("ReadHeaderTimeout %v, MaxHeaderBytes %d: want both set", srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
	h := srv.HTTP2
	if h == nil || h.MaxConcurrentStreams != 250 || h.SendPingTimeout == 0 || h.PingTimeout == 0 || h.WriteByteTimeout == 0 {
		t.Errorf("HTTP2 = %+v: want MaxConcurrentStreams 250 and ping and write-byte timeouts", h)
	}
}

// TestDeadPeerIsDropped: a peer that stops answering PINGs is disconnected
// (RFC 9113 §6.7), so a vanished client does not hold streams for ever.
func TestDeadPeerIsDropped(t *testing.T) {
	cert, _, _, err := certs.EnsureSelfSigned(t.TempDir(), []string{"127.0.0.1"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewServer(http.NotFoundHandler(), proxy.WithHTTP2(
		proxy.ServerOptions{TLS: certs.TLSConfig(certs.Static{Cert: cert}.GetCertificate)},
		&http.HTTP2Config{SendPingTimeout: 200 * time.Millisecond, PingTimeout: 200 * time.Millisecond},
	))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	pinged := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !pinged {
				t.Fatalf("connection ended (%v) before any PING", err)
			}
			return // dropped: what we want
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			pinged = true // and never answered
		case *http2.GoAwayFrame:
			if pinged {
				return
			}
		}
	}
}

// recordLog is a slog.Handler that keeps every record's level and message.
type recordLog struct {
	mu    sync.Mutex
	lines []string // "LEVEL message"
}

func (l *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *recordLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *recordLog) WithGroup(string) slog.Handler            { return l }
func (l *recordLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Level.String()+" "+r.Message)
	return nil
}

// await returns the first line containing s, waiting for the server's
// goroutines to log it.
func (l *recordLog) await(t *testing.T, s string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		for _, line := range l.lines {
			if strings.Contains(line, s) {
				l.mu.Unlock()
				return line
			}
		}
		l.mu.Unlock()
	}
	t.Fatalf("no log line with %q; got %q", s, l.lines)
	return ""
}

// emfileListener fails its first Accept as a process out of descriptors
// does, then waits until closed.
type emfileListener struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
	failed bool
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *emfileListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

// TestServerErrorsAtWarn: the server's own failures (descriptors exhausted, a
// handler's panic) are logged at WARN, seen at the default level; a client
// cutting its TLS handshake short, which anyone can repeat at will, at DEBUG.
func TestServerErrorsAtWarn(t *testing.T) {
	cert, _, _, err := certs.EnsureSelfSigned(t.TempDir(), []string{"127.0.0.1"}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &recordLog{}
	srv := proxy.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), proxy.ServerOptions{
		TLS:    certs.TLSConfig(certs.Static{Cert: cert}.GetCertificate),
		Logger: slog.New(logs),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := c.Get("https://" + ln.Addr().String() + "/"); err == nil {
		resp.Body.Close()
	}
	if line := logs.await(t, "http: panic serving"); !strings.HasPrefix(line, "WARN ") {
		t.Errorf("handler panic logged as %q, want WARN", line)
	}

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close() // before any handshake: "EOF"
	if line := logs.await(t, "http: TLS handshake error"); !strings.HasPrefix(line, "DEBUG ") {
		t.Errorf("client's cut handshake logged as %q, want DEBUG", line)
	}

	synctest.Test(t, func(t *testing.T) {
		srv := proxy.NewServer(http.NotFoundHandler(), proxy.ServerOptions{Logger: slog.New(logs)})
		ln := &emfileListener{closed: make(chan struct{})}
		done := make(chan error)
		go func() { done <- srv.Serve(ln) }()
		synctest.Wait() // Serve has logged the error and sleeps before retrying
		srv.Close()
		<-done
	})
	if line := logs.await(t, "too many open files"); !strings.HasPrefix(line, "WARN ") {
		t.Errorf("accept error logged as %q, want WARN", line)
	}
}
