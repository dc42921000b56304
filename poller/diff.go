package poller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/wI2L/jsondiff"

	"github.com/ssegate/ssegate/stream"
)

// ErrInvalidBody marks a body the key's diff mode cannot use. Such a poll
// fails: clients see no change, never an empty list.
var ErrInvalidBody = errors.New("body does not fit the diff mode")

// DiffMode is how a key's bodies are compared (SSEGATE_DIFF_MODE).
type DiffMode string

// The diff modes.
const (
	DiffAuto     DiffMode = "auto"     // items, patch or snapshot, decided by the first bodies
	DiffItems    DiffMode = "items"    // created/updated/deleted events per item of an array
	DiffPatch    DiffMode = "patch"    // one RFC 6902 JSON Patch per change
	DiffSnapshot DiffMode = "snapshot" // the whole body per change
)

// DiffModes lists every mode, for validating configuration.
func DiffModes() []DiffMode { return []DiffMode{DiffAuto, DiffItems, DiffPatch, DiffSnapshot} }

// DiffOptions select how bodies are compared.
type DiffOptions struct {
	// Mode is one of DiffModes. Default DiffAuto.
	Mode DiffMode
	// ItemsPointer is an RFC 6901 JSON Pointer to the items array. Default "" (whole body).
	ItemsPointer string
	// IDField names the field identifying an item. Default "id".
	IDField string
}

// differ turns successive bodies of one key into change events. It holds the
// previous body, so it belongs to one key.
type differ struct {
	opts DiffOptions
	mode DiffMode // resolved mode; DiffAuto while undecided
	// pointer is the items array's JSON Pointer in items mode.
	pointer string
	prev    []byte
	// prevItems is the previous body's items in items mode.
	prevItems []item
}

// newDiffer returns a differ with no previous body.
func newDiffer(opts DiffOptions) *differ {
	def := DefaultOptions().Diff
	if opts.Mode == "" {
		opts.Mode = def.Mode
	}
	if opts.IDField == "" {
		opts.IDField = def.IDField
	}
	d := &differ{opts: opts, mode: opts.Mode}
	if d.mode == DiffItems {
		d.pointer = opts.ItemsPointer
	}
	return d
}

// Mode is the resolved mode: the configured one, or what auto chose (auto
// while it has not seen a body it can decide on).
func (d *differ) Mode() DiffMode { return d.mode }

// ItemsPointer is the JSON Pointer of the items array in items mode: the
// configured one, or the wrapper's member auto found ("/items").
func (d *differ) ItemsPointer() string { return d.pointer }

// Next compares body with the previous one. The first body yields no
// changes (clients get it as a snapshot). On error the differ keeps its
// previous state, so a failed poll changes nothing.
func (d *differ) Next(body []byte) ([]stream.Change, error) {
	mode, pointer := d.mode, d.pointer
	var (
		changes []stream.Change
		items   []item
		err     error
	)
	valid := false // json.Valid has passed body: it reads every byte, once is enough
	if mode == DiffAuto {
		mode, pointer, items = decide(body, d.opts)
		valid = mode != DiffSnapshot
	}
	switch mode {
	case DiffItems:
		if items == nil {
			items, err = parseItems(body, pointer, d.opts.IDField)
		}
		if err == nil && d.prev != nil {
			prev := d.prevItems
			if prev == nil && d.mode == DiffAuto {
				// Auto was undecided: the previous body held an empty array.
				prev = []item{}
			}
			changes = diffItems(prev, items, d.opts.IDField)
		}
	case DiffPatch:
		if !valid && !json.Valid(body) {
			err = fmt.Errorf("%w: not JSON", ErrInvalidBody)
		} else if d.prev != nil {
			changes, err = diffPatch(d.prev, body)
		}
	case DiffSnapshot:
		if d.prev != nil && !bytes.Equal(d.prev, body) {
			changes = []stream.Change{{Kind: stream.KindSnapshot, Data: body}}
		}
	case DiffAuto:
		// Still undecided (an empty array): nothing to report but a new
		// body, which only a change of shape would be.
		if !valid && !json.Valid(body) {
			err = fmt.Errorf("%w: not JSON", ErrInvalidBody)
		}
	}
	if err != nil {
		return nil, err
	}
	if mode != DiffItems {
		pointer = ""
	}
	d.mode, d.pointer, d.prev, d.prevItems = mode, pointer, body, items
	return changes, nil
}

