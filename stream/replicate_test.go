package stream_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/stream"
)

// pubSource hands its publisher to the test.
type pubSource chan stream.Publisher

func (s pubSource) Run(ctx context.Context, _ stream.Target, p stream.Publisher) {
	s <- p
	<-ctx.Done()
}

func events(ep stream.Epoch, from, to stream.ID) []*stream.Event {
	var evs []*stream.Event
	for id := from; id <= to; id++ {
		evs = append(evs, stream.NewEvent(ep, id, stream.KindCreated, fmt.Appendf(nil, "%d", id)))
	}
	return evs
}

// wireIDs returns the id line of each event.
func wireIDs(evs ...*stream.Event) string {
	var out []string
	for _, e := range evs {
		line, _, _ := strings.Cut(string(e.Wire()), "\n")
		kind := strings.SplitN(string(e.Wire()), "\n", 3)[1]
		out = append(out, strings.TrimPrefix(line, "id: ")+"/"+strings.TrimPrefix(kind, "event: "))
	}
	return strings.Join(out, " ")
}

func drain(sub *stream.Subscription) []*stream.Event {
	select {
	case <-sub.Wake():
		return sub.Take(nil)
	default:
		return nil
	}
}

// A replicated history keeps the shared ids: a client resumes with an id
// another replica issued and gets exactly what it missed, waits when it is
// ahead of this replica, and gets a snapshot only when the history starts
// over.
func TestReplicate(t *testing.T) {
	src := make(pubSource, 1)
	h := stream.NewHub(src, stream.Options{ClientBuffer: 8})
	defer h.Close()
	tg := stream.NewKeyer(nil).Target("/n", &url.URL{Scheme: "http", Host: "up", Path: "/n"}, http.Header{})
	sub := func(last string) *stream.Subscription {
		t.Helper()
		s, err := h.Subscribe(tg, last, "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}

	// Joined before the first state, resuming at E-3.
	early := sub("E-3")
	pub := <-src
	if err := pub.Replicate(stream.Replicated{Reset: true, Epoch: "E", Last: 5, Events: events("E", 3, 5), Body: []byte(`[5]`)}); err != nil {
		t.Fatal(err)
	}
	<-early.Ready()
	if got := wireIDs(append(early.Start(), drain(early)...)...); got != "E-4/created E-5/created" {
		t.Errorf("resume from E-3 before the first state got %q", got)
	}
	if got := wireIDs(sub("E-2").Start()...); got != "E-3/created E-4/created E-5/created" {
		t.Errorf("resume from the floor E-2 got %q", got)
	}
	if got := wireIDs(sub("").Start()...); got != "E-5/snapshot" {
		t.Errorf("a new client got %q, want the snapshot", got)
	}

	// Ahead of this replica: waits, then resumes at its id.
	ahead := sub("E-7")
	if got := ahead.Start(); len(got) != 0 {
		t.Errorf("a client ahead of the replica got %q at once", wireIDs(got...))
	}
	if err := pub.Replicate(stream.Replicated{Epoch: "E", Last: 6, Events: events("E", 6, 6)}); err != nil {
		t.Fatal(err)
	}
	if got := drain(early); wireIDs(got...) != "E-6/created" {
		t.Errorf("live event: %q", wireIDs(got...))
	}
	if got := drain(ahead); len(got) != 0 {
		t.Errorf("client at E-7 got %q at E-6", wireIDs(got...))
	}
	// The body of E-6 did not come: a new client waits for it.
	fresh := sub("")
	if got := fresh.Start(); len(got) != 0 {
		t.Errorf("a snapshot of a body not at hand: %q", wireIDs(got...))
	}
	if err := pub.Replicate(stream.Replicated{Epoch: "E", Last: 8, Events: events("E", 7, 8), Body: []byte(`[8]`)}); err != nil {
		t.Fatal(err)
	}
	if got := wireIDs(drain(ahead)...); got != "E-8/created" {
		t.Errorf("client at E-7 got %q, want E-8", got)
	}
	if got := wireIDs(drain(fresh)...); got != "E-8/snapshot" {
		t.Errorf("waiting new client got %q, want the snapshot at E-8", got)
	}

	// A gap without a body cannot be applied; with one, everybody starts over.
	err := pub.Replicate(stream.Replicated{Epoch: "F", Last: 2, Events: events("F", 2, 2)})
	if !errors.Is(err, stream.ErrNeedBody) {
		t.Fatalf("new epoch without a body: %v, want ErrNeedBody", err)
	}
	if err := pub.Replicate(stream.Replicated{Epoch: "F", Last: 2, Events: events("F", 2, 2), Body: []byte(`[]`)}); err != nil {
		t.Fatal(err)
	}
	if got := wireIDs(drain(early)...); got != "E-7/created E-8/created F-2/snapshot" {
		t.Errorf("after a new epoch: %q, want the snapshot of F", got)
	}
}
