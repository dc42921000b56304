package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Floor is the stock net/http SSE server a Go developer would write without
// ssegate: one handler goroutine and one channel per client, a broadcast
// that loops over the channels. The benchmark runs it beside the gateway as
// the denominator of its ratios. GET /events streams; POST /publish sends
// its body to every client as one event.
type Floor struct {
	mu      sync.Mutex
	clients map[chan []byte]struct{}
}

// NewFloor returns a Floor with no clients.
func NewFloor() *Floor { return &Floor{clients: map[chan []byte]struct{}{}} }

func (f *Floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/publish" {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.Publish(body)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, "data: {}\n\n"); err != nil { // the first event, as a snapshot would be
		return
	}
	flusher := w.(http.Flusher)
	flusher.Flush()
	ch := make(chan []byte, 16)
	f.mu.Lock()
	f.clients[ch] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.clients, ch)
		f.mu.Unlock()
	}()
	for {
		select {
		case msg := <-ch:
			if _, err := w.Write(msg); err != nil {
				return
			}
			flusher.Flush()
		case <-r.Context().Done():
			return
		}
	}
}

// Publish sends data to every client as one event.
func (f *Floor) Publish(data []byte) {
	msg := []byte("data: " + strings.ReplaceAll(string(data), "\n", "\ndata: ") + "\n\n")
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.clients {
		select {
		case ch <- msg:
		default: // a slow client misses it
		}
	}
}

// FloorChange returns a Change func that publishes item ItemID(n) through
// the floor server at base (https://host:port).
func FloorChange(base string) func(ctx context.Context, n int, users []string) (time.Time, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: insecureTransport()}
	return func(ctx context.Context, n int, _ []string) (time.Time, error) {
		at := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/publish", strings.NewReader(fmt.Sprintf(`{"id":%d}`, ItemID(n))))
		if err != nil {
			return at, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return at, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return at, fmt.Errorf("publish: %s", resp.Status)
		}
		return at, nil
	}
}
