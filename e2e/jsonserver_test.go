package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/sse"
)

// TestJSONServerUpstream puts the gateway in front of an off-the-shelf
// REST API nobody here wrote, npm's json-server (0.17): a client streams
// /posts, while writes go through the gateway as ordinary requests
// (pass-through) and come back as created, updated and deleted events. Its
// ETags make the gateway's polls conditional: json-server answers 304.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func TestJSONServerUpstream(t *testing.T) {
	modules := eventsourceModule(t) // .ci/run installs json-server beside eventsource
	bin := filepath.Join(modules, ".bin", "json-server")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("SSEGATE_EVENTSOURCE_REQUIRE") == "1" {
			t.Fatalf("json-server is required beside eventsource: %v", err)
		}
		t.Skip("no json-server in SSEGATE_EVENTSOURCE_DIR (npm install json-server@0.17; .ci/run does)")
	}
	db := filepath.Join(t.TempDir(), "db.json")
	if err := os.WriteFile(db, []byte(`{"posts":[{"id":1,"title":"first"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--host", "127.0.0.1", "--port", port, db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	var notModified atomic.Int64
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			// Its log is morgan's "dev" format, coloured even in a pipe.
			if strings.HasPrefix(ansi.ReplaceAllString(sc.Text(), ""), "GET /posts 304") {
				notModified.Add(1)
			}
		}
	}()
	up := "http://127.0.0.1:" + port
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(up + "/posts"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("json-server did not come up")
		}
	}

	g := startH2CGateway(t, up, "SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=100ms", "SSEGATE_LEGACY_INTERVAL=0")
	base := "http://" + g.addr
	req, _ := http.NewRequest("GET", base+"/posts", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := sse.Follow(resp.Body, 16)
	next := func(want string) sse.Event {
		t.Helper()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("stream ended waiting for %s", want)
				}
				if ev.Type == want {
					return ev
				}
				t.Fatalf("got a %s event %q, want %s", ev.Type, ev.Data, want)
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s event", want)
			}
		}
	}
	if ev := next("snapshot"); !strings.Contains(ev.Data, `"first"`) {
		t.Errorf("snapshot %q", ev.Data)
	}
	// Writes are ordinary requests: they pass through to json-server.
	write := func(method, path, body string, want int) {
		t.Helper()
		r, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s through the gateway: %s, want %d", method, path, resp.Status, want)
		}
	}
	write("POST", "/posts", `{"title":"second"}`, http.StatusCreated)
	var item struct {
		ID    int    `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(next("created").Data), &item); err != nil || item.ID != 2 || item.Title != "second" {
		t.Errorf("created %+v (%v), want post 2", item, err)
	}
	write("PATCH", "/posts/1", `{"title":"edited"}`, http.StatusOK)
	if ev := next("updated"); !strings.Contains(ev.Data, `"edited"`) {
		t.Errorf("updated %q", ev.Data)
	}
	write("DELETE", "/posts/2", ``, http.StatusOK)
	if ev := next("deleted"); !strings.Contains(ev.Data, `2`) {
		t.Errorf("deleted %q", ev.Data)
	}
	time.Sleep(500 * time.Millisecond) // a few unchanged polls
	if notModified.Load() == 0 {
		t.Error("json-server never answered 304: the gateway's polls were not conditional")
	}
	t.Logf("json-server answered %d polls with 304", notModified.Load())
}
