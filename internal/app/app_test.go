package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/certs"
	"github.com/ssegate/ssegate/internal/app"
	"github.com/ssegate/ssegate/internal/apptest"
	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/internal/sse"
)

// gateway runs app.Run on loopback ports until the test ends.
type gateway struct {
	base    string // https://127.0.0.1:port
	metrics string // http://127.0.0.1:port
	certDir string
	stop    func()
}

func startGateway(t *testing.T, upstream string, env ...string) *gateway {
	t.Helper()
	certDir := t.TempDir()
	vars := append([]string{
		"SSEGATE_UPSTREAM_URL=" + upstream,
		"SSEGATE_LISTEN_ADDR=127.0.0.1:0",
		"SSEGATE_METRICS_ADDR=127.0.0.1:0",
		"SSEGATE_CERT_DIR=" + certDir,
		"SSEGATE_POLL_INTERVAL=200ms",
		"SSEGATE_LEGACY_INTERVAL=0", // these tests see changes by polling alone
		"SSEGATE_SHUTDOWN_TIMEOUT=5s",
	}, env...)
	cfg := apptest.Config(t, vars...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{OnReady: func(l app.Listening) { ready <- l }})
	}()
	var l app.Listening
	select {
	case l = <-ready:
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	}
	g := &gateway{base: "https://" + l.Main.String(), metrics: "http://" + l.Metrics.String(), certDir: certDir}
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

// client returns an HTTP/2 client that trusts the gateway's generated
// certificate, as a developer who trusted it once would.
func (g *gateway) client(t *testing.T) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(g.certDir, certs.GeneratedCertName))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// sub is one EventSource-like client reading events in the background.
type sub struct {
	events <-chan sse.Event
	resp   *http.Response
	client *http.Client
}

// upstream is a legacy API on a loopback port.
type upstream struct {
	*legacyapi.API
	URL   string
	Close func()
	// CloseConns closes the connections the gateway keeps open to it.
	CloseConns func()
}

func newUpstream() *upstream {
	api := legacyapi.New()
	srv := httptest.NewServer(api)
	return &upstream{API: api, URL: srv.URL, Close: srv.Close, CloseConns: srv.CloseClientConnections}
}

func subscribe(t *testing.T, c *http.Client, url, auth, lastID string) *sub {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", auth)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("subscribe: got %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	s := &sub{events: sse.Follow(resp.Body, 100), resp: resp}
	t.Cleanup(func() { resp.Body.Close() })
	return s
}

// failAfter bounds a wait so that a broken gateway fails the test instead of
// hanging it; it is not a performance threshold.
const failAfter = 20 * time.Second

func (s *sub) next(t *testing.T) sse.Event {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("stream ended, want another event")
		}
		return ev
	case <-time.After(failAfter):
		t.Fatal("no event, want one")
	}
	return sse.Event{}
}

func (s *sub) expect(t *testing.T, typ string, check func(data string) bool) sse.Event {
	t.Helper()
	ev := s.next(t)
	if ev.Type != typ || !check(ev.Data) {
		t.Fatalf("got %s %s, want a %s event", ev.Type, ev.Data, typ)
	}
	return ev
}

func has(sub string) func(string) bool {
	return func(d string) bool { return strings.Contains(d, sub) }
}