// decide picks auto's mode for body: items when the array (at the
// configured pointer; else the body, or the one array member of a wrapper
// object such as {"items": [...], "total": 3}) holds objects that all have
// a unique id field, patch for any other JSON, snapshot for anything else.
// An empty array decides nothing yet: an empty notification list is the
// usual first answer, and its shape is unknown. In items mode it returns
// the array's pointer and items.
func decide(body []byte, opts DiffOptions) (mode DiffMode, pointer string, items []item) {
	if !json.Valid(body) {
		return DiffSnapshot, "", nil
	}
	pointer = opts.ItemsPointer
	arr, err := resolve(body, pointer)
	if err != nil {
		return DiffPatch, "", nil
	}
	if pointer == "" && body[arr.s] == '{' {
		var ok bool
		if pointer, arr, ok = wrapped(body, arr); !ok {
			return DiffPatch, "", nil
		}
	}
	if body[arr.s] != '[' {
		return DiffPatch, "", nil
	}
	if empty(body, arr) {
		return DiffAuto, "", nil
	}
	if items, err = itemsOf(body, arr, opts.IDField); err != nil {
		return DiffPatch, "", nil
	}
	return DiffItems, pointer, items
}

// wrapped finds the one member of the object at v whose value is an array,
// and returns its pointer; ok is false when there is none or several.
func wrapped(body []byte, v span) (pointer string, arr span, ok bool) {
	var key []byte
	n := 0
	for _, m := range members(body, v) {
		if body[m.val.s] == '[' {
			if n > 0 && bytes.Equal(key, m.key) {
				arr = m.val // a repeated name: the last one counts
				continue
			}
			key, arr = m.key, m.val
			n++
		}
	}
	if n != 1 {
		return "", span{}, false
	}
	w := walker{}
	w.push(key)
	return string(w.path), arr, true
}

func empty(body []byte, arr span) bool {
	return body[skipSpace(body, int(arr.s)+1)] == ']'
}

// item is one element of an items array.
type item struct {
	key string // compacted JSON of the id: 1 and "1" differ
	raw []byte // compacted item
}

func parseItems(body []byte, pointer, idField string) ([]item, error) {
	if !json.Valid(body) {
		return nil, fmt.Errorf("%w: not JSON", ErrInvalidBody)
	}
	arr, err := resolve(body, pointer)
	if err != nil {
		return nil, err
	}
	if body[arr.s] != '[' {
		return nil, fmt.Errorf("%w: not a JSON array", ErrInvalidBody)
	}
	return itemsOf(body, arr, idField)
}

// itemsOf reads the items of the array at arr in a valid body. Its errors
// name positions, never a value: they are logged, and bodies never are.
func itemsOf(body []byte, arr span, idField string) ([]item, error) {
	// Count, and check the shape before allocating for every element: a
	// large array of numbers is not items, and should cost nothing here.
	n, bad := 0, -1
	eachElement(body, arr, func(el span) {
		if bad < 0 && body[el.s] != '{' {
			bad = n
		}
		n++
	})
	if bad >= 0 {
		return nil, fmt.Errorf("%w: item %d is not an object", ErrInvalidBody, bad)
	}
	items := make([]item, 0, n)
	seen := make(map[string]int, n)
	// One buffer for every compacted item: compacting never grows a value,
	// so it never reallocates, and items point into it.
	buf := bytes.NewBuffer(make([]byte, 0, int(arr.e-arr.s)))
	var err error
	eachElement(body, arr, func(el span) {
		i := len(items)
		if err != nil {
			return
		}
		id, ok := memberValue(body, el, idField)
		if !ok {
			err = fmt.Errorf("%w: item %d has no %q field", ErrInvalidBody, i, idField)
			return
		}
		key := string(body[id.s:id.e])
		if c := body[id.s]; c == '{' || c == '[' {
			var b bytes.Buffer
			json.Compact(&b, body[id.s:id.e]) // valid: the body is
			key = b.String()
		}
		if first, dup := seen[key]; dup {
			err = fmt.Errorf("%w: item %d repeats the %q of item %d", ErrInvalidBody, i, idField, first)
			return
		}
		seen[key] = i
		start := buf.Len()
		json.Compact(buf, body[el.s:el.e])
		items = append(items, item{key: key, raw: buf.Bytes()[start:buf.Len():buf.Len()]})
	})
	if err != nil {
		return nil, err
	}
	return items, nil
}

// memberValue finds the object at v's member named name (the last one, as
// encoding/json does).
func memberValue(body []byte, v span, name string) (val span, ok bool) {
	eachMember(body, v, func(k, x span) {
		raw := body[k.s+1 : k.e-1]
		if string(raw) == name || bytes.IndexByte(raw, '\\') >= 0 && string(decodeKey(body[k.s:k.e])) == name {
			val, ok = x, true
		}
	})
	return val, ok
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
		data := make([]byte, 0, len(field)+len(it.key)+3)
		data = append(data, '{')
		data = append(data, field...)
		data = append(data, ':')
		data = append(data, it.key...)
		data = append(data, '}')
		changes = append(changes, stream.Change{Kind: stream.KindDeleted, Data: data})
	}
	return changes
}

