// Package e2e drives the demo in headless Chromium: what users actually run
// is a browser's EventSource over HTTP/2 and TLS, which is less forgiving
// than curl or a Go client.
//
// Without a Chromium the test is skipped, unless SSEGATE_E2E_REQUIRE=1 (set
// by .ci/run), which turns a missing browser into a failure.
package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ssegate/ssegate/internal/apptest"
	"github.com/ssegate/ssegate/internal/demo"
	"github.com/ssegate/ssegate/internal/legacyapi"
)

func chromium(t *testing.T) string {
	return browserPath(t, "chromium", "chromium", "chromium-browser", "google-chrome")
}

// browserPath finds the first of names in PATH; without any it skips the
// test, or fails it when SSEGATE_E2E_REQUIRE=1 (CI). pkg is the Debian
// package to install.
func browserPath(t *testing.T, pkg string, names ...string) string {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SSEGATE_E2E_REQUIRE") == "1" {
		t.Fatalf("no %s in PATH and SSEGATE_E2E_REQUIRE=1", pkg)
	}
	t.Skipf("no %s in PATH: install it (apt-get install %s) to run this test", pkg, pkg)
	return ""
}

// startDemo runs the demo (API and gateway) in-process, with no random
// changes: the test makes every change itself.
func startDemo(t *testing.T, env ...string) demo.Ready {
	t.Helper()
	cfg := apptest.Config(t, append([]string{
		"SSEGATE_DEMO=true",
		"SSEGATE_LISTEN_ADDR=127.0.0.1:0",
		"SSEGATE_METRICS_ADDR=127.0.0.1:0",
		"SSEGATE_CERT_DIR=" + t.TempDir(),
		"SSEGATE_POLL_INTERVAL=500ms",
		"SSEGATE_RETRY=500ms",
	}, env...)...)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan demo.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, cfg, demo.Options{Every: time.Hour}, func(r demo.Ready) { ready <- r })
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case r := <-ready:
		return r
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	}
	return demo.Ready{}
}

// browser starts a headless Chromium; each tab from newUser is a separate
// browser context (its own cookies), as two people would be.
type browser struct {
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 820),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	bctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(bctx); err != nil { // start the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	return &browser{ctx: bctx}
}

// tab is one page of one user.
type tab struct {
	ctx   context.Context
	user  string
	proto chan string // protocol of the event stream's response
}

func (b *browser) newUser(t *testing.T, url, user string) *tab {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{ctx: ctx, user: user, proto: make(chan string, 4)}
	responses := chromedp.Events(ctx, network.ResponseReceived)
	go func() {
		for ev, err := range responses {
			if err != nil {
				return
			}
			if strings.HasSuffix(ev.Response.URL, legacyapi.Path) {
				tb.proto <- ev.Response.Protocol
			}
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	// Pick the user as a person would: the picker sets the cookie and reconnects.
	tb.eval(t, fmt.Sprintf(`(() => { const s = document.getElementById("user"); s.value = %q; s.dispatchEvent(new Event("change")); return true })()`, user))
	tb.waitFor(t, `demo.state === "open" && demo.events.some(e => e.type === "snapshot")`)
	return tb
}

func (tb *tab) eval(t *testing.T, js string) {
	t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](js)); err != nil {
		t.Fatalf("%s: evaluate %s: %v", tb.user, js, err)
	}
}

// waitFor waits until the JavaScript condition holds in the page; the time
// limit only turns a hang into a failure.
func (tb *tab) waitFor(t *testing.T, cond string) {
	t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		state, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`JSON.stringify({state: demo.state, opens: demo.opens, events: demo.events.slice(-8)})`))
		t.Fatalf("%s: waiting for %s: %v\npage: %s", tb.user, cond, err, state)
	}
}

// listedJS reads the demo page's list: each item's id and user, in order.
const listedJS = `[...document.querySelectorAll("#items li")].map(li => ({id: +li.dataset.id, user: demo.items.find(x => x.id === +li.dataset.id)?.user}))`

// listedRow is one item of listedJS's answer.
type listedRow struct {
	ID   int    `json:"id"`
	User string `json:"user"`
}

