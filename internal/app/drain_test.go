package app_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestDrainEndsStreamsCleanly speaks raw HTTP/2 frames (RFC 9113) to see
// what a client sees of a drain: the open event stream ends with
// END_STREAM after a whole event (§8.1), never RST_STREAM, and the
// connection gets GOAWAY (§6.8).
func TestDrainEndsStreamsCleanly(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL)

	conn, fr := openRawStream(t, g, "Bearer alice")
	defer conn.Close()
	var body bytes.Buffer
	stopped := false
	var endStream, goAway bool
	for !(endStream && goAway) {
		f, err := fr.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				break
			}
			t.Fatalf("reading frames: %v (body so far %q)", err, body.String())
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.DataFrame:
			body.Write(f.Data())
			if len(f.Data()) > 0 {
				fr.WriteWindowUpdate(0, uint32(len(f.Data())))
				fr.WriteWindowUpdate(1, uint32(len(f.Data())))
			}
			if f.StreamEnded() {
				endStream = true
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("got RST_STREAM (%v) on stream %d, want a clean END_STREAM", f.ErrCode, f.StreamID)
		case *http2.GoAwayFrame:
			goAway = true
			if f.ErrCode != http2.ErrCodeNo {
				t.Errorf("GOAWAY with %v, want NO_ERROR", f.ErrCode)
			}
		}
		if !stopped && strings.Contains(body.String(), "event: snapshot") {
			stopped = true
			go g.stop() // SIGTERM, as far as Run is concerned
		}
	}
	if !endStream {
		t.Errorf("the event stream did not end with END_STREAM; got %q", body.String())
	}
	if !goAway {
		t.Error("no GOAWAY before the connection closed")
	}
	if !strings.HasSuffix(body.String(), "\n\n") {
		t.Errorf("stream ended mid-event: %q", body.String())
	}
}

// openRawStream opens an HTTP/2 connection to the gateway at the frame
// level and sends one event-stream request on stream 1; settings are the
// client's SETTINGS.
func openRawStream(t *testing.T, g *gateway, auth string, settings ...http2.Setting) (*tls.Conn, *http2.Framer) {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(g.base, "https://"), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN negotiated %q, want h2", p)
	}
	conn.SetDeadline(time.Now().Add(2 * failAfter))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{
		{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/api/notifications"},
		{"accept", "text/event-stream"}, {"authorization", auth},
	} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return conn, fr
}

// TestRestartResyncsWithSnapshot: after a restart, a client that reconnects
// with an id from the old process gets a fresh snapshot of the current
// state, never a resume against a history it does not share.
func TestRestartResyncsWithSnapshot(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	old := startGateway(t, up.URL)
	s := subscribe(t, old.client(t), old.base+"/api/notifications", "Bearer alice", "")
	up.Add("alice", `{"id":2}`)
	s.expect(t, "snapshot", has(`"id":1`))
	last := s.expect(t, "created", has(`"id":2`)).ID
	old.stop()

	up.Add("alice", `{"id":3}`) // while no gateway ran
	fresh := startGateway(t, up.URL)
	back := subscribe(t, fresh.client(t), fresh.base+"/api/notifications", "Bearer alice", last)
	back.expect(t, "snapshot", func(d string) bool {
		return strings.Contains(d, `"id":1`) && strings.Contains(d, `"id":2`) && strings.Contains(d, `"id":3`)
	})
}