// jsondiff compares decoded documents and aligns each pair of arrays with
// an (n+1)×(m+1) table: the best patches for small documents, quadratic
// memory for large arrays (8 KB of numbers took 132 MB). It gets only
// documents where that table stays small; the walker takes the rest.
const (
	smallPatchBytes = 16 << 10 // the two bodies together
	smallPatchCells = 1 << 14  // product of the bodies' counts of array elements
	smallPatchDepth = 32       // nesting: jsondiff's cost grows with depth × size
)

// diffPatch returns the patch event from prev to next (both valid JSON), a
// snapshot when the patch would be larger than next, or nothing when they
// are equal.
func diffPatch(prev, next []byte) ([]stream.Change, error) {
	if bytes.Equal(prev, next) {
		return nil, nil
	}
	var (
		data []byte
		err  error
	)
	if small(prev, next) {
		data, err = jsondiffPatch(prev, next)
		if err != nil {
			return nil, err
		}
	} else {
		var ok bool
		if data, ok = walkPatch(prev, next, len(next)); !ok {
			return []stream.Change{{Kind: stream.KindSnapshot, Data: next}}, nil
		}
		if cap(data) > len(data)+len(data)/8 {
			data = bytes.Clone(data) // history keeps it: no slack
		}
	}
	if data == nil {
		return nil, nil
	}
	return []stream.Change{{Kind: stream.KindPatch, Data: data}}, nil
}

func jsondiffPatch(prev, next []byte) ([]byte, error) {
	// LCS makes an insertion at the front of a list one "add", not a
	// "replace" of every element after it. Numbers stay json.Number: a
	// float64 would round large integers, and miss changes to them.
	p, err := jsondiff.CompareJSON(prev, next, jsondiff.LCS(), jsondiff.UnmarshalFunc(unmarshalNumbers))
	if err != nil {
		// The library's message may quote the body: keep it out of logs.
		return nil, fmt.Errorf("%w: not JSON", ErrInvalidBody)
	}
	if len(p) == 0 {
		return nil, nil
	}
	data, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode patch: %w", err)
	}
	return data, nil
}

func unmarshalNumbers(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// elementCount bounds the number of array elements in a valid document
// from above (it counts brackets and commas outside strings), and returns
// its nesting depth.
func elementCount(b []byte) (n, depth int) {
	d := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
		case '[':
			n++
			d++
		case '{':
			d++
		case ']', '}':
			d--
		case ',':
			n++
		}
		depth = max(depth, d)
	}
	return n, depth
}

// small reports whether jsondiff may diff prev and next: few bytes, few
// array elements and shallow nesting (1,365 nested objects in 8 KB cost it
// 74 times the bodies).
func small(prev, next []byte) bool {
	if len(prev)+len(next) > smallPatchBytes {
		return false
	}
	np, dp := elementCount(prev)
	nn, dn := elementCount(next)
	return np*nn <= smallPatchCells && max(dp, dn) <= smallPatchDepth
}

// resolve follows an RFC 6901 JSON Pointer in a valid body and returns the
// value it names.
func resolve(body []byte, pointer string) (span, error) {
	cur := root(body)
	if pointer == "" {
		return cur, nil
	}
	if !strings.HasPrefix(pointer, "/") {
		return span{}, fmt.Errorf("%w: JSON Pointer %q does not start with /", ErrInvalidBody, pointer)
	}
	for _, tok := range strings.Split(pointer[1:], "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok) // RFC 6901 §4: ~1 first
		next, ok := step(body, cur, tok)
		if !ok {
			return span{}, fmt.Errorf("%w: JSON Pointer %q: nothing at %q", ErrInvalidBody, pointer, tok)
		}
		cur = next
	}
	return cur, nil
}

func step(body []byte, cur span, tok string) (next span, ok bool) {
	switch body[cur.s] {
	case '[':
		i, err := strconv.Atoi(tok)
		if err != nil || tok[0] < '0' || tok[0] > '9' || len(tok) > 1 && tok[0] == '0' {
			return span{}, false
		}
		n := 0
		eachElement(body, cur, func(el span) {
			if n == i {
				next, ok = el, true
			}
			n++
		})
		return next, ok
	case '{':
		return memberValue(body, cur, tok)
	}
	return span{}, false
}
