package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/legacyapi"
)

// esScript runs the npm eventsource package (v3, the WHATWG EventSource on
// fetch) against a URL, with a bearer token, and prints one JSON line per
// open, error and event, until it is killed.
const esScript = `
const { EventSource } = require("eventsource");
const [url, token] = process.argv.slice(1); // node -e: no script path in argv
const es = new EventSource(url, {
  fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, Authorization: "Bearer " + token } }),
});
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
es.addEventListener("open", () => out({ type: "open" }));
es.addEventListener("error", () => out({ type: "error", state: es.readyState }));
for (const t of ["snapshot", "created", "updated", "deleted", "patch"]) {
  es.addEventListener(t, (e) => out({ type: t, id: e.lastEventId, data: e.data }));
}
`

// eventsourceModule returns the node_modules directory holding the npm
// eventsource package: SSEGATE_EVENTSOURCE_DIR (set by .ci/run, which
// installs it), or skips unless SSEGATE_EVENTSOURCE_REQUIRE=1.
func eventsourceModule(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SSEGATE_EVENTSOURCE_DIR")
	_, nodeErr := exec.LookPath("node")
	if dir == "" || nodeErr != nil {
		if os.Getenv("SSEGATE_EVENTSOURCE_REQUIRE") == "1" {
			t.Fatal("node and the npm eventsource package are required (SSEGATE_EVENTSOURCE_DIR)")
		}
		t.Skip("no node or SSEGATE_EVENTSOURCE_DIR (npm install eventsource@3; .ci/run does)")
	}
	if _, err := os.Stat(filepath.Join(dir, "eventsource", "package.json")); err != nil {
		t.Fatalf("SSEGATE_EVENTSOURCE_DIR: %v", err)
	}
	return dir
}

// TestNPMEventSource: the npm eventsource client, as a Node.js page would
// use it, gets the snapshot and every change exactly once, also across the
// reconnects the gateway causes (streams end after about a second) with its
// Last-Event-ID, and never a second snapshot.
func TestNPMEventSource(t *testing.T) {
	modules := eventsourceModule(t)
	api := legacyapi.New()
	api.Add("alice", `{"id":1,"title":"first"}`)
	up := httptest.NewServer(api)
	defer up.Close()
	g := startH2CGateway(t, up.URL,
		"SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=100ms", "SSEGATE_LEGACY_INTERVAL=0",
		"SSEGATE_STREAM_MAX_DURATION=1s", "SSEGATE_RETRY=200ms")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "-e", esScript, "http://"+g.addr+legacyapi.Path, "alice")
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()

	type line struct{ Type, ID, Data string }
	lines := make(chan line, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var l line
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()

	const changes = 12
	opens, snapshots := 0, 0
	created := map[string]int{}
	var lastID string
	next := 2
	added := time.NewTicker(250 * time.Millisecond)
	defer added.Stop()
	deadline := time.After(45 * time.Second)
	for len(created) < changes || opens < 3 {
		select {
		case <-added.C:
			// Changes start once the client has its snapshot: a slow
			// start of node would otherwise put the first ones in it.
			if snapshots > 0 && next <= changes+1 {
				api.Add("alice", fmt.Sprintf(`{"id":%d,"title":"item %d"}`, next, next))
				next++
			}
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the node client exited")
			}
			switch l.Type {
			case "open":
				opens++
			case "snapshot":
				snapshots++
			case "created":
				var it struct{ ID int }
				json.Unmarshal([]byte(l.Data), &it)
				created[fmt.Sprint(it.ID)]++
			}
			if l.ID != "" {
				if lastID != "" && !after(l.ID, lastID) {
					t.Errorf("event id %s after %s: not increasing", l.ID, lastID)
				}
				lastID = l.ID
			}
		case <-deadline:
			t.Fatalf("after 45 s: %d opens, %d snapshots, created %v", opens, snapshots, created)
		}
	}
	t.Logf("%d opens (reconnects with Last-Event-ID), %d snapshots, %d changes", opens, snapshots, len(created))
	if snapshots != 1 {
		t.Errorf("%d snapshots, want only the first: every reconnect should resume", snapshots)
	}
	for id, n := range created {
		if n != 1 {
			t.Errorf("item %s created %d times, want once", id, n)
		}
	}
}

// after reports whether wire id a follows b in the same epoch.
func after(a, b string) bool {
	ea, sa, _ := strings.Cut(a, "-")
	eb, sb, _ := strings.Cut(b, "-")
	var na, nb int
	fmt.Sscan(sa, &na)
	fmt.Sscan(sb, &nb)
	return ea == eb && na > nb
}
