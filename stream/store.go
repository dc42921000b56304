package stream

// Store keeps one key's events for the hub: the current body, the ids of
// its states (an epoch the store draws or reads, and a sequence) and the
// history a client resumes from. The hub calls a key's store under the
// key's lock, one call at a time, so a store needs no lock of its own; the
// in-memory one is the default, and a store shared by replicas (Redis, see
// package fleet) can implement the same four methods.
type Store interface {
	// Reset starts a new life of the key with body as its first state: the
	// history is forgotten and the store sets the epoch. It returns the
	// position of that state, which every client's first snapshot carries.
	Reset(body []byte) (Epoch, ID, error)
	// Append makes body the current state, reached from the previous one by
	// changes, and returns those changes as events with their ids, each
	// encoded once: the hub shares those bytes with every subscriber.
	Append(body []byte, changes []Change) ([]*Event, error)
	// Since returns the events after the wire id after (as a client sent
	// it), oldest first. ok is false when after is no known point of this
	// life of the key: empty, malformed, another epoch, or expired.
	Since(after string) (events []*Event, ok bool, err error)
	// Current returns the position of the newest state and its body, as
	// this store last wrote or read them; ok is false before the first Reset.
	Current() (ep Epoch, last ID, body []byte, ok bool)
}

// memStore is the in-memory Store: a History ring bounded by count and
// bytes, and a random epoch per life of the key.
type memStore struct {
	epoch   Epoch
	last    ID // the newest ID issued
	body    []byte
	history *History
	started bool
}

// NewMemoryStore returns an in-memory store that keeps up to size events
// and maxBytes of their encodings (0: no byte bound) for resume.
func NewMemoryStore(size, maxBytes int) Store {
	return &memStore{history: NewHistory(size, maxBytes)}
}

func (s *memStore) Reset(body []byte) (Epoch, ID, error) {
	s.epoch, s.last, s.body, s.started = NewEpoch(), 1, body, true
	s.history.Reset(s.last)
	return s.epoch, s.last, nil
}

func (s *memStore) Append(body []byte, changes []Change) ([]*Event, error) {
	s.body = body
	evs := make([]*Event, 0, len(changes))
	for _, c := range changes {
		s.last++
		e := NewEvent(s.epoch, s.last, c.Kind, c.Data)
		s.history.Append(e)
		evs = append(evs, e)
	}
	return evs, nil
}

func (s *memStore) Since(after string) ([]*Event, bool, error) {
	if !s.started {
		return nil, false, nil
	}
	id, ok := s.epoch.Parse(after)
	if !ok {
		return nil, false, nil
	}
	evs, ok := s.history.Since(id)
	return evs, ok, nil
}

func (s *memStore) Current() (Epoch, ID, []byte, bool) {
	return s.epoch, s.last, s.body, s.started
}
