package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/internal/demo"
	"github.com/ssegate/ssegate/internal/legacyapi"
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
