package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ssegate/ssegate/stream"
)

// Position is a point in a key's history: the epoch of its current life and
// the ID of the newest event (1 is the first body). The zero Position means
// "no state".
type Position struct {
	Epoch stream.Epoch
	Last  stream.ID
	// tag names the append that wrote Last, when known: two histories
	// that reuse an id in one epoch (a failover lost appends) differ in it.
	tag string
}

// Format is the position's wire id, "<epoch>-<id>".
func (p Position) Format() string { return p.Epoch.Format(p.Last) }

// Entry is one event of a key's history.
type Entry struct {
	ID   stream.ID
	Kind stream.Kind
	Data []byte
}

// State is a key's current state in Redis.
type State struct {
	Position
	Body         []byte
	ETag         string
	LastModified string
}

// Write is one poll's outcome, as the holder appends it.
type Write struct {
	Body         []byte
	ETag         string
	LastModified string
	// Changes become events with the next IDs. Ignored for a first body,
	// which every client receives as a snapshot. None: only the body and
	// validators are stored (no event, no notification).
	Changes []stream.Change
}

// Append writes w after prev, which must be the key's current position in
// Redis; the zero prev writes a first body, which draws a new epoch and is
// allowed only while the key has no state. On success it returns the new
// position. If the key moved on (another writer, or the state was lost) it
// returns ErrConflict and the key's current position (zero without state),
// and writes nothing: the caller reads State and carries on from there.
func (e *Engine) Append(ctx context.Context, key string, prev Position, w Write) (Position, error) {
	if err := checkKey(key); err != nil {
		return Position{}, err
	}
	args := make([]any, 0, 13+2*len(w.Changes))
	args = append(args, e.token, string(prev.Epoch), uint64(prev.Last), prev.tag, string(stream.NewEpoch()), randomHex(8),
		w.Body, w.ETag, w.LastModified, e.opts.HistorySize, e.opts.HistoryBytes,
		e.opts.StateTTL.Milliseconds(), e.notifyChannel(key))
	if prev.Epoch != "" {
		for _, c := range w.Changes {
			args = append(args, uint8(c.Kind), c.Data)
		}
	}
	var res []any
	err := e.do(ctx, opAppend, func(ctx context.Context) (err error) {
		res, err = appendScript.Run(ctx, e.rdb, []string{e.names.state(key), e.names.events(key)}, args...).Slice()
		return err
	})
	if err != nil {
		return Position{}, err
	}
	if len(res) != 4 {
		return Position{}, fmt.Errorf("fleet: append: unexpected reply of %d values", len(res))
	}
	pos := Position{Epoch: stream.Epoch(str(res[1])), tag: str(res[3])}
	last, err := strconv.ParseUint(str(res[2]), 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("fleet: append: %w", err)
	}
	pos.Last = stream.ID(last)
	if pos.Epoch == "" {
		pos = Position{}
	}
	if num(res[0]) != 1 {
		return pos, fmt.Errorf("fleet: append at %s: %w", prev.Format(), ErrConflict)
	}
	e.offer(key, prev, pos, w)
	return pos, nil
}

// notifyChannel is where an append announces itself; tests leave it empty
// to lose a notification.
func (e *Engine) notifyChannel(key string) string {
	if e.muteNotify {
		return ""
	}
	return e.names.notify(key)
}

// State returns the key's current state; ok is false when it has none.
func (e *Engine) State(ctx context.Context, key string) (st State, ok bool, err error) {
	if err := checkKey(key); err != nil {
		return st, false, err
	}
	var res []any
	err = e.do(ctx, opRead, func(ctx context.Context) (err error) {
		res, err = e.rdb.HMGet(ctx, e.names.state(key), "e", "s", "h", "b", "t", "m").Result()
		return err
	})
	if err != nil || len(res) != 6 || res[0] == nil {
		return st, false, err
	}
	st, err = parseState(res)
	return st, err == nil, err
}

// Load returns the key's state and the events it retains, all up to
// st.Last, read at one instant; ok is false when it has none.
func (e *Engine) Load(ctx context.Context, key string) (st State, events []Entry, ok bool, err error) {
	if err := checkKey(key); err != nil {
		return st, nil, false, err
	}
	var res []any
	err = e.do(ctx, opRead, func(ctx context.Context) (err error) {
		res, err = loadScript.Run(ctx, e.rdb, []string{e.names.state(key), e.names.events(key)}, e.opts.HistorySize).Slice()
		return err
	})
	if err != nil || num(res[0]) != 1 {
		return st, nil, false, err
	}
	if len(res) != 8 {
		return st, nil, false, fmt.Errorf("fleet: load: unexpected reply of %d values", len(res))
	}
	if st, err = parseState(res[1:7]); err != nil {
		return st, nil, false, err
	}
	if events, err = entries(res[7]); err != nil {
		return st, nil, false, fmt.Errorf("fleet: load: %w", err)
	}
	e.metrics.eventsRead.Add(float64(len(events)))
	return st, events, true, nil
}

