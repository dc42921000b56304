package stream

import "sort"

// History is a bounded, ordered log of one key's events for resume.
//
// Besides the retained events it remembers its floor: the ID of the state
// just before the oldest retained event (the ID the key's first snapshot was
// sent with, or the last event that fell out of the ring). A client whose
// Last-Event-ID is the floor or a retained event can resume exactly; any other
// ID needs a fresh snapshot.
type History struct {
	ring  []*Event
	start int // index of the oldest event in ring
	n     int // events retained
	floor ID
}

// NewHistory returns an empty history that retains up to size events.
func NewHistory(size int) *History {
	return &History{ring: make([]*Event, size)}
}

// Reset forgets every event; id becomes the only known point.
func (h *History) Reset(id ID) {
	clear(h.ring)
	h.start, h.n, h.floor = 0, 0, id
}

// Append adds e, whose ID must be larger than Last, dropping the oldest event
// when full.
func (h *History) Append(e *Event) {
	if h.n == len(h.ring) {
		h.floor = h.ring[h.start].ID
		h.ring[h.start] = e
		h.start = (h.start + 1) % len(h.ring)
		return
	}
	h.ring[(h.start+h.n)%len(h.ring)] = e
	h.n++
}

// Last is the ID of the newest known state.
func (h *History) Last() ID {
	if h.n == 0 {
		return h.floor
	}
	return h.at(h.n - 1).ID
}

// Len is the number of retained events.
func (h *History) Len() int { return h.n }

func (h *History) at(i int) *Event { return h.ring[(h.start+i)%len(h.ring)] }

// Since returns the events after id, oldest first. ok is false when id is not
// a known point (never seen, expired, or zero).
func (h *History) Since(id ID) (events []*Event, ok bool) {
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

func (h *History) copyFrom(i int) []*Event {
	if i >= h.n {
		return nil
	}
	out := make([]*Event, 0, h.n-i)
	for ; i < h.n; i++ {
		out = append(out, h.at(i))
	}
	return out
}
