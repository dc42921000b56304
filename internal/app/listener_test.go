package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/nudge/nudgeapi"
)

// TestMainListenerRoutes: app composes the main listener, the nudge
// endpoint beside the proxy. Every other path, an unclean one included,
// still reaches the upstream as written (a ServeMux would redirect it).
func TestMainListenerRoutes(t *testing.T) {
	const token = "0123456789abcdef-nudge"
	up := newRecorder(t, list("X-Forwarded-Proto"))
	g := startGateway(t, up.URL, "SSEGATE_STREAM_PATHS=/api/", "SSEGATE_NUDGE_TOKEN="+token)
	c := g.client(t)
	subscribe(t, c, g.base+"/api/items", "Bearer alice", "").expect(t, "snapshot", has(`"id":1`))

	req, _ := http.NewRequest(http.MethodPost, g.base+nudgeapi.Path, strings.NewReader(`{"path":"/api/"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || strings.TrimSpace(string(body)) != `{"keys":1}` {
		t.Errorf("nudge on the main listener: got %d %s, want 202 {\"keys\":1}", resp.StatusCode, body)
	}

	for _, path := range []string{"/other//x", "/api/./y", nudgeapi.Path + "/z"} {
		req, _ = http.NewRequest(http.MethodGet, g.base, nil)
		req.URL.Opaque = path // sent as written
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: got %d, want the upstream's 200", path, resp.StatusCode)
		}
	}
	var passed []string
	for _, r := range up.requests(false) {
		passed = append(passed, r.uri)
	}
	if want := []string{"/other//x", "/api/./y", nudgeapi.Path + "/z"}; strings.Join(passed, " ") != strings.Join(want, " ") {
		t.Errorf("upstream got %q passed through, want %q", passed, want)
	}
}
