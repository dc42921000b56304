package app_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/legacyapi"
)

// deletable is the legacy API whose list can be deleted: it then answers
// status with a JSON body, to every request, as a GET would see it.
type deletable struct {
	api    *legacyapi.API
	mu     sync.Mutex
	status int // 0: the list is there
}

func (d *deletable) gone(status int) { d.mu.Lock(); d.status = status; d.mu.Unlock() }

func (d *deletable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	status := d.status
	d.mu.Unlock()
	if status == 0 {
		d.api.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"error":"deleted `+strconv.Itoa(status)+`"}`)
}

// TestDeletedLaterEndsStreams: a key that answered 200 and then answers 404
// (or 410) ends its streams, and a new stream gets that status and body, as
// a GET through the gateway does: never heartbeats and a snapshot of what
// was deleted.
func TestDeletedLaterEndsStreams(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusGone} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			up := &deletable{api: legacyapi.New()}
			up.api.Add("alice", `{"id":1}`)
			srv := httptest.NewServer(up)
			defer srv.Close()
			g := startGateway(t, srv.URL, "SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=100ms")
			c := g.client(t)
			url := g.base + legacyapi.Path

			s := subscribe(t, c, url, "Bearer alice", "")
			s.expect(t, "snapshot", has(`"id":1`))
			up.gone(status)
			select {
			case ev, ok := <-s.events:
				for ok {
					t.Errorf("got %+v after the upstream answered %d, want the stream to end", ev, status)
					ev, ok = <-s.events
				}
			case <-time.After(failAfter):
				t.Fatalf("stream still open after the upstream answered %d", status)
			}

			want := `{"error":"deleted ` + strconv.Itoa(status) + `"}`
			for _, accept := range []string{"text/event-stream", "application/json"} {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Accept", accept)
				req.Header.Set("Authorization", "Bearer alice")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != status || string(body) != want || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("Accept %s: got %d %q (%s), want %d %s", accept, resp.StatusCode, body, resp.Header.Get("Content-Type"), status, want)
				}
			}
		})
	}
}
