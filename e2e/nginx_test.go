package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssegate/ssegate/certs"
	"github.com/ssegate/ssegate/internal/app"
	"github.com/ssegate/ssegate/internal/apptest"
	"github.com/ssegate/ssegate/internal/legacyapi"
)

// nginxPath finds nginx. Without it the test is skipped, unless
// SSEGATE_NGINX_REQUIRE=1 turns that into a failure.
func nginxPath(t *testing.T) string {
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if os.Getenv("SSEGATE_NGINX_REQUIRE") == "1" {
		t.Fatal("no nginx in PATH and SSEGATE_NGINX_REQUIRE=1")
	}
	t.Skip("no nginx in PATH: install it (apt-get install nginx) to test deploy/nginx/ssegate.conf")
	return ""
}

// h2cGateway is an in-process gateway behind a TLS-ending proxy.
type h2cGateway struct {
	addr string
	stop func()
}

func startH2CGateway(t *testing.T, upstream string, env ...string) *h2cGateway {
	t.Helper()
	cfg := apptest.Config(t, append([]string{
		"SSEGATE_UPSTREAM_URL=" + upstream,
		"SSEGATE_H2C=true",
		"SSEGATE_LISTEN_ADDR=127.0.0.1:0",
		"SSEGATE_METRICS_ADDR=",
		"SSEGATE_SHUTDOWN_TIMEOUT=5s",
	}, env...)...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Listening, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cfg, app.Options{OnReady: func(l app.Listening) { ready <- l }})
	}()
	g := &h2cGateway{}
	select {
	case l := <-ready:
		g.addr = l.Main.String()
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	}
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway %s: %v", g.addr, err)
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

// nginxSetting is one line of deploy/nginx/ssegate.conf and what the test
// puts in its place: the shipped file is run as it is otherwise.
type nginxSetting struct{ shipped, test string }

