package stream

import "sort"

// history is a bounded, ordered log of one key's events for resume, bounded
// both by count and by the bytes of the events' wire encodings.
//
// Besides the retained events it remembers its floor: the ID of the state
// just before the oldest retained event (the ID the key's first snapshot was
// sent with, or the last event that fell out). A client whose Last-Event-ID
// is the floor or a retained event can resume exactly; any other ID needs a
// fresh snapshot.
type history struct {
	ring     []*Event
	start    int // index of the oldest event in ring
	n        int // events retained
	bytes    int // sum of the retained events' Size
	maxBytes int // 0: no byte bound
	floor    ID
}

// newHistory returns an empty history that retains up to size events and up
// to maxBytes of their encodings (0: no byte bound). An event larger than
// maxBytes is not retained at all: it becomes the floor at once.
func newHistory(size, maxBytes int) *history {
	return &history{ring: make([]*Event, size), maxBytes: maxBytes}
}

// Reset forgets every event; id becomes the only known point.
func (h *history) Reset(id ID) {
	clear(h.ring)
	h.start, h.n, h.bytes, h.floor = 0, 0, 0, id
}

// Append adds e, whose ID must be larger than Last, dropping the oldest
// events while over either bound.
func (h *history) Append(e *Event) {
	if h.n == len(h.ring) {
		h.dropOldest()
	}
	h.ring[(h.start+h.n)%len(h.ring)] = e
	h.n++
	h.bytes += e.Size()
	for h.maxBytes > 0 && h.bytes > h.maxBytes {
		h.dropOldest()
	}
}

func (h *history) dropOldest() {
	e := h.ring[h.start]
	h.floor = e.ID
	h.bytes -= e.Size()
	h.ring[h.start] = nil
	h.start = (h.start + 1) % len(h.ring)
	h.n--
}

// Last is the ID of the newest known state.
func (h *history) Last() ID {
	if h.n == 0 {
		return h.floor
	}
	return h.at(h.n - 1).ID
}

// Len is the number of retained events.
func (h *history) Len() int { return h.n }

// Bytes is the retained events' total Size.
func (h *history) Bytes() int { return h.bytes }

func (h *history) at(i int) *Event { return h.ring[(h.start+i)%len(h.ring)] }

// Since returns the events after id, oldest first. ok is false when id is not
// a known point (never seen, expired, or zero).
func (h *history) Since(id ID) (events []*Event, ok bool) {
	if id == 0 {
		return nil, false
	}
	if id == h.floor {
		return h.copyFrom(0), true
	}
	i := sort.Search(h.n, func(i int) bool { return h.at(i).ID >= id })
	if i == h.n || h.at(i).ID != id {
		return nil, false
	}
	return h.copyFrom(i + 1), true
}

func (h *history) copyFrom(i int) []*Event {
	if i >= h.n {
		return nil
	}
	out := make([]*Event, 0, h.n-i)
	for ; i < h.n; i++ {
		out = append(out, h.at(i))
	}
	return out
}
