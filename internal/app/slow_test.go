package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestSlowReaderIsEvicted: a client that stops reading (its HTTP/2 window
// stays full) is evicted and counted as slow, while another client of the
// same key keeps receiving every event. It also checks the HTTP/2 settings
// that bound one connection.
func TestSlowReaderIsEvicted(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":0}`)
	g := startGateway(t, up.URL, "SSEGATE_CLIENT_BUFFER=4", "SSEGATE_HEARTBEAT_INTERVAL=1s")

	// The slow client: a window of 1 KiB that it never opens again.
	conn, fr := openRawStream(t, g, "Bearer alice", http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1024})
	defer conn.Close()
	var maxStreams uint32
	for maxStreams == 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			maxStreams, _ = sf.Value(http2.SettingMaxConcurrentStreams)
			fr.WriteSettingsAck()
		}
	}
	if maxStreams != 250 {
		t.Errorf("server SETTINGS_MAX_CONCURRENT_STREAMS = %d, want 250", maxStreams)
	}

	// A healthy client of the same key.
	fast := subscribe(t, g.client(t), g.base+"/api/notifications", "Bearer alice", "")
	fast.expect(t, "snapshot", has(`"id":0`))

	pad := strings.Repeat("p", 2000)
	for i := 1; i <= 20; i++ {
		up.Add("alice", fmt.Sprintf(`{"id":%d,"pad":%q}`, i, pad))
		fast.expect(t, "created", has(fmt.Sprintf(`"id":%d,`, i)))
	}
	waitFor(t, "the slow client counted as evicted", func() bool {
		return g.metricValue(t, `ssegate_clients_evicted_total{reason="slow"}`) == "1"
	})
	// Its handler is stuck in a Write until the streamer cuts it (10 s to
	// 12.5 s after that write began): then only the fast client is left.
	evicted := time.Now()
	waitFor(t, "the slow client's stream to end", func() bool { return g.metricValue(t, "ssegate_connections_active") == "1" })
	t.Logf("slow stream ended %v after its eviction", time.Since(evicted).Round(time.Second))
	up.Add("alice", `{"id":99}`)
	fast.expect(t, "created", has(`"id":99`))
}

// TestOversizedHeadersRefused: a request whose headers pass the server's
// limit gets 431 and never reaches the upstream.
func TestOversizedHeadersRefused(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL)
	req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set("X-Big", strings.Repeat("b", 100<<10))
	before := up.Polls("alice")
	resp, err := g.client(t).Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("got %d, want 431", resp.StatusCode)
		}
	} // an HTTP/2 client may also see the stream refused outright
	if up.Polls("alice") != before {
		t.Error("an oversized request reached the upstream")
	}
}
