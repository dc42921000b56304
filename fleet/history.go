package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ssegate/ssegate/stream"
)

// position is a point in a key's history: the epoch of its current life and
// the ID of the newest event (1 is the first body). The zero position means
// "no state".
type position struct {
	Epoch stream.Epoch
	Last  stream.ID
	// tag names the append that wrote Last, when known: two histories
	// that reuse an id in one epoch (a failover lost appends) differ in it.
	tag string
}

// Format is the position's wire id, "<epoch>-<id>".
func (p position) Format() string { return p.Epoch.Format(p.Last) }

// entry is one event of a key's history.
type entry struct {
	ID   stream.ID
	Kind stream.Kind
	Data []byte
}

// state is a key's current state in Redis.
type state struct {
	position
	Body         []byte
	ETag         string
	LastModified string
}

// write is one poll's outcome, as the holder appends it.
type write struct {
	Body         []byte
	ETag         string
	LastModified string
	// Changes become events with the next IDs. Ignored for a first body,
	// which every client receives as a snapshot. None: only the body and
	// validators are stored (no event, no notification).
	Changes []stream.Change
}

// append writes w after prev, which must be the key's current position in
// Redis; the zero prev writes a first body, which draws a new epoch and is
// allowed only while the key has no state. On success it returns the new
// position. If the key moved on (another writer, or the state was lost) it
// returns errConflict and the key's current position (zero without state),
// and writes nothing: the caller reads state and carries on from there.
func (e *Engine) append(ctx context.Context, key string, prev position, w write) (position, error) {
	if err := checkKey(key); err != nil {
		return position{}, err
	}
	args := make([]any, 0, 13+2*len(w.Changes))
	args = append(args, e.token, string(prev.Epoch), uint64(prev.Last), prev.tag, string(stream.NewEpoch()), randomHex(8),
		w.Body, w.ETag, w.LastModified, e.opts.HistorySize, e.opts.HistoryBytes,
		e.opts.stateTTL.Milliseconds(), e.notifyChannel(key))
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
		return position{}, err
	}
	if len(res) != 4 {
		return position{}, fmt.Errorf("fleet: append: unexpected reply of %d values", len(res))
	}
	pos := position{Epoch: stream.Epoch(str(res[1])), tag: str(res[3])}
	last, err := strconv.ParseUint(str(res[2]), 10, 64)
	if err != nil {
		return position{}, fmt.Errorf("fleet: append: %w", err)
	}
	pos.Last = stream.ID(last)
	if pos.Epoch == "" {
		pos = position{}
	}
	if num(res[0]) != 1 {
		return pos, fmt.Errorf("fleet: append at %s: %w", prev.Format(), errConflict)
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

// state returns the key's current state; ok is false when it has none.
func (e *Engine) state(ctx context.Context, key string) (st state, ok bool, err error) {
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

// load returns the key's state and the events it retains, all up to
// st.Last, read at one instant; ok is false when it has none.
func (e *Engine) load(ctx context.Context, key string) (st state, events []entry, ok bool, err error) {
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
func parseState(v []any) (state, error) {
	last, err := strconv.ParseUint(str(v[1]), 10, 64)
	if err != nil {
		return state{}, fmt.Errorf("fleet: state: %w", err)
	}
	return state{
		position:     position{Epoch: stream.Epoch(str(v[0])), Last: stream.ID(last), tag: str(v[2])},
		Body:         []byte(str(v[3])),
		ETag:         str(v[4]),
		LastModified: str(v[5]),
	}, nil
}

// read is the answer of since.
type read struct {
	// Last is the key's newest position now.
	Last position
	// Next is the position after Events (the one asked for, without
	// events): pass it to the next since.
	Next position
	// Events follow the position asked for, in order, at most the limit;
	// Events[len-1].ID < Last means more remain.
	Events []entry
	// Body is the body at Last, when asked for and the events reach Last;
	// nil otherwise.
	Body []byte
}

// since returns up to limit events after the position. It returns
// errUnknown when the position is not in the history (another epoch, a
// trimmed event, no state): the client needs a snapshot (load). A position
// from this package (with its tag) is also checked to be the same append:
// if it contradicts the history, the key's state is deleted so that its
// next append starts a new epoch, and errUnknown is returned.
func (e *Engine) since(ctx context.Context, key string, after position, limit int, withBody bool) (read, error) {
	if err := checkKey(key); err != nil {
		return read{}, err
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
		return read{}, err
	}
	switch num(res[0]) {
	case 1:
	case 2:
		e.opts.Logger.Warn("fleet: a key's history contradicts what this replica read (Redis lost appends); starting a new epoch", "key", key)
		return read{}, fmt.Errorf("fleet: since %s: forked: %w", after.Format(), errUnknown)
	default:
		return read{}, fmt.Errorf("fleet: since %s: %w", after.Format(), errUnknown)
	}
	if len(res) != 6 {
		return read{}, fmt.Errorf("fleet: since: unexpected reply of %d values", len(res))
	}
	last, err := strconv.ParseUint(str(res[1]), 10, 64)
	if err != nil {
		return read{}, fmt.Errorf("fleet: since: %w", err)
	}
	r := read{Last: position{Epoch: after.Epoch, Last: stream.ID(last)}, Next: after}
	if num(res[3]) == 1 {
		r.Body = []byte(str(res[4]))
	}
	if r.Events, err = entries(res[5]); err != nil {
		return read{}, fmt.Errorf("fleet: since: %w", err)
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
func entries(v any) ([]entry, error) {
	list, _ := v.([]any)
	out := make([]entry, 0, len(list))
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
		out = append(out, entry{ID: stream.ID(id), Kind: stream.Kind(kind), Data: []byte(str(fields[3]))})
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