// startNginx runs deploy/nginx/ssegate.conf in front of the gateways, as
// any user: its prefix, pid file, logs and temp paths are in a temporary
// directory, and it listens on a loopback port. It returns the base URL and
// the CA pool that trusts nginx's certificate.
func startNginx(t *testing.T, bin string, gateways []*h2cGateway, readTimeout time.Duration) (string, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// nginx started as root runs its workers as nobody: let them in.
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, _, err := certs.EnsureSelfSigned(dir, []string{"127.0.0.1"}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, certs.GeneratedCertName), filepath.Join(dir, certs.GeneratedKeyName)
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)

	shipped, err := os.ReadFile(filepath.Join("..", "deploy", "nginx", "ssegate.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; ; try++ {
		port := freePort(t)
		site := string(shipped)
		for _, s := range []nginxSetting{
			{"server 127.0.0.1:8081 ", "server " + gateways[0].addr + " "},
			{"server 127.0.0.1:8082 ", "server " + gateways[1].addr + " "},
			{"listen 443 ssl http2;", "listen 127.0.0.1:" + port + " ssl http2;"},
			{"listen [::]:443 ssl http2;", ""},
			{"/etc/ssl/certs/api.example.com.pem", certPath},
			{"/etc/ssl/private/api.example.com.key", keyPath},
			{"proxy_read_timeout 60s;", fmt.Sprintf("proxy_read_timeout %ds;", int(readTimeout.Seconds()))},
		} {
			if n := strings.Count(site, s.shipped); n != 1 {
				t.Fatalf("deploy/nginx/ssegate.conf has %q %d times, want once: update this test with the file", s.shipped, n)
			}
			site = strings.Replace(site, s.shipped, s.test, 1)
		}
		main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/ssegate.conf;
}
`, dir)
		if err := os.WriteFile(filepath.Join(dir, "ssegate.conf"), []byte(site), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		errorLog := func() string {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return stderr.String() + string(b)
		}
		if up := waitListening(t, "127.0.0.1:"+port, exited); up {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown; open streams are cut
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("nginx error log:\n%s", errorLog())
				}
			})
			return "https://127.0.0.1:" + port, pool
		}
		log := errorLog()
		if strings.Contains(log, "Address already in use") && try < 3 {
			continue // the free port was taken meanwhile
		}
		t.Fatalf("nginx did not start:\n%s", log)
	}
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// waitListening reports whether addr accepts connections before the
// process exits; the time limit only turns a hang into a failure.
func waitListening(t *testing.T, addr string, exited <-chan error) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx not listening on %s after 20s", addr)
	return false
}

// rawEvent is a dispatched event, or a heartbeat (Type ":"), with the time
// it arrived.
type rawEvent struct {
	Type, Data string
	At         time.Time
}

// readStream reads an event stream line by line, keeping the heartbeats
// that an EventSource (and internal/sse) skip: they are what keeps nginx's
// read timeout from firing. The channel is closed when the stream ends.
func readStream(body io.Reader) <-chan rawEvent {
	out := make(chan rawEvent, 1024)
	go func() {
		defer close(out)
		r := bufio.NewReader(body)
		var typ, data string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, ":"):
				out <- rawEvent{Type: ":", At: time.Now()}
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && data != "":
				out <- rawEvent{Type: typ, Data: data, At: time.Now()}
				typ, data = "", ""
			}
		}
	}()
	return out
}

// TestBehindNginx runs deploy/nginx/ssegate.conf in front of two gateways
// with a 1s heartbeat and a 2s proxy_read_timeout: streams and pass-through
// go over HTTP/2, heartbeats and events come through one by one (nothing
// buffered), a quiet stream outlives the read timeout, and with one replica
// stopped new streams go to the other; with both stopped nginx answers 502.
func TestBehindNginx(t *testing.T) {
	bin := nginxPath(t)
	api := legacyapi.New()
	api.Add("alice", `{"id":1}`)
	up := httptest.NewServer(api)
	defer up.Close()
	const heartbeat, readTimeout = time.Second, 2 * time.Second
	env := []string{
		"SSEGATE_HEARTBEAT_INTERVAL=" + heartbeat.String(),
		"SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=100ms", "SSEGATE_LEGACY_INTERVAL=0",
	}
	gateways := []*h2cGateway{startH2CGateway(t, up.URL, env...), startH2CGateway(t, up.URL, env...)}
	base, pool := startNginx(t, bin, gateways, readTimeout)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := base + legacyapi.Path

	// An HTTP/1.1 client too: nginx flushes HTTP/2 and HTTP/1.1 answers
	// differently, and only HTTP/1.1 shows a buffered stream.
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	defer h1.CloseIdleConnections()
	doGet := func(t *testing.T, c *http.Client, accept string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", accept)
		req.Header.Set("Authorization", "Bearer alice")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	get := func(t *testing.T, accept string) *http.Response { t.Helper(); return doGet(t, c, accept) }
	// next returns the next event (or heartbeat) of typ; the time limit
	// only turns a hang into a failure.
	next := func(t *testing.T, events <-chan rawEvent, typ string) rawEvent {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("stream ended, want a %q", typ)
				}
				if ev.Type == typ {
					return ev
				}
			case <-deadline:
				t.Fatalf("no %q through nginx in 20s: is it buffering?", typ)
			}
		}
	}
	openStreamWith := func(t *testing.T, c *http.Client, proto int) <-chan rawEvent {
		t.Helper()
		resp := doGet(t, c, "text/event-stream")
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != proto || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream through nginx: %d %s %q, want 200 over HTTP/%d with text/event-stream", resp.StatusCode, resp.Proto, resp.Header.Get("Content-Type"), proto)
		}
		events := readStream(resp.Body)
		next(t, events, "snapshot")
		return events
	}
	openStream := func(t *testing.T) <-chan rawEvent { t.Helper(); return openStreamWith(t, c, 2) }

	t.Run("pass-through over HTTP/2", func(t *testing.T) {
		resp := get(t, "application/json")
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || !strings.Contains(string(body), `"id":1`) {
			t.Errorf("got %d %s %q, want 200 over HTTP/2 with alice's list", resp.StatusCode, resp.Proto, body)
		}
	})

	t.Run("stream outlives proxy_read_timeout; events unbuffered", func(t *testing.T) {
		events := openStream(t)
		// Hold the stream for three read timeouts: without heartbeats
		// nginx would cut it after one.
		hold := time.After(3 * readTimeout)
		beats := 0
	holding:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("nginx ended the stream after %d heartbeats, within %v", beats, 3*readTimeout)
				}
				if ev.Type == ":" {
					beats++
				}
			case <-hold:
				break holding
			}
		}
		// One heartbeat a second: buffered, they would arrive in one lump
		// at the end, or never.
		if beats < 3 {
			t.Errorf("%d heartbeats in %v through nginx, want about %d: is nginx buffering?", beats, 3*readTimeout, int(3*readTimeout/heartbeat))
		}

		api.Add("alice", `{"id":2}`)
		changed := time.Now()
		latency := next(t, events, "created").At.Sub(changed)
		t.Logf("created event through nginx %v after the change (poll interval 100ms)", latency.Round(time.Millisecond))
		// Generous: nginx holding an event back would hold it until its
		// buffer fills or the stream ends.
		if latency > readTimeout {
			t.Errorf("created event arrived %v after the change, want well under %v", latency, readTimeout)
		}
	})

	t.Run("HTTP/1.1 stream unbuffered", func(t *testing.T) {
		events := openStreamWith(t, h1, 1)
		next(t, events, ":")
		api.Add("alice", `{"id":3}`)
		next(t, events, "created")
	})

	t.Run("one replica stopped: streams go to the other", func(t *testing.T) {
		gateways[0].stop()
		for i := range 4 { // round robin would pick the stopped one every other time
			events := openStream(t)
			api.Add("alice", `{"id":`+strconv.Itoa(10+i)+`}`)
			next(t, events, "created")
		}
		resp := get(t, "application/json")
		if resp.StatusCode != http.StatusOK {
			t.Errorf("pass-through with one replica: %d, want 200", resp.StatusCode)
		}
	})

	t.Run("no replica: 502, and EventSource gives up", func(t *testing.T) {
		gateways[1].stop()
		resp := get(t, "text/event-stream")
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("stream with no replica: %d, want nginx's 502", resp.StatusCode)
		}
	})
}
