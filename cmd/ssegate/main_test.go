package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssegate/ssegate/certs"
	"github.com/ssegate/ssegate/internal/legacyapi"
)

// TestMain lets a test run the real binary's main as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("SSEGATE_TEST_RUN_MAIN") == "1" {
		os.Unsetenv("SSEGATE_TEST_RUN_MAIN") // not a setting: main would warn about it
		main()
		return
	}
	os.Exit(m.Run())
}

// child runs ssegate's main in a new process with env (and nothing from ours).
func child(t *testing.T, env ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// GORACE: the race detector otherwise sleeps 1s at exit.
	cmd.Env = append([]string{"SSEGATE_TEST_RUN_MAIN=1", "HOME=" + t.TempDir(), "GORACE=atexit_sleep_ms=0"}, env...)
	var out bytes.Buffer
	cmd.Stderr = &out
	cmd.Stdout = &out
	return cmd, &out
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBadConfigurationExitsWithOneLine(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cert, []byte("not a cert"), 0o600)
	os.WriteFile(key, []byte("not a key"), 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ok := []string{"SSEGATE_CERT_DIR=" + dir, "SSEGATE_METRICS_ADDR="}
	expiredDir := t.TempDir()
	if _, _, _, err := certs.EnsureSelfSigned(expiredDir, []string{"localhost"}, time.Now().Add(-2*365*24*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	expired := []string{"SSEGATE_TLS_CERT_FILE=" + filepath.Join(expiredDir, certs.GeneratedCertName), "SSEGATE_TLS_KEY_FILE=" + filepath.Join(expiredDir, certs.GeneratedKeyName)}

	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"missing upstream", nil, "SSEGATE_UPSTREAM_URL: is required"},
		{"relative URL", []string{"SSEGATE_UPSTREAM_URL=/api"}, "SSEGATE_UPSTREAM_URL: must be an absolute"},
		{"only a cert", []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_TLS_CERT_FILE=" + cert}, "SSEGATE_TLS_CERT_FILE: and SSEGATE_TLS_KEY_FILE must be set together"},
		{"unreadable key", []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_TLS_CERT_FILE=" + cert, "SSEGATE_TLS_KEY_FILE=" + filepath.Join(dir, "missing.pem")}, "SSEGATE_TLS_CERT_FILE/SSEGATE_TLS_KEY_FILE"},
		{"unusable pair", []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_TLS_CERT_FILE=" + cert, "SSEGATE_TLS_KEY_FILE=" + key}, "SSEGATE_TLS_CERT_FILE/SSEGATE_TLS_KEY_FILE"},
		{"port in use", []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_LISTEN_ADDR=" + busy.Addr().String()}, "SSEGATE_LISTEN_ADDR: listen tcp " + busy.Addr().String() + ": bind: address already in use"},
		{"metrics port in use", []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_LISTEN_ADDR=127.0.0.1:0", "SSEGATE_METRICS_ADDR=" + busy.Addr().String()}, "SSEGATE_METRICS_ADDR: listen tcp"},
		{"expired pair", append([]string{"SSEGATE_UPSTREAM_URL=http://x"}, expired...), "SSEGATE_TLS_CERT_FILE/SSEGATE_TLS_KEY_FILE: TLS pair"},
		{"expired pair says so", append([]string{"SSEGATE_UPSTREAM_URL=http://x"}, expired...), "certificate has expired: valid until"},
		{"misspelled variable", []string{"SSEGATE_UPSTREAM_ULR=http://x"}, "SSEGATE_UPSTREAM_URL: is required: the absolute http or https URL of the legacy API (or run with -demo); SSEGATE_UPSTREAM_ULR is not a known variable (closest: SSEGATE_UPSTREAM_URL)"},
		{"bad duration", []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_POLL_INTERVAL=5"}, `SSEGATE_POLL_INTERVAL: must be a duration such as 500ms, 2s or 1m, got "5"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, out := child(t, append(append([]string{}, ok...), tt.env...)...)
			cmd.Env = append(cmd.Env, "SSEGATE_LOG_LEVEL=error") // only the fatal line
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("got %v, want a non-zero exit; output:\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tt.want) || !strings.HasPrefix(lines[0], "ssegate: ") {
				t.Errorf("got output %q, want one line \"ssegate: ...%s...\"", out.String(), tt.want)
			}
		})
	}
}

// TestUnknownVariableWarns: a misspelled variable is named at start with
// the closest known one, and its value is never shown.
func TestUnknownVariableWarns(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var out bytes.Buffer
	// The busy port ends the run just after the start-up log.
	code := run(nil, []string{"SSEGATE_UPSTREAM_URL=http://x", "SSEGATE_LISTEN_ADDR=" + busy.Addr().String(),
		"SSEGATE_METRICS_ADDR=", "SSEGATE_CERT_DIR=" + t.TempDir(),
		"SSEGATE_POLL_INTERVL=1s", "SSEGATE_NUDGE_TOKN=0123456789abcdef-secret"}, &out, &out)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (port in use):\n%s", code, &out)
	}
	for _, want := range []string{
		`level=WARN msg="unknown variable ignored" name=SSEGATE_POLL_INTERVL closest=SSEGATE_POLL_INTERVAL`,
		`level=WARN msg="unknown variable ignored" name=SSEGATE_NUDGE_TOKN closest=SSEGATE_NUDGE_TOKEN`,
	} {
		if strings.Count(out.String(), want) != 1 {
			t.Errorf("output lacks, once, %s:\n%s", want, &out)
		}
	}
	if strings.Contains(out.String(), "secret") {
		t.Errorf("a value was logged:\n%s", &out)
	}
}

func TestHelpListsVariables(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"-h"}, nil, &out, &out); code != 0 {
		t.Errorf("-h exited %d, want 0", code)
	}
	for _, v := range []string{"SSEGATE_UPSTREAM_URL", "SSEGATE_POLL_INTERVAL", ":8443", "-demo"} {
		if !strings.Contains(out.String(), v) {
			t.Errorf("-h output lacks %s", v)
		}
	}
}

// TestSIGTERMDrainsInTime: with an event stream and a never-ending
// pass-through response open, SIGTERM ends the process with status 0
// within SHUTDOWN_TIMEOUT, and the event stream ends cleanly.
func TestSIGTERMDrainsInTime(t *testing.T) {
	api := legacyapi.New()
	api.Add("alice", `{"id":1}`)
	endless := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/endless" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-endless
			return
		}
		api.ServeHTTP(w, r)
	}))
	defer up.Close()
	defer close(endless) // runs first: the endless handler returns, then Close

	addr := freePort(t)
	const timeout = 2 * time.Second
	cmd, out := child(t, "SSEGATE_UPSTREAM_URL="+up.URL, "SSEGATE_LISTEN_ADDR="+addr, "SSEGATE_METRICS_ADDR=",
		"SSEGATE_CERT_DIR="+t.TempDir(), "SSEGATE_SHUTDOWN_TIMEOUT="+timeout.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}}

	var stream *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; {
		req, _ := http.NewRequest("GET", "https://"+addr+legacyapi.Path, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer alice")
		resp, err := c.Do(req)
		if err == nil {
			stream = resp
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not come up: %v\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	br := bufio.NewReader(stream.Body)
	if line, err := br.ReadString('\n'); err != nil || line != "retry: 3000\n" {
		t.Fatalf("stream began %q, %v", line, err)
	}
	long, err := c.Get("https://" + addr + "/endless")
	if err != nil {
		t.Fatal(err)
	}
	defer long.Body.Close()

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("exit: %v, want status 0\n%s", err, out)
		}
	case <-time.After(timeout + 20*time.Second): // a hang detector, not a timing threshold
		t.Fatalf("still running long after SHUTDOWN_TIMEOUT\n%s", out)
	}
	t.Logf("exited %v after SIGTERM\n%s", time.Since(start), out)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Errorf("event stream ended with %v, want a clean end", err)
	}
	if bytes.Count(rest, []byte("\n\n")) == 0 && len(rest) > 0 {
		t.Errorf("event stream ended mid-event: %q", rest)
	}
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("no shutdown log:\n%s", out)
	}
	fmt.Fprint(io.Discard, rest)
}