// parseState reads epoch, last, tag, body, ETag, Last-Modified.
func parseState(v []any) (State, error) {
	last, err := strconv.ParseUint(str(v[1]), 10, 64)
	if err != nil {
		return State{}, fmt.Errorf("fleet: state: %w", err)
	}
	return State{
		Position:     Position{Epoch: stream.Epoch(str(v[0])), Last: stream.ID(last), tag: str(v[2])},
		Body:         []byte(str(v[3])),
		ETag:         str(v[4]),
		LastModified: str(v[5]),
	}, nil
}

// Read is the answer of Since.
type Read struct {
	// Last is the key's newest position now.
	Last Position
	// Next is the position after Events (the one asked for, without
	// events): pass it to the next Since.
	Next Position
	// Events follow the position asked for, in order, at most the limit;
	// Events[len-1].ID < Last means more remain.
	Events []Entry
	// Body is the body at Last, when asked for and the events reach Last;
	// nil otherwise.
	Body []byte
}

// Since returns up to limit events after the position. It returns
// ErrUnknown when the position is not in the history (another epoch, a
// trimmed event, no state): the client needs a snapshot (Load). A position
// from this package (with its tag) is also checked to be the same append:
// if it contradicts the history, the key's state is deleted so that its
// next append starts a new epoch, and ErrUnknown is returned.
func (e *Engine) Since(ctx context.Context, key string, after Position, limit int, withBody bool) (Read, error) {
	if err := checkKey(key); err != nil {
		return Read{}, err
	}
	wb := "0"
	if withBody {
		wb = "1"
	}
	var res []any
	err := e.do(ctx, opRead, func(ctx context.Context) (err error) {
		res, err = sinceScript.Run(ctx, e.rdb, []string{e.names.state(key), e.names.events(key)},
			string(after.Epoch), uint64(after.Last), after.tag, max(limit, 1), wb).Slice()
		return err
	})
	if err != nil {
		return Read{}, err
	}
	switch num(res[0]) {
	case 1:
	case 2:
		e.opts.Logger.Warn("fleet: a key's history contradicts what this replica read (Redis lost appends); starting a new epoch", "key", key)
		return Read{}, fmt.Errorf("fleet: since %s: forked: %w", after.Format(), ErrUnknown)
	default:
		return Read{}, fmt.Errorf("fleet: since %s: %w", after.Format(), ErrUnknown)
	}
	if len(res) != 6 {
		return Read{}, fmt.Errorf("fleet: since: unexpected reply of %d values", len(res))
	}
	last, err := strconv.ParseUint(str(res[1]), 10, 64)
	if err != nil {
		return Read{}, fmt.Errorf("fleet: since: %w", err)
	}
	r := Read{Last: Position{Epoch: after.Epoch, Last: stream.ID(last)}, Next: after}
	if num(res[3]) == 1 {
		r.Body = []byte(str(res[4]))
	}
	if r.Events, err = entries(res[5]); err != nil {
		return Read{}, fmt.Errorf("fleet: since: %w", err)
	}
	if n := len(r.Events); n > 0 {
		r.Next.Last = r.Events[n-1].ID
	}
	r.Next.tag = str(res[2]) // the script's tag is that of the newest event read
	if r.Next.Last == r.Last.Last {
		r.Last.tag = r.Next.tag
	}
	e.metrics.eventsRead.Add(float64(len(r.Events)))
	return r, nil
}

var errReply = errors.New("malformed history entry")

// entries parses XRANGE's reply as the scripts return it: entries of
// {"<id>-0", {"k", kind, "d", data, "h", tag}}.
func entries(v any) ([]Entry, error) {
	list, _ := v.([]any)
	out := make([]Entry, 0, len(list))
	for _, it := range list {
		pair, _ := it.([]any)
		if len(pair) != 2 {
			return nil, errReply
		}
		idStr, _, _ := strings.Cut(str(pair[0]), "-")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil {
			return nil, errReply
		}
		fields, _ := pair[1].([]any)
		if len(fields) != 6 || str(fields[0]) != "k" || str(fields[2]) != "d" {
			return nil, errReply
		}
		kind, err := strconv.ParseUint(str(fields[1]), 10, 8)
		if err != nil {
			return nil, errReply
		}
		out = append(out, Entry{ID: stream.ID(id), Kind: stream.Kind(kind), Data: []byte(str(fields[3]))})
	}
	return out, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) int64 {
	n, _ := v.(int64)
	return n
}
