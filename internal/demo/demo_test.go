package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ssegate/ssegate/internal/demo"
	"github.com/ssegate/ssegate/internal/legacyapi"
)

func TestChangesAndNudges(t *testing.T) {
	d := demo.New(demo.Options{})
	var mu sync.Mutex
	var nudged []string
	d.SetNudge(func(_ context.Context, identity string) error {
		mu.Lock()
		defer mu.Unlock()
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
	if len(nudged) != 201 || nudged[0] != "user=alice" || nudged[200] != "" {
		t.Errorf("nudges: %d, first %q, last %q; want 201, user=alice, and no identity for the default user (its keys carry no cookie)", len(nudged), nudged[0], nudged[200])
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
	if st.User != "bob" || st.UserPolls != 1 || st.Items != 3 {
		t.Errorf("status %+v, want bob with 1 poll and 3 items", st)
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