func TestStreamsCoalescePollsIsolateUsersAndResume(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1,"text":"alice one"}`)
	up.Add("bob", `{"id":1,"text":"bob one"}`)
	g := startGateway(t, up.URL)
	url := g.base + "/api/notifications"

	start := time.Now()
	var alices, bobs []*sub
	for i := range 20 {
		c := g.client(t) // every 5 clients share one connection, as tabs do
		if i%5 != 0 {
			c = alices[len(alices)-1].client
		}
		s := subscribe(t, c, url, "Bearer alice", "")
		s.client = c
		alices = append(alices, s)
	}
	for range 5 {
		bobs = append(bobs, subscribe(t, g.client(t), url, "Bearer bob", ""))
	}
	for _, s := range alices {
		s.expect(t, "snapshot", func(d string) bool { return strings.Contains(d, "alice one") && !strings.Contains(d, "bob") })
	}
	for _, s := range bobs {
		s.expect(t, "snapshot", func(d string) bool { return strings.Contains(d, "bob one") && !strings.Contains(d, "alice") })
	}

	up.Add("alice", `{"id":2,"text":"alice two"}`)
	up.Update("alice", `{"id":1,"text":"alice one, edited"}`)
	var lastSeen string
	for i, s := range alices {
		s.expect(t, "created", has(`"alice two"`))
		ev := s.expect(t, "updated", has(`alice one, edited`))
		if i == 0 {
			lastSeen = ev.ID
		}
	}
	up.Delete("bob", "1")
	for _, s := range bobs {
		s.expect(t, "deleted", func(d string) bool { return d == `{"id":1}` })
	}

	// One client drops; two changes happen while it is away.
	alices[0].resp.Body.Close()
	up.Add("alice", `{"id":3,"text":"alice three"}`)
	alices[1].expect(t, "created", has("alice three"))
	up.Delete("alice", "2")
	alices[1].expect(t, "deleted", func(d string) bool { return d == `{"id":2}` })

	// It reconnects with Last-Event-ID and gets exactly the missed events:
	// no snapshot, no duplicate, and then the next live one.
	back := subscribe(t, g.client(t), url, "Bearer alice", lastSeen)
	back.expect(t, "created", has("alice three"))
	back.expect(t, "deleted", func(d string) bool { return d == `{"id":2}` })
	up.Add("alice", `{"id":4,"text":"alice four"}`)
	back.expect(t, "created", has("alice four"))

	// Bob never saw any of alice's events.
	up.Add("bob", `{"id":9,"text":"bob nine"}`)
	for _, s := range bobs {
		s.expect(t, "created", has("bob nine"))
	}

	// One poll per interval per identity, not per client: 20 clients of
	// alice cost what 5 of bob do. Timers fire late, never early, so this
	// bound holds on any machine.
	elapsed := time.Since(start)
	maxPolls := int(elapsed/(180*time.Millisecond)) + 2 // 200ms minus 10% jitter
	for _, who := range []string{"alice", "bob"} {
		if n := up.Polls(who); n > maxPolls || n < 1 {
			t.Errorf("%s: %d upstream polls in %v, want at most %d (one per interval)", who, n, elapsed, maxPolls)
		}
	}
	if n := up.Polls("nobody"); n != 0 {
		t.Errorf("%d polls without identity, want 0", n)
	}
}

func TestAdmissionOutcomes(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL)
	c := g.client(t)

	// Unknown user: the upstream's 401 and body, so EventSource stops.
	req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer nobody")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "unknown user") {
		t.Errorf("got %d %q, want 401 with the upstream's body", resp.StatusCode, body)
	}

	// Upstream down at first: the stream opens and the snapshot comes later.
	up.SetStatus(http.StatusServiceUnavailable)
	s := subscribe(t, c, g.base+"/api/notifications", "Bearer alice", "")
	up.SetStatus(0)
	s.expect(t, "snapshot", has(`"id":1`))

	// Mid-session 401: the stream ends.
	up.Revoke("alice")
	select {
	case _, ok := <-s.events:
		for ok {
			_, ok = <-s.events
		}
	case <-time.After(failAfter):
		t.Fatal("stream still open after the upstream started answering 401")
	}
}

func TestMetricsAndHealth(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL)
	s := subscribe(t, g.client(t), g.base+"/api/notifications", "Bearer alice", "")
	s.next(t)

	get := func(path string) (int, string) {
		resp, err := http.Get(g.metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz: %d, want 200", code)
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d, want 200", code)
	}
	_, m := get("/metrics")
	for _, want := range []string{
		"ssegate_connections_active 1",
		"ssegate_connections_total 1",
		"ssegate_keys_active 1",
		"ssegate_streams_active 1", // the deprecated name, for one release
		`ssegate_build_info{goversion="`,
		`ssegate_upstream_polls_total{outcome="changed"}`,
		"ssegate_upstream_poll_duration_seconds_bucket",
		`ssegate_events_published_total{event="created"}`,
		"ssegate_events_delivered_total",
		`ssegate_clients_evicted_total{reason="slow"} 0`,
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(m, "alice") || strings.Contains(m, "/api/notifications") {
		t.Error("/metrics carries an identity or a path in a label")
	}
}

func TestH2C(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL, "SSEGATE_H2C=true")
	base := strings.Replace(g.base, "https://", "http://", 1)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/notifications", nil)
	req.Header.Set("Authorization", "Bearer alice")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var items []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&items); err != nil || len(items) != 1 {
		t.Errorf("got %d items, %v; want alice's one item", len(items), err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("got %s, want cleartext HTTP/2", resp.Proto)
	}

	// Streams work over h2c too.
	s := subscribe(t, c, base+"/api/notifications", "Bearer alice", "")
	s.expect(t, "snapshot", has(`"id":1`))
}

// TestMaxConnectionsKeepsPassThrough: over the stream cap, streams get 503
// with Retry-After while ordinary requests still pass through.
func TestMaxConnectionsKeepsPassThrough(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL, "SSEGATE_MAX_CONNECTIONS=1")
	c := g.client(t)
	s := subscribe(t, c, g.base+"/api/notifications", "Bearer alice", "")
	s.next(t)

	req, _ := http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer alice")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second stream: got %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	req, _ = http.NewRequest(http.MethodGet, g.base+"/api/notifications", nil)
	req.Header.Set("Authorization", "Bearer alice")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"id":1`) {
		t.Errorf("pass-through at the stream cap: got %d %q, want 200 with the list", resp.StatusCode, body)
	}
}
