package stream_test

import (
	"slices"
	"testing"

	"github.com/ssegate/ssegate/stream"
)

func ids(evs []*stream.Event) []stream.ID {
	out := []stream.ID{}
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestHistorySince(t *testing.T) {
	h := stream.NewHistory(3, 0)
	h.Reset(10)
	for _, id := range []stream.ID{12, 15, 17} {
		h.Append(&stream.Event{ID: id})
	}
	tests := []struct {
		since  stream.ID
		want   []stream.ID
		wantOK bool
	}{
		{10, []stream.ID{12, 15, 17}, true}, // the floor: the first snapshot's ID
		{12, []stream.ID{15, 17}, true},
		{17, []stream.ID{}, true}, // up to date
		{0, nil, false},
		{11, nil, false}, // between known points: not ours
		{18, nil, false}, // from the future (another process)
		{9, nil, false},
	}
	for _, tt := range tests {
		got, ok := h.Since(tt.since)
		if ok != tt.wantOK || ok && !slices.Equal(ids(got), tt.want) {
			t.Errorf("Since(%d) = %v, %v; want %v, %v", tt.since, ids(got), ok, tt.want, tt.wantOK)
		}
	}
	if got := h.Last(); got != 17 {
		t.Errorf("Last() = %d, want 17", got)
	}
}

func TestHistoryRingDropsOldest(t *testing.T) {
	h := stream.NewHistory(2, 0)
	h.Reset(1)
	for id := stream.ID(2); id <= 5; id++ {
		h.Append(&stream.Event{ID: id})
	}
	if _, ok := h.Since(1); ok {
		t.Error("Since(1) ok after it expired, want a fresh snapshot")
	}
	if _, ok := h.Since(2); ok {
		t.Error("Since(2) ok after it expired, want a fresh snapshot")
	}
	got, ok := h.Since(3) // the floor now: event 3 fell out, but the state after it is known
	if !ok || !slices.Equal(ids(got), []stream.ID{4, 5}) {
		t.Errorf("Since(3) = %v, %v; want [4 5], true", ids(got), ok)
	}
	if h.Len() != 2 || h.Last() != 5 {
		t.Errorf("Len, Last = %d, %d; want 2, 5", h.Len(), h.Last())
	}
}

func TestHistoryByteBound(t *testing.T) {
	ev := func(id stream.ID, n int) *stream.Event {
		return stream.NewEvent("ep", id, stream.KindUpdated, make([]byte, n))
	}
	size := ev(1, 100).Size()
	h := stream.NewHistory(100, 2*size+size/2) // room for two events of 100 bytes
	h.Reset(1)
	for id := stream.ID(2); id <= 5; id++ {
		h.Append(ev(id, 100))
	}
	if h.Len() != 2 || h.Bytes() != 2*size {
		t.Errorf("Len, Bytes = %d, %d; want 2, %d", h.Len(), h.Bytes(), 2*size)
	}
	if got, ok := h.Since(3); !ok || !slices.Equal(ids(got), []stream.ID{4, 5}) {
		t.Errorf("Since(3) = %v, %v; want [4 5], true", ids(got), ok)
	}
	if _, ok := h.Since(2); ok {
		t.Error("Since(2) ok after it fell out by bytes, want a fresh snapshot")
	}
	// An event larger than the bound is not kept, but its state is known:
	// a client that saw it resumes with nothing to catch up.
	h.Append(ev(6, 1000))
	if h.Len() != 0 || h.Bytes() != 0 || h.Last() != 6 {
		t.Errorf("after an oversized event: Len, Bytes, Last = %d, %d, %d; want 0, 0, 6", h.Len(), h.Bytes(), h.Last())
	}
	if got, ok := h.Since(6); !ok || len(got) != 0 {
		t.Errorf("Since(6) = %v, %v; want [], true", ids(got), ok)
	}
	if _, ok := h.Since(5); ok {
		t.Error("Since(5) ok, but event 6 is not retained")
	}
}
