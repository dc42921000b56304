package proxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
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
	srv := proxy.NewServer(http.NotFoundHandler(), proxy.ServerOptions{
		TLS:   certs.TLSConfig(certs.Static{Cert: cert}.GetCertificate),
		HTTP2: &http.HTTP2Config{SendPingTimeout: 200 * time.Millisecond, PingTimeout: 200 * time.Millisecond},
	})
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
