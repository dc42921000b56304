//go:build unix

// Firefox ESR runs the demo as Chromium does in browser_test.go, driven over
// WebDriver BiDi (Firefox no longer speaks CDP): a second engine's EventSource,
// HTTP/2 and TLS stack, written by other people than Chromium's.
//
// Without a firefox-esr (or firefox) in PATH the test is skipped, unless
// SSEGATE_E2E_REQUIRE=1 (set by .ci/run), which makes it a failure.
package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/internal/logtest"
)

func firefoxPath(t *testing.T) string {
	return browserPath(t, "firefox-esr", "firefox-esr", "firefox")
}

// bidiOrigin is the Origin header golang.org/x/net/websocket always sends;
// Firefox refuses a WebDriver BiDi handshake from an origin it was not told
// to allow (--remote-allow-origins).
const bidiOrigin = "http://127.0.0.1"

// firefox is one headless Firefox with a fresh profile and a WebDriver BiDi
// session on its one top-level browsing context.
type firefox struct {
	ws      *websocket.Conn
	context string // the browsing context (tab) the test drives
	log     *logtest.Buffer

	mu      sync.Mutex
	next    int
	pending map[int]chan bidiMessage
	onEvent func(method string, params json.RawMessage)
	readErr error
	closed  chan struct{}
}

type bidiMessage struct {
	Type    string          `json:"type"` // success, error or event
	ID      *int            `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// newFirefox starts Firefox in its own process group, connects to its BiDi
// endpoint and opens a session that accepts the demo's self-signed
// certificate. Cleanup closes the browser, kills the group if it lingers and
// waits for it.
func newFirefox(t *testing.T, onEvent func(method string, params json.RawMessage)) *firefox {
	path := firefoxPath(t)
	profile := t.TempDir() // removed after the cleanup below has stopped Firefox
	ff := &firefox{log: &logtest.Buffer{}, pending: map[int]chan bidiMessage{}, onEvent: onEvent, closed: make(chan struct{})}
	cmd := exec.Command(path,
		"--headless", "-no-remote", "--profile", profile,
		"--remote-debugging-port=0", // any free port; Firefox writes it to the profile
		"--remote-allow-origins="+bidiOrigin,
		"about:blank")
	cmd.Env = append(os.Environ(), "MOZ_CRASHREPORTER_DISABLE=1")
	cmd.Stdout, cmd.Stderr = ff.log, ff.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // content processes join the group
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		closed := false
		if ff.ws != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := ff.call(ctx, "browser.close", map[string]any{})
			cancel()
			_ = ff.ws.Close()
			closed = err == nil
		}
		if !closed {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Logf("firefox did not exit in 10 s: killing it")
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// Whatever is left of the group (content processes) goes too, and
		// the test waits until none is left.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-cmd.Process.Pid, 0) == nil; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("firefox's process group %d still has processes", cmd.Process.Pid)
				break
			}
		}
		if t.Failed() {
			t.Logf("firefox's output:\n%s", ff.log.String())
		}
	})

	// Firefox writes the BiDi server's port to the profile once it listens.
	var addr struct {
		Host string `json:"ws_host"`
		Port int    `json:"ws_port"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(profile, "WebDriverBiDiServer.json"))
		if err == nil && json.Unmarshal(b, &addr) == nil && addr.Port != 0 {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("firefox exited before its BiDi server listened: %v\n%s", err, ff.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("firefox's BiDi server did not start in 30 s\n%s", ff.log.String())
		}
	}
	ws, err := websocket.Dial(fmt.Sprintf("ws://%s:%d/session", addr.Host, addr.Port), "", bidiOrigin)
	if err != nil {
		t.Fatalf("connecting to firefox's BiDi server: %v\n%s", err, ff.log.String())
	}
	ff.ws = ws
	go ff.read()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := ff.call(ctx, "session.new", map[string]any{
		"capabilities": map[string]any{"alwaysMatch": map[string]any{"acceptInsecureCerts": true}},
	})
	if err != nil {
		t.Fatalf("session.new: %v", err)
	}
	var session struct {
		Capabilities struct {
			AcceptInsecureCerts bool   `json:"acceptInsecureCerts"`
			BrowserName         string `json:"browserName"`
			BrowserVersion      string `json:"browserVersion"`
		} `json:"capabilities"`
	}
	if err := json.Unmarshal(res, &session); err != nil {
		t.Fatal(err)
	}
	if !session.Capabilities.AcceptInsecureCerts {
		t.Fatalf("firefox's session does not accept insecure certificates: %s", res)
	}
	t.Logf("%s %s over WebDriver BiDi", session.Capabilities.BrowserName, session.Capabilities.BrowserVersion)
	res, err = ff.call(ctx, "browsingContext.getTree", map[string]any{"maxDepth": 0})
	if err != nil {
		t.Fatalf("browsingContext.getTree: %v", err)
	}
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := json.Unmarshal(res, &tree); err != nil || len(tree.Contexts) == 0 {
		t.Fatalf("browsingContext.getTree: no top-level context in %s (%v)", res, err)
	}
	ff.context = tree.Contexts[0].Context
	return ff
}

