package proxy

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"
)

// Server limits. They bound what one client can hold without cutting
// long-lived streams: there is deliberately no WriteTimeout, which would end
// every event stream after that time (golang/go#16100); stream writes have
// per-write deadlines instead (see stream.Options.WriteTimeout).
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
	// Logger receives the server's own errors (TLS handshakes and the like).
	Logger *slog.Logger
	// HTTP2, when set, replaces the HTTP/2 limits below (tests shorten them).
	HTTP2 *http.HTTP2Config
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
	if opts.HTTP2 != nil {
		srv.HTTP2 = opts.HTTP2
	}
	if opts.Logger != nil {
		// TLS handshake noise from scanners is not an error of ours.
		srv.ErrorLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug)
	}
	return srv
}
