package stream

// store is one key's current body, the ids of its states (an epoch and a
// sequence) and the history a client resumes from. The hub calls it under
// the key's lock.
//
// Its ids come from one of two places. A source that polls alone publishes
// bodies and changes and the store numbers them in an epoch of its own
// (reset, append). A source that shares the key with other replicas
// (package fleet) replicates a history a shared store numbered (adopt,
// extend), so that an id issued by any replica means the same on all.
type store struct {
	epoch   Epoch
	last    ID // the newest ID issued
	body    []byte
	fresh   bool // body is the state at last (a replicated update may bring events without it)
	history *history
	started bool
	// replicated: the ids come from a shared store, so a client may hold
	// one this replica has not reached yet. Alone, such an id is forged.
	replicated bool
}

func newStore(size, maxBytes int) *store {
	return &store{history: newHistory(size, maxBytes)}
}

// reset starts a new life of the key, in a new epoch, with body as its
// first state, which every client's first snapshot carries.
func (s *store) reset(body []byte) {
	s.adopt(NewEpoch(), 1, body, nil)
	s.replicated = false
}

// append makes body the current state, reached from the previous one by
// changes, and returns those changes as events with the next ids.
func (s *store) append(body []byte, changes []Change) []*Event {
	s.body, s.fresh = body, true
	evs := make([]*Event, 0, len(changes))
	for _, c := range changes {
		s.last++
		e := NewEvent(s.epoch, s.last, c.Kind, c.Data)
		s.history.Append(e)
		evs = append(evs, e)
	}
	return evs
}

// adopt starts over from a replicated state: body at last in epoch ep, with
// events the history that leads to it (their IDs consecutive, ending at
// last; none: no history).
func (s *store) adopt(ep Epoch, last ID, body []byte, events []*Event) {
	s.epoch, s.last, s.body, s.fresh, s.started, s.replicated = ep, last, body, true, true, true
	floor := last
	if len(events) > 0 {
		floor = events[0].ID - 1
	}
	s.history.Reset(floor)
	for _, e := range events {
		s.history.Append(e)
	}
}

// extend appends replicated events that follow last without a gap; body is
// the state after them, or nil when the update did not carry it.
func (s *store) extend(events []*Event, body []byte) {
	for _, e := range events {
		s.history.Append(e)
		s.last = e.ID
	}
	if body != nil {
		s.body, s.fresh = body, true
	} else if len(events) > 0 {
		s.fresh = false
	}
}

// since returns the events after the wire id after (as a client sent it),
// oldest first. ok is false when after is no known point of this life of
// the key: empty, malformed, another epoch, or expired. ahead is true when
// after is of this replicated epoch but newer than the store's state:
// another replica issued it and this one has not caught up yet.
func (s *store) since(after string) (events []*Event, ok, ahead bool) {
	if !s.started {
		return nil, false, false
	}
	id, ok := s.epoch.Parse(after)
	if !ok {
		return nil, false, false
	}
	if id > s.last {
		return nil, false, s.replicated
	}
	events, ok = s.history.Since(id)
	return events, ok, false
}
