package poller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wI2L/jsondiff"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/stream"
)

// ErrInvalidBody marks a body the key's diff mode cannot use. Such a poll
// fails: clients see no change, never an empty list.
var ErrInvalidBody = errors.New("body does not fit the diff mode")

// DiffOptions select how bodies are compared.
type DiffOptions struct {
	// Mode is config.DiffAuto, DiffItems, DiffPatch or DiffSnapshot. Default auto.
	Mode string
	// ItemsPointer is an RFC 6901 JSON Pointer to the items array. Default "" (whole body).
	ItemsPointer string
	// IDField names the field identifying an item. Default "id".
	IDField string
}

// Differ turns successive bodies of one key into change events. It holds the
// previous body, so it belongs to one key.
type Differ struct {
	opts DiffOptions
	mode string // resolved mode; config.DiffAuto while undecided
	prev []byte
	// prevItems is the previous body's items in items mode.
	prevItems []item
}

// NewDiffer returns a differ with no previous body.
func NewDiffer(opts DiffOptions) *Differ {
	if opts.Mode == "" {
		opts.Mode = config.DiffAuto
	}
	if opts.IDField == "" {
		opts.IDField = "id"
	}
	return &Differ{opts: opts, mode: opts.Mode}
}

// Mode is the resolved mode: the configured one, or what auto chose (auto
// while it has not seen a body it can decide on).
func (d *Differ) Mode() string { return d.mode }

// Next compares body with the previous one. The first body yields no
// changes (clients get it as a snapshot). On error the differ keeps its
// previous state, so a failed poll changes nothing.
func (d *Differ) Next(body []byte) ([]stream.Change, error) {
	mode := d.mode
	if mode == config.DiffAuto {
		mode = decide(body, d.opts)
	}
	var (
		changes []stream.Change
		items   []item
		err     error
	)
	switch mode {
	case config.DiffItems:
		items, err = parseItems(body, d.opts.ItemsPointer, d.opts.IDField)
		if err == nil && d.prev != nil {
			prev := d.prevItems
			if prev == nil && d.mode == config.DiffAuto {
				// Auto was undecided: the previous body held an empty array.
				prev = []item{}
			}
			changes = diffItems(prev, items, d.opts.IDField)
		}
	case config.DiffPatch:
		if !json.Valid(body) {
			err = fmt.Errorf("%w: not JSON", ErrInvalidBody)
		} else if d.prev != nil {
			changes, err = diffPatch(d.prev, body)
		}
	case config.DiffSnapshot:
		if d.prev != nil && !bytes.Equal(d.prev, body) {
			changes = []stream.Change{{Kind: stream.KindSnapshot, Data: body}}
		}
	case config.DiffAuto:
		// Still undecided (an empty array): nothing to report but a new
		// body, which only a change of shape would be.
		if !json.Valid(body) {
			err = fmt.Errorf("%w: not JSON", ErrInvalidBody)
		}
	}
	if err != nil {
		return nil, err
	}
	d.mode, d.prev, d.prevItems = mode, body, items
	return changes, nil
}

// decide picks auto's mode for body: items when the array (at the pointer)
// holds objects that all have a unique id field, patch for any other JSON,
// snapshot for anything else. An empty array decides nothing yet: an empty
// notification list is the usual first answer, and its shape is unknown.
func decide(body []byte, opts DiffOptions) string {
	if !json.Valid(body) {
		return config.DiffSnapshot
	}
	arr, err := resolveArray(body, opts.ItemsPointer)
	if err != nil {
		return config.DiffPatch
	}
	if len(arr) == 0 {
		return config.DiffAuto
	}
	if _, err := itemsOf(arr, opts.IDField); err != nil {
		return config.DiffPatch
	}
	return config.DiffItems
}

// item is one element of an items array.
type item struct {
	key string          // compacted JSON of the id: 1 and "1" differ
	id  json.RawMessage // the id as sent
	raw []byte          // compacted item
}

func parseItems(body []byte, pointer, idField string) ([]item, error) {
	arr, err := resolveArray(body, pointer)
	if err != nil {
		return nil, err
	}
	return itemsOf(arr, idField)
}