// read dispatches the browser's messages: replies to their callers, events
// to onEvent.
func (ff *firefox) read() {
	defer close(ff.closed)
	for {
		var b []byte
		if err := websocket.Message.Receive(ff.ws, &b); err != nil {
			ff.mu.Lock()
			ff.readErr = err
			ff.mu.Unlock()
			return
		}
		var m bidiMessage
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		if m.Type == "event" {
			if ff.onEvent != nil {
				ff.onEvent(m.Method, m.Params)
			}
			continue
		}
		if m.ID == nil {
			continue
		}
		ff.mu.Lock()
		ch := ff.pending[*m.ID]
		delete(ff.pending, *m.ID)
		ff.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends one command and waits for its reply.
func (ff *firefox) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	ch := make(chan bidiMessage, 1)
	ff.mu.Lock()
	ff.next++
	id := ff.next
	ff.pending[id] = ch
	ff.mu.Unlock()
	defer func() {
		ff.mu.Lock()
		delete(ff.pending, id)
		ff.mu.Unlock()
	}()
	b, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return nil, err
	}
	if err := websocket.Message.Send(ff.ws, string(b)); err != nil {
		return nil, err
	}
	select {
	case m := <-ch:
		if m.Type == "error" {
			return nil, fmt.Errorf("%s: %s: %s", method, m.Error, m.Message)
		}
		return m.Result, nil
	case <-ff.closed:
		ff.mu.Lock()
		defer ff.mu.Unlock()
		return nil, fmt.Errorf("%s: connection closed: %v", method, ff.readErr)
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// evalInto evaluates js in the page and decodes its value, passed as JSON.
func (ff *firefox) evalInto(js string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := ff.call(ctx, "script.evaluate", map[string]any{
		"expression":   "JSON.stringify(" + js + ")",
		"target":       map[string]any{"context": ff.context},
		"awaitPromise": false,
	})
	if err != nil {
		return err
	}
	var out struct {
		Type   string `json:"type"`
		Result struct {
			Type  string `json:"type"`
			Value string `json:"value"`
		} `json:"result"`
		ExceptionDetails struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		return err
	}
	if out.Type != "success" {
		return errors.New("exception: " + out.ExceptionDetails.Text)
	}
	if out.Result.Type != "string" {
		return fmt.Errorf("the expression's value is %s, not JSON", out.Result.Type)
	}
	return json.Unmarshal([]byte(out.Result.Value), v)
}

func (ff *firefox) eval(t *testing.T, js string, v any) {
	t.Helper()
	if err := ff.evalInto(js, v); err != nil {
		t.Fatalf("firefox: evaluate %s: %v", js, err)
	}
}

func (ff *firefox) str(t *testing.T, js string) string {
	t.Helper()
	var s string
	ff.eval(t, js, &s)
	return s
}

func (ff *firefox) count(t *testing.T, js string) int {
	t.Helper()
	var n int
	ff.eval(t, js, &n)
	return n
}

// waitFor waits until the JavaScript condition holds in the page; the time
// limit only turns a hang into a failure.
func (ff *firefox) waitFor(t *testing.T, cond string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if err = ff.evalInto("!!("+cond+")", &ok); err == nil && ok {
			return
		}
	}
	var state string
	_ = ff.evalInto(`JSON.stringify(typeof demo !== "undefined" ? {state: demo.state, opens: demo.opens, events: demo.events.slice(-8)} : window.page)`, &state)
	t.Fatalf("firefox: waiting for %s: timed out (last error %v)\npage: %s", cond, err, state)
}

// listed returns the ids in the page's list, in order, and the users they belong to.
func (ff *firefox) listed(t *testing.T) ([]int, []string) {
	t.Helper()
	var rows []listedRow
	ff.eval(t, listedJS, &rows)
	return split(rows)
}

func TestFirefox(t *testing.T) {
	// As in TestBrowser: streams end cleanly after 5-6 s and the page
	// reconnects 4 s later, so the gateway drops a stream without a restart.
	r := startDemo(t, "SSEGATE_STREAM_MAX_DURATION=5500ms", "SSEGATE_RETRY=4s")
	url := strings.Replace(r.URL, "localhost", "127.0.0.1", 1)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("the demo is at %s, want https", url)
	}

	// The protocol of every response to the event stream's path, as Firefox
	// reports it in the network module's events.
	streamProto := make(chan string, 16)
	ff := newFirefox(t, func(method string, params json.RawMessage) {
		if method != "network.responseStarted" {
			return
		}
		var ev struct {
			Response struct {
				URL      string `json:"url"`
				Protocol string `json:"protocol"`
			} `json:"response"`
		}
		if json.Unmarshal(params, &ev) == nil && strings.HasSuffix(ev.Response.URL, legacyapi.Path) {
			select {
			case streamProto <- ev.Response.Protocol:
			default:
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ff.call(ctx, "session.subscribe", map[string]any{"events": []string{"network.responseStarted"}}); err != nil {
		t.Fatal(err)
	}
	// Without acceptInsecureCerts this fails on the self-signed certificate.
	if _, err := ff.call(ctx, "browsingContext.navigate", map[string]any{"context": ff.context, "url": url, "wait": "complete"}); err != nil {
		t.Fatalf("opening the demo page: %v", err)
	}
	if loc := ff.str(t, `location.href`); !strings.HasPrefix(loc, "https://127.0.0.1:") {
		t.Fatalf("firefox is at %s, want the demo page over https", loc)
	}
	// Pick the user as a person would: the picker sets the cookie and reconnects.
	ff.str(t, `(() => { const s = document.getElementById("user"); s.value = "alice"; s.dispatchEvent(new Event("change")); return "ok" })()`)
	ff.waitFor(t, `demo.state === "open" && demo.events.some(e => e.type === "snapshot")`)

	t.Run("HTTP/2", func(t *testing.T) {
		p := ff.str(t, `performance.getEntriesByType("navigation")[0].nextHopProtocol`)
		if p != "h2" {
			t.Errorf("the page was served over %q, want h2", p)
		}
		select {
		case sp := <-streamProto:
			t.Logf("page %s, event stream %s", p, sp)
			if sp != "h2" {
				t.Errorf("event stream negotiated %q, want h2", sp)
			}
		case <-time.After(10 * time.Second):
			t.Error("firefox reported no response for the event stream")
		}
	})

	t.Run("snapshot and live events", func(t *testing.T) {
		want := r.Demo.API.Items("alice")
		ids, users := ff.listed(t)
		if len(ids) == 0 || len(ids) != len(want) {
			t.Fatalf("the page lists %v after the snapshot, the API has %d items for alice", ids, len(want))
		}
		for i, u := range users {
			if u != "alice" {
				t.Errorf("alice's page shows item %d of %q", ids[i], u)
			}
		}
		id := add(r, "alice")
		r.Demo.Nudge(context.Background(), "alice")
		ff.waitFor(t, fmt.Sprintf(`demo.events.some(e => e.type === "created" && e.detail === "#%d")`, id))
		if ids, _ := ff.listed(t); len(ids) == 0 || ids[0] != id {
			t.Errorf("alice's list starts %v, want the new item %d on top", ids, id)
		}
	})

	t.Run("reconnects and resumes with Last-Event-ID", func(t *testing.T) {
		resumes(t, r, ff)
	})
}

// TestFirefoxCrossOrigin is TestCrossOriginEventSource in Firefox: a page on
// an origin listed in SSEGATE_CORS_ORIGINS opens an EventSource with
// credentials and gets its user's snapshot and live events; a page on an
// origin not listed is refused, and its EventSource closes.
func TestFirefoxCrossOrigin(t *testing.T) {
	listed, unlisted := pageServer(t), pageServer(t)
	r := startDemo(t, "SSEGATE_CORS_ORIGINS="+listed.URL)
	gateway := strings.Replace(r.URL, "localhost", "127.0.0.1", 1)
	streamURL := strings.TrimSuffix(gateway, "/") + legacyapi.Path
	ff := newFirefox(t, nil)
	navigate := func(url string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := ff.call(ctx, "browsingContext.navigate", map[string]any{"context": ff.context, "url": url, "wait": "complete"}); err != nil {
			t.Fatalf("opening %s: %v", url, err)
		}
	}
	// alice's cookie for the gateway, set as a person would, with the demo
	// page's user picker (cookies ignore ports: the page servers' origins
	// are on the same site, as app.example.com and api.example.com are).
	navigate(gateway)
	ff.str(t, `(() => { const s = document.getElementById("user"); s.value = "alice"; s.dispatchEvent(new Event("change")); return "ok" })()`)
	ff.waitFor(t, `document.cookie.includes("user=alice")`)

	t.Run("listed origin streams with credentials", func(t *testing.T) {
		navigate(listed.URL)
		ff.str(t, fmt.Sprintf(`openStream(%q) && "ok"`, streamURL))
		ff.waitFor(t, `page.events.some(e => e.type === "snapshot")`)
		snap := ff.str(t, `page.events.find(e => e.type === "snapshot").data`)
		if !strings.Contains(snap, `"user":"alice"`) || strings.Contains(snap, `"user":"demo"`) {
			t.Errorf("snapshot %.200s, want alice's list: the cookie should go with withCredentials", snap)
		}
		id := add(r, "alice")
		r.Demo.Nudge(context.Background(), "alice")
		ff.waitFor(t, fmt.Sprintf(`page.events.some(e => e.type === "created" && JSON.parse(e.data).id === %d)`, id))
		ff.waitFor(t, `es.readyState === EventSource.OPEN`)
	})

	t.Run("unlisted origin is refused", func(t *testing.T) {
		navigate(unlisted.URL)
		ff.str(t, fmt.Sprintf(`openStream(%q) && "ok"`, streamURL))
		ff.waitFor(t, `page.errors > 0 && es.readyState === EventSource.CLOSED`)
		if n := ff.count(t, `page.events.length`); n != 0 {
			t.Errorf("page on an unlisted origin got %d events, want none", n)
		}
	})
}
