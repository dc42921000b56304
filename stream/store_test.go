package stream_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/stream"
)

// fixedStore is a Store whose epoch is its own, as a shared store reads it.
type fixedStore struct {
	ep   stream.Epoch
	last stream.ID
	body []byte
	h    *stream.History
}

func (s *fixedStore) Reset(body []byte) (stream.Epoch, stream.ID, error) {
	s.last, s.body = 41, body
	s.h.Reset(s.last)
	return s.ep, s.last, nil
}

func (s *fixedStore) Append(body []byte, cs []stream.Change) ([]*stream.Event, error) {
	s.body = body
	var evs []*stream.Event
	for _, c := range cs {
		s.last++
		e := stream.NewEvent(s.ep, s.last, c.Kind, c.Data)
		s.h.Append(e)
		evs = append(evs, e)
	}
	return evs, nil
}

func (s *fixedStore) Since(after string) ([]*stream.Event, bool, error) {
	id, ok := s.ep.Parse(after)
	if !ok {
		return nil, false, nil
	}
	evs, ok := s.h.Since(id)
	return evs, ok, nil
}

func (s *fixedStore) Current() (stream.Epoch, stream.ID, []byte, bool) {
	return s.ep, s.last, s.body, s.body != nil
}

// pubSource hands its publisher to the test.
type pubSource chan stream.Publisher

func (s pubSource) Run(ctx context.Context, _ stream.Target, p stream.Publisher) {
	s <- p
	<-ctx.Done()
}

// The hub takes ids and history from the key's store: the epoch and the
// sequence are the store's, and a resume is answered from its history.
func TestHubUsesStore(t *testing.T) {
	src := make(pubSource, 1)
	h := stream.NewHub(src, stream.Options{Store: func(stream.Target) stream.Store {
		return &fixedStore{ep: "shared", h: stream.NewHistory(10, 0)}
	}})
	defer h.Close()
	tg := stream.NewKeyer(nil).Target("/n", &url.URL{Scheme: "http", Host: "up", Path: "/n"}, http.Header{})
	a, err := h.Subscribe(tg, "", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	pub := <-src
	pub.Publish([]byte(`[]`), nil)
	snap := nextEvent(t, a)
	if got := string(snap.Wire()); !strings.HasPrefix(got, "id: shared-41\nevent: snapshot\n") {
		t.Fatalf("first event %q, want the store's epoch and id", got)
	}
	pub.Publish([]byte(`[1]`), []stream.Change{{Kind: stream.KindCreated, Data: []byte(`1`)}})
	nextEvent(t, a)
	b, err := h.Subscribe(tg, "shared-41", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	backlog := b.Start()
	if len(backlog) != 1 || !strings.HasPrefix(string(backlog[0].Wire()), "id: shared-42\nevent: created\n") {
		t.Fatalf("resume from shared-41 got %d events, want the created event shared-42", len(backlog))
	}
}

// The in-memory store draws a new epoch for each life and resumes only
// from ids of its own.
func TestMemoryStore(t *testing.T) {
	s := stream.NewMemoryStore(10, 0)
	if _, ok, _ := s.Since(""); ok {
		t.Error("an empty store resumed from nothing")
	}
	ep, id, err := s.Reset([]byte(`a`))
	if err != nil {
		t.Fatal(err)
	}
	if id != 1 {
		t.Errorf("first id %d, want 1", id)
	}
	evs, err := s.Append([]byte(`b`), []stream.Change{{Kind: stream.KindPatch, Data: []byte(`[]`)}})
	if err != nil || len(evs) != 1 || evs[0].ID != 2 {
		t.Fatalf("appended %v, want one event with id 2", evs)
	}
	if got, ok, _ := s.Since(ep.Format(1)); !ok || len(got) != 1 {
		t.Errorf("Since(first) = %d events, %v; want 1, true", len(got), ok)
	}
	if _, ok, _ := s.Since("other-1"); ok {
		t.Error("resumed from another epoch")
	}
	if ep2, _, _ := s.Reset([]byte(`c`)); ep2 == ep {
		t.Error("a reset kept the epoch")
	}
	if cur, last, body, ok := s.Current(); !ok || last != 1 || string(body) != "c" || cur == ep {
		t.Errorf("Current() = %v %v %q %v after a reset", cur, last, body, ok)
	}
}