// split returns the rows' ids and users.
func split(rows []listedRow) (ids []int, users []string) {
	for _, r := range rows {
		ids = append(ids, r.ID)
		users = append(users, r.User)
	}
	return ids, users
}

// listed returns the ids in the page's list, in order, and the users they belong to.
func (tb *tab) listed(t *testing.T) ([]int, []string) {
	t.Helper()
	rows, err := chromedp.Run(tb.ctx, chromedp.Evaluate[[]listedRow](listedJS))
	if err != nil {
		t.Fatal(err)
	}
	return split(rows)
}

func (tb *tab) str(t *testing.T, js string) string {
	t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (tb *tab) count(t *testing.T, js string) int {
	t.Helper()
	n, err := chromedp.Run(tb.ctx, chromedp.Evaluate[int](js))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// add creates a notification for user in the API and nudges the gateway, as
// the backend does; it returns the new id.
func add(r demo.Ready, user string) int {
	before := len(r.Demo.API.Items(user))
	r.Demo.API.Add(user, fmt.Sprintf(`{"id":%d,"user":%q,"title":"e2e %s %d","time":%q,"read":false}`,
		nextID(), user, user, before, time.Now().UTC().Format(time.RFC3339)))
	return lastID
}

var lastID = 100000

func nextID() int { lastID++; return lastID }

func metric(t *testing.T, r demo.Ready, name string) string {
	resp, err := http.Get("http://" + r.Gateway.Metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

// page is alice's demo page in one browser (a Chromium tab, Firefox).
type page interface {
	waitFor(t *testing.T, cond string)
	count(t *testing.T, js string) int
	str(t *testing.T, js string) string
	listed(t *testing.T) ([]int, []string)
}

// resumes checks that alice's page, whose stream the gateway ends
// (SSEGATE_STREAM_MAX_DURATION), catches up on reconnect with Last-Event-ID:
// every item added while it was away, once, and no second snapshot.
func resumes(t *testing.T, r demo.Ready, p page) {
	// The EventSource waits out the retry delay before it reconnects.
	changed := func() string { return metric(t, r, `ssegate_upstream_polls_total{outcome="changed"}`) }
	p.waitFor(t, `demo.state === "reconnecting"`)
	opensBefore := p.count(t, `demo.opens`)
	polled := changed()
	var added []int
	for range 40 { // missed while offline: the reconnect must bring each
		added = append(added, add(r, "alice"))
	}
	r.Demo.Nudge(context.Background(), "alice")
	for deadline := time.Now().Add(30 * time.Second); changed() == polled; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never polled the nudged change")
		}
	}
	if n := p.count(t, `demo.opens`); n != opensBefore {
		t.Fatal("the page reconnected before the change was polled; the test could not exercise a resume")
	}
	p.waitFor(t, fmt.Sprintf(`demo.opens > %d && demo.state === "open"`, opensBefore))
	p.waitFor(t, fmt.Sprintf(`demo.items.some(x => x.id === %d)`, added[len(added)-1]))

	// Exactly once each, and the same list as the API's.
	ids, _ := p.listed(t)
	seen := map[int]int{}
	for _, id := range ids {
		seen[id]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("item %d shown %d times after the reconnect, want once", id, n)
		}
	}
	for _, id := range added {
		if seen[id] != 1 {
			t.Errorf("item %d missing after the reconnect", id)
		}
	}
	if want := len(r.Demo.API.Items("alice")); len(ids) != want {
		log := p.str(t, `demo.events.map(e => e.type[0] + " " + e.id.split("-")[1] + " " + e.detail).join(" | ")`)
		t.Errorf("page lists %d items, the API %d; the page's events: %s", len(ids), want, log)
	}
	// Resumed from history, not re-sent whole: the only snapshot is the first.
	if n := p.count(t, `demo.events.filter(e => e.type === "snapshot").length`); n != 1 {
		t.Errorf("%d snapshots received, want 1: the reconnect should resume with Last-Event-ID", n)
	}
}

func TestBrowser(t *testing.T) {
	// Streams end cleanly after 5-6 s and the page reconnects after 4 s: how
	// the test makes the gateway drop a stream without a restart.
	r := startDemo(t, "SSEGATE_STREAM_MAX_DURATION=5500ms", "SSEGATE_RETRY=4s")
	url := strings.Replace(r.URL, "localhost", "127.0.0.1", 1)
	b := newBrowser(t)
	// A tab left alone for the counters (checked last, after a minute).
	counted := b.newUser(t, url, demo.DefaultUser)
	countedSince := time.Now()
	alice := b.newUser(t, url, "alice")
	bob := b.newUser(t, url, "bob")
	ctx := context.Background()

	t.Run("HTTP/2 and live events", func(t *testing.T) {
		select {
		case p := <-alice.proto:
			if p != "h2" {
				t.Errorf("event stream negotiated %q, want h2", p)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("saw no response for the event stream")
		}
		id := add(r, "alice")
		r.Demo.Nudge(ctx, "alice")
		alice.waitFor(t, fmt.Sprintf(`demo.events.some(e => e.type === "created" && e.detail === "#%d")`, id))
		ids, _ := alice.listed(t)
		if len(ids) == 0 || ids[0] != id {
			t.Errorf("alice's list starts %v, want the new item %d on top", ids, id)
		}
	})

	t.Run("users never see each other's items", func(t *testing.T) {
		id := add(r, "bob")
		r.Demo.Nudge(ctx, "bob")
		bob.waitFor(t, fmt.Sprintf(`demo.items.some(x => x.id === %d)`, id))
		aliceID := add(r, "alice")
		r.Demo.Nudge(ctx, "alice")
		alice.waitFor(t, fmt.Sprintf(`demo.items.some(x => x.id === %d)`, aliceID))
		for _, tb := range []*tab{alice, bob} {
			ids, users := tb.listed(t)
			for i, u := range users {
				if u != tb.user {
					t.Errorf("%s's page shows item %d of %q", tb.user, ids[i], u)
				}
			}
		}
	})

	t.Run("reconnects and resumes with Last-Event-ID", func(t *testing.T) {
		resumes(t, r, alice)
	})

	// The page's two counters, counted the same way (all the user's tabs,
	// since the tab connected): after a minute, the gateway made fewer
	// requests for the user than the page it replaces would have, with
	// SSEGATE_LEGACY_INTERVAL set to the page's old interval by the demo.
	t.Run("fewer requests than the old page", func(t *testing.T) {
		time.Sleep(time.Until(countedSince.Add(time.Minute)))
		// The status document is nudged after every poll of the list:
		// let the last one arrive.
		time.Sleep(2 * time.Second)
		old := counted.count(t, `demo.oldPolls`)
		gw := counted.count(t, `demo.gatewayPolls`)
		shown := counted.count(t, `+document.getElementById("gwCount").textContent`)
		polls := r.Demo.API.Polls(demo.DefaultUser)
		t.Logf("after %v: the old page %d requests, ssegate %d (the API counted %d for the user in all)", time.Since(countedSince).Round(time.Second), old, gw, polls)
		if old < 7 {
			t.Errorf("the old page's counter reads %d after a minute, want 1 + 60 s / 10 s = 7 at least", old)
		}
		if gw < 1 || gw != shown || gw > polls {
			t.Errorf("the gateway's counter reads %d (shown %d), want at least the first poll and at most the API's %d", gw, shown, polls)
		}
		if gw >= old {
			t.Errorf("ssegate made %d requests for the user, the old page would have made %d: want fewer", gw, old)
		}
	})

	t.Run("screenshot", func(t *testing.T) {
		add(r, "bob")
		r.Demo.Nudge(ctx, "bob")
		time.Sleep(time.Second)                                         // let the highlight and counters settle for the picture
		png, err := chromedp.Run(bob.ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join("out", "demo.png")
		if os.Getenv("SSEGATE_UPDATE_SCREENSHOT") == "1" {
			out = filepath.Join("..", "docs", "demo.png")
		}
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", out, len(png))
	})
}
