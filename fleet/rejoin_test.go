package fleet

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/logtest"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// A key that comes back to a replica just as its previous life there ends
// (its linger ran out, a client arrives) is shared again, not polled alone
// because the previous life still followed it.
func TestKeyBackAtItsExpiryIsShared(t *testing.T) {
	v := newEnv(t)
	e := v.open()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"id":1}]`))
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/items")
	var logs logtest.Buffer
	p := poller.New(poller.Options{Interval: 50 * time.Millisecond, Shared: e.Shared(), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const linger = 30 * time.Millisecond
	h := stream.NewHub(p, stream.Options{HistorySize: 100, Linger: linger})
	defer func() { h.Close(); p.Close() }()
	target := stream.NewKeyer(nil).Target("/items", u, http.Header{})
	for i := range 40 {
		sub, err := h.Subscribe(target, "", "")
		if err != nil {
			t.Fatal(err)
		}
		waitStart(t, sub)
		sub.Close()
		// Back around the moment the linger runs out.
		time.Sleep(linger + time.Duration(i%8)*time.Millisecond/2)
	}
	if s := logs.String(); strings.Contains(s, "polling it alone") {
		t.Errorf("a key back at its expiry was polled alone:\n%s", s)
	}
}
