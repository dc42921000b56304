package stream_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ssegate/ssegate/stream"
)

// idleSource never publishes: its keys stay pending until their end.
type idleSource struct{}

func (idleSource) Run(ctx context.Context, _ stream.Target, _ stream.Publisher) { <-ctx.Done() }

// A nudge over 10,000 keys runs its matcher (which builds a request per key
// in the nudge handler) outside the hub's lock: a stream for a new key is
// admitted while the matcher is stopped on its first call.
func TestNudgeDoesNotBlockAdmission(t *testing.T) {
	const keys = 10_000
	h := stream.NewHub(idleSource{}, stream.Options{})
	defer h.Close()
	k := stream.NewKeyer(nil)
	target := func(i int) stream.Target {
		p := "/k/" + strconv.Itoa(i)
		return k.Target(p, &url.URL{Scheme: "http", Host: "upstream", Path: p}, http.Header{})
	}
	for i := range keys {
		sub, err := h.Subscribe(target(i), "", "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
	}

	entered, admitted := make(chan struct{}), make(chan struct{})
	var once sync.Once
	nudged := make(chan int)
	go func() {
		nudged <- h.Nudge(func(stream.Target) bool {
			once.Do(func() { close(entered); <-admitted })
			return true
		})
	}()
	<-entered
	subscribed := make(chan error, 1)
	go func() {
		sub, err := h.Subscribe(target(keys), "", "192.0.2.2")
		if err == nil {
			defer sub.Close()
		}
		subscribed <- err
	}()
	select {
	case err := <-subscribed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second): // generous: it takes microseconds unless blocked
		close(admitted)
		t.Fatal("a new key was not admitted while a nudge's matcher ran")
	}
	close(admitted)
	if n := <-nudged; n != keys {
		t.Errorf("nudge signalled %d keys, want %d", n, keys)
	}
}
