package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/internal/sse"
)

// eventSource behaves like a browser's EventSource feeding a page that
// keeps a list: it reconnects after a clean end with its Last-Event-ID,
// replaces the list on a snapshot and applies created/deleted events.
type eventSource struct {
	mu         sync.Mutex
	items      []int // ids, newest first
	snapshots  int
	reconnects int
	dups       int
	dropEvery  int // when > 0, drop the connection after about one event in dropEvery
}

func (es *eventSource) run(ctx context.Context, t *testing.T, c *http.Client, url, auth string) {
	last := ""
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", auth)
		if last != "" {
			req.Header.Set("Last-Event-ID", last)
		}
		resp, err := c.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			t.Errorf("reconnect answered %d: an EventSource would give up", resp.StatusCode)
			return
		}
		r := sse.NewReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				break
			}
			last = ev.ID
			var it struct{ ID int }
			es.mu.Lock()
			switch ev.Type {
			case "snapshot":
				var list []struct{ ID int }
				json.Unmarshal([]byte(ev.Data), &list)
				es.items = es.items[:0]
				for _, x := range list {
					es.items = append(es.items, x.ID)
				}
				es.snapshots++
			case "created":
				json.Unmarshal([]byte(ev.Data), &it)
				if slices.Contains(es.items, it.ID) {
					es.dups++
				}
				es.items = append([]int{it.ID}, es.items...)
			case "deleted":
				json.Unmarshal([]byte(ev.Data), &it)
				es.items = slices.DeleteFunc(es.items, func(x int) bool { return x == it.ID })
			}
			es.mu.Unlock()
			if es.dropEvery > 0 && rand.N(es.dropEvery) == 0 {
				break // the network drops the connection mid-stream
			}
		}
		resp.Body.Close()
		es.mu.Lock()
		es.reconnects++
		es.mu.Unlock()
		time.Sleep(20 * time.Millisecond) // the retry delay
	}
}

// TestResumeUnderEvictions: a client with a tiny buffer is cut off again
// and again while changes arrive split over polls at random: evicted when
// its queue fills, or its connection dropped by the network (a poll with
// more changes than the buffer holds arrives as one snapshot, so bursts
// alone no longer evict); like a browser it reconnects with its
// Last-Event-ID. Its list must always end up equal to
// the upstream's, with nothing lost and nothing twice.
func TestResumeUnderEvictions(t *testing.T) {
	up := newUpstream()
	defer up.Close()
	up.Add("alice", `{"id":1}`)
	g := startGateway(t, up.URL, "SSEGATE_CLIENT_BUFFER=2", "SSEGATE_POLL_INTERVAL=100ms", "SSEGATE_POLL_INTERVAL_MAX=100ms")
	ctx, cancel := context.WithCancel(context.Background())
	es := &eventSource{dropEvery: 8}
	done := make(chan struct{})
	go func() { defer close(done); es.run(ctx, t, g.client(t), g.base+"/api/notifications", "Bearer alice") }()
	defer func() { cancel(); <-done }()

	want := func() []int {
		var ids []int
		for _, raw := range up.Items("alice") {
			var it struct{ ID int }
			json.Unmarshal(raw, &it)
			ids = append(ids, it.ID)
		}
		return ids
	}
	next := 2
	for round := range 30 {
		n := 1 + rand.N(40)
		for i := range n {
			up.Add("alice", fmt.Sprintf(`{"id":%d}`, next))
			next++
			if i%7 == 3 {
				time.Sleep(time.Duration(rand.N(150)) * time.Millisecond) // let a poll split the burst
			}
		}
		if w := want(); round%3 == 0 && len(w) > 5 { // a short first burst has nothing to delete
			for _, id := range w[5:min(8, len(w))] {
				up.Delete("alice", fmt.Sprint(id))
			}
		}
		time.Sleep(time.Duration(rand.N(300)) * time.Millisecond)
	}
	deadline := time.Now().Add(failAfter)
	for {
		es.mu.Lock()
		got, dups := slices.Clone(es.items), es.dups
		es.mu.Unlock()
		w := want()
		slices.Sort(got)
		slices.Sort(w)
		// Order within one poll's batch differs (created events come in
		// the upstream's order and this client prepends): compare the sets.
		if slices.Equal(got, w) && dups == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client list (%d items, %d duplicates) never matched the upstream (%d items)\n got %v\nwant %v", len(got), dups, len(want()), got, want())
		}
		time.Sleep(50 * time.Millisecond)
	}
	es.mu.Lock()
	defer es.mu.Unlock()
	t.Logf("%d reconnects, %d snapshots, evicted %s", es.reconnects, es.snapshots, g.metricValue(t, `ssegate_clients_evicted_total{reason="slow"}`))
	if es.reconnects == 0 {
		t.Error("the client was never evicted: the test did not exercise a resume")
	}
}
