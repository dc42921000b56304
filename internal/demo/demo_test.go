package demo_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/internal/apptest"
	"github.com/ssegate/ssegate/internal/demo"
	"github.com/ssegate/ssegate/internal/legacyapi"
	"github.com/ssegate/ssegate/internal/logtest"
)

func TestChangesAndNudges(t *testing.T) {
	d := demo.New(demo.Options{})
	var mu sync.Mutex
	var nudged []string
	d.SetNudge(func(_ context.Context, path, identity string) error {
		mu.Lock()
		defer mu.Unlock()
		if path != legacyapi.Path {
			t.Errorf("change nudged %s, want %s", path, legacyapi.Path)
		}
		nudged = append(nudged, identity)
		return nil
	})
	for range 200 {
		d.Change(context.Background(), "alice")
	}
	d.Change(context.Background(), demo.DefaultUser)
	if n := len(d.API.Items("alice")); n < 1 || n > 14 {
		t.Errorf("alice has %d notifications after 200 changes, want the list kept short (1..14)", n)
	}
	if len(nudged) != 201 || nudged[0] != "user=alice" || nudged[200] != "user="+demo.DefaultUser {
		t.Errorf("nudges: %d, first %q, last %q; want 201, user=alice, and the default user's cookie (a nudge of the whole path would poll every user)", len(nudged), nudged[0], nudged[200])
	}
	if n := len(d.API.Items("bob")); n != 3 {
		t.Errorf("bob has %d notifications, want his 3 untouched", n)
	}
}

func TestPageAndStatus(t *testing.T) {
	d := demo.New(demo.Options{})
	srv := httptest.NewServer(d)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `new EventSource("/api/notifications")`) {
		t.Error("the page does not open the event stream")
	}
	if strings.Contains(string(page), "http://") || strings.Contains(string(page), "https://") {
		t.Error("the page refers to an absolute URL: it must work offline, with no external assets")
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+demo.StatusPath, nil)
	req.AddCookie(&http.Cookie{Name: "user", Value: "bob"})
	http.DefaultClient.Do(mustReq(t, srv.URL+legacyapi.Path, "bob"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st demo.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.User != "bob" || st.UserPolls != 1 || st.Items != 3 || st.LegacyIntervalSeconds != 10 {
		t.Errorf("status %+v, want bob with 1 poll, 3 items and the old page's 10 s", st)
	}
}

func mustReq(t *testing.T, url, user string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: "user", Value: user})
	return req
}

// TestRunTakesTurnsAndKeepsStatusFresh: Run changes each user in turn (so
// each changes every len(Users) × Every), and a poll of a user's list
// nudges that user's status document, which the page's counter shows.
func TestRunTakesTurnsAndKeepsStatusFresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := demo.New(demo.Options{Every: time.Second})
		var mu sync.Mutex
		var lists, statuses []string
		d.SetNudge(func(_ context.Context, path, identity string) error {
			mu.Lock()
			defer mu.Unlock()
			switch path {
			case legacyapi.Path:
				lists = append(lists, identity)
			case demo.StatusPath:
				statuses = append(statuses, identity)
			}
			return nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		time.Sleep(6*time.Second + time.Millisecond)
		w := httptest.NewRecorder()
		d.ServeHTTP(w, mustReq(t, legacyapi.Path, "bob"))
		synctest.Wait()
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		want := []string{"user=demo", "user=alice", "user=bob", "user=demo", "user=alice", "user=bob"}
		if !slices.Equal(lists, want) {
			t.Errorf("changes nudged %q, want each user in turn %q", lists, want)
		}
		if !slices.Equal(statuses, []string{"user=bob"}) {
			t.Errorf("status nudges %q after a poll of bob's list, want [user=bob]", statuses)
		}
	})
}

// TestRunContractIsThePagesInterval: the demo's gateway runs the load
// contract at the old page's interval, whatever the configuration says, so
// that the page's two counters compare like with like: the start-up line
// states it, and one open stream counts as one page polling every 10 s.
func TestRunContractIsThePagesInterval(t *testing.T) {
	cfg := apptest.Config(t, "SSEGATE_DEMO=true", "SSEGATE_LISTEN_ADDR=127.0.0.1:0", "SSEGATE_METRICS_ADDR=127.0.0.1:0",
		"SSEGATE_CERT_DIR="+t.TempDir(), "SSEGATE_LEGACY_INTERVAL=1h")
	var logs logtest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan demo.Ready, 1)
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(ctx, cfg, demo.Options{Every: time.Hour, Logger: log}, func(r demo.Ready) { ready <- r })
	}()
	defer func() { cancel(); <-done }()
	var r demo.Ready
	select {
	case r = <-ready:
	case err := <-done:
		t.Fatalf("demo did not start: %v", err)
	}
	if !strings.Contains(logs.String(), "load contract: ") || !strings.Contains(logs.String(), "legacy_interval=10s") {
		t.Errorf("start-up log does not state a contract at the page's 10 s:\n%s", logs.String())
	}

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the demo's own certificate
	defer client.CloseIdleConnections()
	req := mustReq(t, r.Gateway.Scheme+"://"+r.Gateway.Main.String()+legacyapi.Path, demo.DefaultUser)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	gauge := func() string {
		resp, err := http.Get("http://" + r.Gateway.Metrics.String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "ssegate_legacy_polling_rps "); ok {
				return v
			}
		}
		return ""
	}
	for deadline := time.Now().Add(10 * time.Second); gauge() != "0.1" && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if g := gauge(); g != "0.1" {
		t.Errorf("ssegate_legacy_polling_rps = %q with one stream open, want one page every 10 s: 0.1", g)
	}
}
