package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/ssegate/ssegate/internal/legacyapi"
)

// crossOriginPage is a page of another application: it opens the gateway's
// stream with credentials, as a page on app.example.com would open
// api.example.com's, and reads a stream with fetch and a Last-Event-ID
// header, as a polyfill does (which makes the browser send a preflight).
const crossOriginPage = `<!doctype html><meta charset="utf-8"><title>other origin</title>
<script>
window.page = {events: [], errors: 0, state: -1, fetched: null};
window.openStream = url => {
  const es = new EventSource(url, {withCredentials: true});
  const note = e => page.events.push({type: e.type, data: e.data});
  es.addEventListener("snapshot", note);
  es.addEventListener("created", note);
  es.onerror = () => { page.errors++; page.state = es.readyState; };
  es.onopen = () => { page.state = es.readyState; };
  window.es = es;
  return true;
};
window.fetchStream = url => {
  fetch(url, {credentials: "include", headers: {"Accept": "text/event-stream", "Last-Event-ID": "none"}})
    .then(async r => {
      const chunk = await r.body.getReader().read();
      page.fetched = {status: r.status, text: new TextDecoder().decode(chunk.value)};
    })
    .catch(err => { page.fetched = {error: String(err)}; });
  return true;
};
</script>`

// pageServer serves crossOriginPage on its own origin,
// https://127.0.0.1:<port>: another origin than the gateway's, on the same
// site, as app.example.com and api.example.com are.
func pageServer(t *testing.T) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, crossOriginPage)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// page is one tab on a page server's origin, with alice's cookie for the
// gateway: a request with credentials carries it, one without does not.
func (b *browser) page(t *testing.T, pageURL, gateway string) *tab {
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	secure := true
	setCookie := chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
			Name: "user", Value: "alice", URL: gateway, Secure: &secure,
		})
		return err
	})
	err := chromedp.Do(ctx, setCookie, chromedp.Navigate(pageURL))
	if err != nil {
		t.Fatalf("open %s: %v", pageURL, err)
	}
	return &tab{ctx: ctx, user: pageURL}
}

// pageWaitFor is waitFor for crossOriginPage, which has no demo object.
func (tb *tab) pageWaitFor(t *testing.T, cond string) {
	t.Helper()
	_, err := chromedp.Run(tb.ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		state, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`JSON.stringify(page)`))
		t.Fatalf("%s: waiting for %s: %v\npage: %s", tb.user, cond, err, state)
	}
}

// TestCrossOriginEventSource: a page on an origin listed in
// SSEGATE_CORS_ORIGINS opens an EventSource with credentials and gets its
// user's snapshot and live events; a page on an origin not listed is
// refused by the browser, and its EventSource closes.
func TestCrossOriginEventSource(t *testing.T) {
	listed, unlisted := pageServer(t), pageServer(t)
	r := startDemo(t, "SSEGATE_CORS_ORIGINS="+listed.URL)
	gateway := strings.Replace(r.URL, "localhost", "127.0.0.1", 1)
	streamURL := strings.TrimSuffix(gateway, "/") + legacyapi.Path
	b := newBrowser(t)
	ctx := context.Background()

	t.Run("listed origin streams with credentials", func(t *testing.T) {
		tb := b.page(t, listed.URL, gateway)
		tb.eval(t, fmt.Sprintf(`openStream(%q)`, streamURL))
		// alice's list, chosen by her cookie: the credentials went along.
		tb.pageWaitFor(t, `page.events.some(e => e.type === "snapshot")`)
		snap, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`page.events.find(e => e.type === "snapshot").data`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(snap, `"user":"alice"`) || strings.Contains(snap, `"user":"demo"`) {
			t.Errorf("snapshot %.200s, want alice's list: the cookie should go with withCredentials", snap)
		}
		id := add(r, "alice")
		r.Demo.Nudge(ctx, "alice")
		tb.pageWaitFor(t, fmt.Sprintf(`page.events.some(e => e.type === "created" && JSON.parse(e.data).id === %d)`, id))
		tb.pageWaitFor(t, `es.readyState === EventSource.OPEN`)

		// A polyfill's request: a header that is not CORS-safelisted makes
		// the browser preflight; the gateway answers it and then streams.
		tb.eval(t, fmt.Sprintf(`fetchStream(%q)`, streamURL))
		tb.pageWaitFor(t, `page.fetched !== null`)
		type fetchResult struct {
			Status int
			Text   string
			Error  string
		}
		fetched, err := chromedp.Run(tb.ctx, chromedp.Evaluate[fetchResult](`page.fetched`))
		if err != nil {
			t.Fatal(err)
		}
		if fetched.Status != 200 || !strings.Contains(fetched.Text, "retry:") {
			t.Errorf("fetch with Last-Event-ID: got %+v, want 200 and the stream's start", fetched)
		}
	})

	t.Run("unlisted origin is refused", func(t *testing.T) {
		tb := b.page(t, unlisted.URL, gateway)
		tb.eval(t, fmt.Sprintf(`openStream(%q)`, streamURL))
		tb.pageWaitFor(t, `page.errors > 0 && es.readyState === EventSource.CLOSED`)
		tb.eval(t, fmt.Sprintf(`fetchStream(%q)`, streamURL))
		tb.pageWaitFor(t, `page.fetched !== null`)
		type result struct {
			Events  int
			Fetched struct{ Error string }
		}
		got, err := chromedp.Run(tb.ctx, chromedp.Evaluate[result](`({events: page.events.length, fetched: page.fetched})`))
		if err != nil {
			t.Fatal(err)
		}
		if got.Events != 0 || got.Fetched.Error == "" {
			t.Errorf("page on an unlisted origin got %d events and fetch %+v, want none and a TypeError", got.Events, got.Fetched)
		}
	})
}
