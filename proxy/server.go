package proxy

import (
	"context"
	"crypto/tls"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Server limits. They bound what one client can hold without cutting
// long-lived streams: there is deliberately no WriteTimeout, which would end
// every event stream after that time (golang/go#16100); stream writes have
// a bound on each blocked write instead (see StreamOptions.WriteTimeout).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// maxConcurrentStreams per HTTP/2 connection: a browser opens one per
	// tab's EventSource, so 250 (the net/http default) leaves ample room.
	maxConcurrentStreams = 250
	// pingTimeout: an HTTP/2 peer that has sent nothing for sendPingTimeout
	// is pinged and, if silent for pingTimeout more, dropped, so dead
	// clients do not hold streams until the kernel notices.
	sendPingTimeout = 30 * time.Second
	pingTimeout     = 15 * time.Second
	// writeByteTimeout closes a connection that accepts no bytes at all.
	writeByteTimeout = 30 * time.Second
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	// TLS serves HTTPS with HTTP/2 and HTTP/1.1. Nil with H2C false: plain HTTP/1.1.
	TLS *tls.Config
	// H2C serves cleartext HTTP/2 (prior knowledge) beside HTTP/1.1.
	H2C bool
	// Logger receives the server's own errors: at WARN, but per-connection
	// noise (TLS handshakes cut short and the like) at DEBUG.
	Logger *slog.Logger
	// http2, when set, replaces the HTTP/2 limits below (tests shorten
	// them through export_test.go).
	http2 *http.HTTP2Config
}

// NewServer returns the main listener's server, HTTP/2 configured through
// net/http itself (the x/net/http2 server and h2c packages are deprecated).
func NewServer(h http.Handler, opts ServerOptions) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	switch {
	case opts.TLS != nil:
		protos.SetHTTP2(true)
	case opts.H2C:
		protos.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         opts.TLS,
		Protocols:         &protos,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: maxConcurrentStreams,
			SendPingTimeout:      sendPingTimeout,
			PingTimeout:          pingTimeout,
			WriteByteTimeout:     writeByteTimeout,
		},
	}
	if opts.http2 != nil {
		srv.HTTP2 = opts.http2
	}
	if opts.Logger != nil {
		srv.ErrorLog = log.New(serverErrorLog{opts.Logger}, "", 0)
	}
	return srv
}

// serverErrorLog receives http.Server's own log lines. Most are failures an
// operator must see at the default level: "http: Accept error: ... too many
// open files" (descriptors exhausted; net/http retries at most once per
// second, so it cannot flood), "http: panic serving". Lines about one peer's
// connection, which any client or scanner can cause at will (a handshake cut
// short, an HTTP/2 protocol error, a peer that stops answering PINGs), go
// out at DEBUG so they cannot flood the log.
type serverErrorLog struct{ log *slog.Logger }

func (w serverErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	for _, prefix := range []string{
		"http: TLS handshake error from ",
		"http2: server: error reading preface from client ",
		"http2: server connection error from ",
		"http2: received GOAWAY ",
		"timeout waiting for SETTINGS frames from ",
		"timeout waiting for PING response",
	} {
		if strings.HasPrefix(msg, prefix) {
			level = slog.LevelDebug
			break
		}
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}
