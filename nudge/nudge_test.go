package nudge_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/internal/ssetest"
	"github.com/ssegate/ssegate/nudge"
	"github.com/ssegate/ssegate/nudge/nudgeapi"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

const token = "0123456789abcdef-nudge"

// memUpstream answers every poll with a fixed list and counts polls per
// Authorization value.
type memUpstream struct {
	mu    sync.Mutex
	polls map[string]int
}

func (m *memUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	m.mu.Lock()
	m.polls[r.Header.Get("Authorization")]++
	m.mu.Unlock()
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`[{"id":1}]`))}, nil
}

func (m *memUpstream) count(who string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.polls[who]
}

// nudgeRig is a gateway in memory: proxy, hub and poller with an
// in-memory upstream, and the nudge handler beside them.
type nudgeRig struct {
	up     *memUpstream
	front  *proxy.Proxy
	nudger *nudge.Handler
}

func newNudgeRig(t *testing.T) *nudgeRig {
	up := &memUpstream{polls: map[string]int{}}
	p := poller.New(poller.Options{Client: &http.Client{Transport: up}, Interval: 500 * time.Millisecond, IntervalMax: time.Minute, LegacyInterval: time.Hour})
	hub := stream.NewHub(p, stream.Options{})
	t.Cleanup(p.Close)
	t.Cleanup(hub.Close)
	keyer := stream.NewKeyer([]string{"Authorization"})
	u, _ := url.Parse("http://upstream.test")
	front, err := proxy.New(proxy.Options{Upstream: u, Transport: up, Hub: hub, Keyer: keyer})
	if err != nil {
		t.Fatal(err)
	}
	return &nudgeRig{up: up, front: front, nudger: nudge.NewHandler(hub, keyer, token, nil)}
}

func (g *nudgeRig) subscribe(t *testing.T, path, auth string) *ssetest.Client {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.Header.Set("Accept", "text/event-stream")
	r.Header.Set("Authorization", auth)
	c := ssetest.Open(g.front, r)
	c.Expect(t, "snapshot", `[{"id":1}]`)
	t.Cleanup(c.Close)
	return c
}

func (g *nudgeRig) nudge(auth, contentType, body string) (int, string, http.Header) {
	r := httptest.NewRequest(http.MethodPost, nudgeapi.Path, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	g.nudger.ServeHTTP(w, r)
	return w.Code, w.Body.String(), w.Header()
}

func TestNudgeRequiresToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNudgeRig(t)
		g.subscribe(t, "/api/notifications", "Bearer alice")
		before := g.up.count("Bearer alice")
		for _, auth := range []string{"", "Bearer wrong-token-0123456", "Basic " + token, token} {
			code, _, h := g.nudge(auth, "application/json", `{"path":"/"}`)
			if code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
				t.Errorf("Authorization %q: got %d, want 401 with a challenge", auth, code)
			}
		}
		synctest.Wait()
		if got := g.up.count("Bearer alice"); got != before {
			t.Errorf("refused nudges caused %d polls, want 0", got-before)
		}
		r := httptest.NewRequest(http.MethodGet, nudgeapi.Path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		g.nudger.ServeHTTP(w, r)
		if w.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET: got %d, want 405", w.Code)
		}
		if code, _, _ := g.nudge("Bearer "+token, "application/json", `{"path":"/x/{bad"}`); code != http.StatusBadRequest {
			t.Errorf("bad pattern: got %d, want 400", code)
		}
		if code, _, _ := g.nudge("Bearer "+token, "application/json", `{"path":`); code != http.StatusBadRequest {
			t.Errorf("bad JSON: got %d, want 400", code)
		}
	})
}

func TestNudgePollsOnlyMatchingKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNudgeRig(t)
		g.subscribe(t, "/api/notifications", "Bearer alice")
		g.subscribe(t, "/api/notifications", "Bearer alice") // same key
		g.subscribe(t, "/api/notifications", "Bearer bob")
		g.subscribe(t, "/feed", "Bearer alice")
		time.Sleep(time.Second) // between polls
		synctest.Wait()
		count := func() (int, int) { synctest.Wait(); return g.up.count("Bearer alice"), g.up.count("Bearer bob") }

		a0, b0 := count()
		code, body, _ := g.nudge("Bearer "+token, "application/json", `{"path":"/api/notifications","identity":"Bearer alice"}`)
		if code != http.StatusAccepted || strings.TrimSpace(body) != `{"keys":1}` {
			t.Fatalf("got %d %s, want 202 {\"keys\":1}", code, body)
		}
		if a, b := count(); a != a0+1 || b != b0 {
			t.Errorf("after nudging alice's key: alice +%d, bob +%d polls; want +1, +0 at once", a-a0, b-b0)
		}

		time.Sleep(time.Second) // nudged polls of one key stay Interval apart
		a0, b0 = count()
		code, body, _ = g.nudge("Bearer "+token, "application/x-www-form-urlencoded", "path=/api/")
		if code != http.StatusAccepted || strings.TrimSpace(body) != `{"keys":2}` {
			t.Fatalf("prefix pattern: got %d %s, want 202 {\"keys\":2}", code, body)
		}
		if a, b := count(); a != a0+1 || b != b0+1 {
			t.Errorf("after nudging /api/: alice +%d, bob +%d; want +1, +1", a-a0, b-b0)
		}

		if _, body, _ = g.nudge("Bearer "+token, "application/json", `{"path":"/","identity":"Bearer carol"}`); strings.TrimSpace(body) != `{"keys":0}` {
			t.Errorf("unknown identity: got %s, want no keys", body)
		}
	})
}

// TestNudgeSchemeIsCaseInsensitive: RFC 9110 §11.1 makes the auth scheme
// case-insensitive, and §11.4 allows more than one space after it.
func TestNudgeSchemeIsCaseInsensitive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNudgeRig(t)
		g.subscribe(t, "/api/notifications", "Bearer alice")
		for _, auth := range []string{"bearer " + token, "BEARER " + token, "bEaReR " + token, "Bearer  " + token} {
			if code, body, _ := g.nudge(auth, "application/json", `{"path":"/api/"}`); code != http.StatusAccepted {
				t.Errorf("Authorization %q: got %d %s, want 202", auth, code, body)
			}
		}
		for _, auth := range []string{"Bearer", "Bearer ", "Bearerx " + token, "bearer " + token + "x"} {
			if code, _, _ := g.nudge(auth, "application/json", `{"path":"/api/"}`); code != http.StatusUnauthorized {
				t.Errorf("Authorization %q: got %d, want 401", auth, code)
			}
		}
	})
}

// TestNudgeTakesJSONWhateverContentType: curl -d sends
// application/x-www-form-urlencoded unless told otherwise; a JSON body is
// still a JSON nudge, and a nudge without a path says what it wants.
func TestNudgeTakesJSONWhateverContentType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newNudgeRig(t)
		g.subscribe(t, "/api/notifications", "Bearer alice")
		g.subscribe(t, "/feed", "Bearer alice")
		for _, ct := range []string{"application/x-www-form-urlencoded", "", "text/plain", "application/json; charset=utf-8"} {
			code, body, _ := g.nudge("Bearer "+token, ct, ` {"path":"/api/notifications","identity":"Bearer alice"}`)
			if code != http.StatusAccepted || strings.TrimSpace(body) != `{"keys":1}` {
				t.Errorf("JSON body as %q: got %d %s, want 202 {\"keys\":1}", ct, code, body)
			}
		}
		code, body, _ := g.nudge("Bearer "+token, "application/x-www-form-urlencoded", "identity=x")
		if code != http.StatusBadRequest || !strings.Contains(body, `{"path":`) {
			t.Errorf("no path: got %d %q, want 400 showing a JSON nudge", code, body)
		}
	})
}
