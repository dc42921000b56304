package app_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/legacyapi"
)

// faultyUpstream is the legacy API with a switchable fault.
type faultyUpstream struct {
	api  *legacyapi.API
	mu   sync.Mutex
	mode string
}

func (f *faultyUpstream) set(mode string) { f.mu.Lock(); f.mode = mode; f.mu.Unlock() }

func (f *faultyUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	switch mode {
	case "5xx":
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	case "html":
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body>Oops, a proxy error page</body></html>")
	case "large":
		io.WriteString(w, "["+strings.Repeat(`{"id":0},`, 20000)+`{"id":1}]`)
	case "hang":
		<-r.Context().Done()
	case "redirect":
		http.Redirect(w, r, "http://elsewhere.invalid/login", http.StatusFound)
	case "empty":
		io.WriteString(w, "") // a 200 with nothing: never an empty list
	default:
		f.api.ServeHTTP(w, r)
	}
}

// metricValue reads one sample from the gateway's /metrics.
func (g *gateway) metricValue(t *testing.T, sample string) string {
	resp, err := http.Get(g.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// TestUpstreamFaults: during each fault no event reaches the client (a
// failed poll is never taken as an empty list), the stream stays open, the
// outcome is counted, and after recovery the client gets exactly the real
// change, once.
func TestUpstreamFaults(t *testing.T) {
	f := &faultyUpstream{api: legacyapi.New()}
	f.api.Add("alice", `{"id":1}`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: f}}
	srv.Start()
	defer func() { srv.Close() }()

	g := startGateway(t, srv.URL,
		"SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=100ms", "SSEGATE_MAX_BACKOFF=200ms",
		"SSEGATE_POLL_TIMEOUT=300ms", "SSEGATE_MAX_BODY_BYTES=65536")
	s := subscribe(t, g.client(t), g.base+"/api/notifications", "Bearer alice", "")
	s.expect(t, "snapshot", has(`"id":1`))

	next := 2
	for _, tt := range []struct{ mode, outcome string }{
		{"5xx", "http_error"},
		{"html", "invalid_body"},
		{"empty", "invalid_body"},
		{"large", "too_large"},
		{"hang", "timeout"},
		{"redirect", "http_error"},
		{"refused", "unreachable"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			sample := `ssegate_upstream_polls_total{outcome="` + tt.outcome + `"}`
			before := g.metricValue(t, sample)
			if tt.mode == "refused" {
				srv.Close()
			} else {
				f.set(tt.mode)
			}
			// The upstream changes while the gateway cannot see it.
			id := next
			next++
			f.api.Add("alice", `{"id":`+itoa(id)+`}`)
			deadline := time.Now().Add(failAfter)
			for g.metricValue(t, sample) == before {
				if time.Now().After(deadline) {
					t.Fatalf("%s never counted", sample)
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond) // a few more failed polls
			select {
			case ev, ok := <-s.events:
				t.Fatalf("during the fault got %+v (open %v), want nothing", ev, ok)
			default:
			}

			if tt.mode == "refused" {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("listen again on %s: %v", addr, err)
				}
				srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: f}}
				srv.Start()
			}
			f.set("")
			s.expect(t, "created", has(`"id":`+itoa(id)))
			// Exactly that: the next event is the next real change.
			id2 := next
			next++
			f.api.Add("alice", `{"id":`+itoa(id2)+`}`)
			s.expect(t, "created", has(`"id":`+itoa(id2)))
		})
	}

	t.Run("401 mid-session ends the stream", func(t *testing.T) {
		f.api.Revoke("alice")
		for {
			select {
			case ev, ok := <-s.events:
				if !ok {
					return
				}
				t.Fatalf("got %+v after the upstream answered 401, want the stream to end", ev)
			case <-time.After(failAfter):
				t.Fatal("stream still open after 401")
			}
		}
	})
}

// TestUntrustedTLSUpstream: an https upstream whose certificate fails
// verification is unreachable, never trusted; the stream opens and waits.
func TestUntrustedTLSUpstream(t *testing.T) {
	api := legacyapi.New()
	api.Add("alice", `{"id":1}`)
	up := httptest.NewTLSServer(api) // its certificate is not in the system pool
	defer up.Close()
	g := startGateway(t, up.URL)
	s := subscribe(t, g.client(t), g.base+"/api/notifications", "Bearer alice", "")
	sample := `ssegate_upstream_polls_total{outcome="unreachable"}`
	deadline := time.Now().Add(failAfter)
	for g.metricValue(t, sample) == "0" {
		if time.Now().After(deadline) {
			t.Fatal("TLS failure not counted as unreachable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case ev, ok := <-s.events:
		t.Fatalf("got %+v (open %v) from an untrusted upstream, want nothing", ev, ok)
	default:
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