func itemsOf(arr []json.RawMessage, idField string) ([]item, error) {
	items := make([]item, 0, len(arr))
	seen := make(map[string]struct{}, len(arr))
	for i, raw := range arr {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("%w: item %d is not an object", ErrInvalidBody, i)
		}
		id, ok := obj[idField]
		if !ok {
			return nil, fmt.Errorf("%w: item %d has no %q field", ErrInvalidBody, i, idField)
		}
		key, err := compact(id)
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: %v", ErrInvalidBody, i, err)
		}
		if _, dup := seen[string(key)]; dup {
			return nil, fmt.Errorf("%w: item %d repeats %s %s", ErrInvalidBody, i, idField, key)
		}
		seen[string(key)] = struct{}{}
		c, err := compact(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: item %d: %v", ErrInvalidBody, i, err)
		}
		items = append(items, item{key: string(key), id: key, raw: c})
	}
	return items, nil
}

func compact(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// diffItems emits created and updated in the new body's order, then deleted
// in the old body's order. A pure reordering emits nothing.
func diffItems(prev, next []item, idField string) []stream.Change {
	old := make(map[string][]byte, len(prev))
	for _, it := range prev {
		old[it.key] = it.raw
	}
	var changes []stream.Change
	present := make(map[string]struct{}, len(next))
	for _, it := range next {
		present[it.key] = struct{}{}
		was, ok := old[it.key]
		switch {
		case !ok:
			changes = append(changes, stream.Change{Kind: stream.KindCreated, Data: it.raw})
		case !bytes.Equal(was, it.raw):
			changes = append(changes, stream.Change{Kind: stream.KindUpdated, Data: it.raw})
		}
	}
	field, _ := json.Marshal(idField) // a string always marshals
	for _, it := range prev {
		if _, ok := present[it.key]; ok {
			continue
		}
		data := make([]byte, 0, len(field)+len(it.id)+3)
		data = append(data, '{')
		data = append(data, field...)
		data = append(data, ':')
		data = append(data, it.id...)
		data = append(data, '}')
		changes = append(changes, stream.Change{Kind: stream.KindDeleted, Data: data})
	}
	return changes
}

func diffPatch(prev, next []byte) ([]stream.Change, error) {
	// LCS makes an insertion at the front of a list one "add", not a
	// "replace" of every element after it.
	p, err := jsondiff.CompareJSON(prev, next, jsondiff.LCS())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidBody, err)
	}
	if len(p) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return []stream.Change{{Kind: stream.KindPatch, Data: data}}, nil
}

// resolveArray follows an RFC 6901 JSON Pointer in body and returns the array
// it names.
func resolveArray(body []byte, pointer string) ([]json.RawMessage, error) {
	cur := json.RawMessage(body)
	if pointer != "" {
		if !strings.HasPrefix(pointer, "/") {
			return nil, fmt.Errorf("%w: JSON Pointer %q does not start with /", ErrInvalidBody, pointer)
		}
		for _, tok := range strings.Split(pointer[1:], "/") {
			tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok) // RFC 6901 §4: ~1 first
			next, err := step(cur, tok)
			if err != nil {
				return nil, fmt.Errorf("%w: JSON Pointer %q: %v", ErrInvalidBody, pointer, err)
			}
			cur = next
		}
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(cur, &arr); err != nil || arr == nil && !bytes.Equal(bytes.TrimSpace(cur), []byte("[]")) {
		return nil, fmt.Errorf("%w: not a JSON array", ErrInvalidBody)
	}
	return arr, nil
}

func step(cur json.RawMessage, tok string) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(cur)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(cur, &arr); err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(tok)
		if err != nil || i < 0 || i >= len(arr) || (len(tok) > 1 && tok[0] == '0') {
			return nil, fmt.Errorf("no element %q", tok)
		}
		return arr[i], nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(cur, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("no member %q", tok)
	}
	v, ok := obj[tok]
	if !ok {
		return nil, fmt.Errorf("no member %q", tok)
	}
	return v, nil
}
