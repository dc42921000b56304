package proxy_test

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// A key's history costs its events' encodings once, within HistoryBytes, and
// resuming from its oldest event costs no buffer the size of the backlog,
// however many clients do it at once. Through real sockets, outside synctest,
// so the heap measured is the real one.
func TestHubHistoryMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 100 MB")
	}
	const (
		changes  = 200
		size     = 100 << 10
		bound    = 24 << 20 // holds all 200 encodings (about 20 MB)
		clients  = 4
		slackMiB = 4
	)
	src := newSource()
	h := stream.NewHub(src, stream.Options{HistoryBytes: bound, Registerer: prometheus.NewRegistry()})
	defer h.Close()
	streams := proxy.NewStreamer(h, proxy.StreamOptions{})
	k := stream.NewKeyer([]string{"Authorization"})
	up := &url.URL{Scheme: "http", Host: "upstream", Path: "/n"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		streams.ServeStream(w, r, k.Target(r.URL.Path, up, r.Header))
	}))
	defer srv.Close()
	get := func(lastID string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/n", nil)
		req.Header.Set("Authorization", "alice")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	firstc := make(chan *http.Response, 1)
	go func() { firstc <- get("") }() // answered once the first body is published
	var r *run
	select {
	case r = <-src.runs:
	case <-time.After(10 * time.Second):
		t.Fatal("no source run started")
	}
	r.pub.Publish([]byte(`"start"`), nil)
	first := <-firstc
	snap, err := sse.NewReader(first.Body).Next()
	first.Body.Close()
	if err != nil {
		t.Fatal(err)
	}

	heap := func() runtime.MemStats {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m
	}
	base := heap()
	for i := range changes {
		data := bytes.Repeat([]byte{'a' + byte(i%26)}, size)
		r.pub.Publish(data, []stream.Change{{Kind: stream.KindUpdated, Data: data}})
	}
	held := heap()
	if grew := int64(held.HeapAlloc) - int64(base.HeapAlloc); grew > bound+slackMiB<<20 {
		t.Errorf("history of %d events of %d KB holds %d MB, want at most the bound %d MB + %d MB",
			changes, size>>10, grew>>20, bound>>20, slackMiB)
	}

	// Peak heap during the resume is at most the heap before it plus what
	// was allocated meanwhile.
	var wg sync.WaitGroup
	for range clients {
		resp := get(snap.ID)
		wg.Go(func() {
			defer resp.Body.Close()
			if n, err := countEvents(resp.Body, changes); err != nil || n != changes {
				t.Errorf("resumed %d events (%v), want %d", n, err, changes)
			}
		})
	}
	wg.Wait()
	after := heap()
	if alloc := after.TotalAlloc - held.TotalAlloc; alloc > slackMiB<<20 {
		t.Errorf("%d clients resuming %d MB each allocated %d MB, want at most %d MB",
			clients, changes*size>>20, alloc>>20, slackMiB)
	}
}

// countEvents reads until it has seen want "id:" lines, without holding a
// line in memory.
func countEvents(body interface{ Read([]byte) (int, error) }, want int) (int, error) {
	br := bufio.NewReaderSize(body, 32<<10)
	n, atStart := 0, true
	for n < want {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			atStart = false
			continue
		}
		if err != nil {
			return n, err
		}
		if atStart && bytes.HasPrefix(line, []byte("id: ")) {
			n++
		}
		atStart = true
	}
	return n, nil
}
