package poller

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
)

// Bounds of the patch walker. Every one is there so that the cost of a diff
// follows the size of the two bodies, whatever their shape.
const (
	// walkDepth: deeper values that differ are replaced whole. Each level
	// rescans its subtree, so this caps the time at walkDepth passes.
	walkDepth = 32
	// alignCells is the fixed part of the budget for aligning arrays: the
	// edit search keeps (D+1)² int32 for D edits. The rest of the budget
	// is a quarter of the two bodies' bytes, so that its memory stays
	// within the bodies' size.
	alignCells = 1 << 14
	// alignWork is the fixed part of the budget of element comparisons
	// while aligning arrays; the rest is 4 per byte of the two bodies.
	alignWork = 1 << 16
)

// walkPatch returns an RFC 6902 patch from a to b, both valid JSON, or
// ok false when the patch would reach limit bytes (the caller passes
// len(b): then b itself, as a snapshot, is the smaller event). A nil patch
// means no change.
//
// It never decodes the documents: values are spans of the bodies, objects
// are matched by member name, arrays by trimming their common prefix and
// suffix and aligning the rest with Myers' O(ND) difference algorithm
// within a budget; past the budget, elements are compared index by index.
func walkPatch(a, b []byte, limit int) (patch []byte, ok bool) {
	if len(a) > math.MaxInt32 || len(b) > math.MaxInt32 {
		return nil, false
	}
	w := &walker{
		a: a, b: b,
		limit: limit,
		cells: alignCells + (len(a)+len(b))/4,
		work:  alignWork + 4*(len(a)+len(b)),
	}
	w.value(root(a), root(b), 0)
	if w.over {
		return nil, false
	}
	if w.out.Len() == 0 {
		return nil, true
	}
	w.out.WriteByte(']')
	return w.out.Bytes(), true
}

type walker struct {
	a, b  []byte
	out   bytes.Buffer
	limit int    // out may not grow past this: a snapshot is smaller
	over  bool   // out reached limit: stop
	path  []byte // RFC 6901 pointer of the value being compared
	cells int    // alignment memory left, in int32
	work  int    // alignment comparisons left
}

func (w *walker) value(av, bv span, depth int) {
	if w.over {
		return
	}
	x, y := w.a[av.s:av.e], w.b[bv.s:bv.e]
	if bytes.Equal(x, y) {
		return
	}
	if depth < walkDepth && x[0] == y[0] {
		switch x[0] {
		case '{':
			w.object(av, bv, depth+1)
			return
		case '[':
			w.array(av, bv, depth+1)
			return
		}
	}
	w.op(`replace`, bv, true)
}

func (w *walker) object(av, bv span, depth int) {
	ma, mb := uniqueMembers(w.a, av), uniqueMembers(w.b, bv)
	i, j := 0, 0
	for (i < len(ma) || j < len(mb)) && !w.over {
		c := 0
		switch {
		case i == len(ma):
			c = 1
		case j == len(mb):
			c = -1
		default:
			c = bytes.Compare(ma[i].key, mb[j].key)
		}
		switch {
		case c < 0: // only in a
			w.push(ma[i].key)
			w.op(`remove`, span{}, false)
			i++
		case c > 0: // only in b
			w.push(mb[j].key)
			w.op(`add`, mb[j].val, true)
			j++
		default:
			w.push(mb[j].key)
			w.value(ma[i].val, mb[j].val, depth)
			i, j = i+1, j+1
		}
		w.pop()
	}
}

// uniqueMembers returns the members sorted by name, the last of each name
// kept as encoding/json does.
func uniqueMembers(b []byte, v span) []member {
	ms := members(b, v)
	slices.SortStableFunc(ms, func(x, y member) int { return bytes.Compare(x.key, y.key) })
	out := ms[:0]
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(ms[i+1].key, m.key) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// snake is a run of n equal elements from a[x] and b[y].
type snake struct{ x, y, n int }

func (w *walker) array(av, bv span, depth int) {
	ea, eb := elements(w.a, av), elements(w.b, bv)
	eq := func(i, j int) bool {
		return bytes.Equal(w.a[ea[i].s:ea[i].e], w.b[eb[j].s:eb[j].e])
	}
	pre, suf := 0, 0
	for pre < len(ea) && pre < len(eb) && eq(pre, pre) {
		pre++
	}
	for suf < len(ea)-pre && suf < len(eb)-pre && eq(len(ea)-1-suf, len(eb)-1-suf) {
		suf++
	}
	n, m := len(ea)-pre-suf, len(eb)-pre-suf
	if n == 0 && m == 0 {
		return // the arrays differ in spacing only
	}
	snakes := w.align(n, m, func(i, j int) bool { return eq(pre+i, pre+j) })
	// Walk old and new together; the array being patched is b[:pre+j]
	// followed by a[pre+i:], so every op's index is pre+j.
	i, j := 0, 0
	gap := func(x, y int) {
		for ; i < x && j < y && !w.over; i, j = i+1, j+1 {
			w.pushIndex(pre + j)
			w.value(ea[pre+i], eb[pre+j], depth)
			w.pop()
		}
		for ; i < x && !w.over; i++ {
			w.pushIndex(pre + j)
			w.op(`remove`, span{}, false)
			w.pop()
		}
		for ; j < y && !w.over; j++ {
			w.pushIndex(pre + j)
			w.op(`add`, eb[pre+j], true)
			w.pop()
		}
	}
	for _, s := range snakes {
		gap(s.x, s.y)
		i, j = s.x+s.n, s.y+s.n
	}
	gap(n, m)
}

// align returns the runs of equal elements of a shortest edit script from
// a[:n] to b[:m] (Myers, "An O(ND) Difference Algorithm and Its
// Variations", 1986), or nil when the budget runs out first: then the
// caller compares index by index. Step d keeps the furthest-reaching x on
// each of its d+1 diagonals, (D+1)(D+2)/2 int32 for D edits, to trace the
// path back.
func (w *walker) align(n, m int, eq func(i, j int) bool) []snake {
	if w.cells <= 0 {
		return nil // spent by earlier arrays of this document
	}
	maxD := n + m
	if r := int(math.Sqrt(float64(2*w.cells))) - 2; r < maxD {
		maxD = r
	}
	if maxD < 0 {
		return nil
	}
	// Allocated once at the bound, so append never grows it past the
	// budget (growth by doubling would allocate several times the trace
	// and overdraw w.cells, which once turned the next array's bound into
	// NaN and then into no bound at all).
	trace := make([]int32, 0, min(w.cells, (maxD+1)*(maxD+2)/2))
	defer func() { w.cells -= cap(trace) }()
	for d := 0; d <= maxD; d++ {
		for k := -d; k <= d; k += 2 {
			var x int
			switch {
			case d == 0:
				x = 0
			case k == -d || k != d && diag(trace, d-1, k-1) < diag(trace, d-1, k+1):
				x = diag(trace, d-1, k+1) // down: b[y] inserted
			default:
				x = diag(trace, d-1, k-1) + 1 // right: a[x] removed
			}
			y := x - k
			w.work--
			for x < n && y < m && eq(x, y) {
				x, y = x+1, y+1
				w.work--
			}
			trace = append(trace, int32(x))
			if x >= n && y >= m {
				return backtrack(trace, d, n, m)
			}
			if w.work < 0 {
				return nil
			}
		}
	}
	return nil
}

// diag is the furthest x that step d reached on diagonal k (x - y = k).
func diag(trace []int32, d, k int) int { return int(trace[d*(d+1)/2+(k+d)/2]) }

// backtrack follows the trace from (n, m) back to (0, 0) and returns the
// snakes in order.
func backtrack(trace []int32, d, n, m int) []snake {
	out := make([]snake, 0, d+1)
	x, y := n, m
	for ; d > 0; d-- {
		k := x - y
		pk := k - 1 // right: a[px] removed
		if k == -d || k != d && diag(trace, d-1, k-1) < diag(trace, d-1, k+1) {
			pk = k + 1 // down: b[py] inserted
		}
		px := diag(trace, d-1, pk)
		sx := px // where step d's snake starts
		if pk == k-1 {
			sx = px + 1
		}
		if l := x - sx; l > 0 {
			out = append(out, snake{sx, sx - k, l})
		}
		x, y = px, px-pk
	}
	if x > 0 {
		out = append(out, snake{0, 0, x})
	}
	slices.Reverse(out)
	return out
}

// op writes one operation at the current path, with b's value v if
// withValue, in the field order jsondiff uses.
func (w *walker) op(kind string, v span, withValue bool) {
	if w.out.Len() == 0 {
		w.out.WriteByte('[')
	} else {
		w.out.WriteByte(',')
	}
	w.out.WriteByte('{')
	if withValue {
		w.out.WriteString(`"value":`)
		json.Compact(&w.out, w.b[v.s:v.e]) // valid: it comes from a valid body
		w.out.WriteByte(',')
	}
	w.out.WriteString(`"op":"`)
	w.out.WriteString(kind)
	w.out.WriteString(`","path":`)
	w.out.Write(appendJSONString(w.out.AvailableBuffer(), w.path))
	w.out.WriteByte('}')
	if w.out.Len() >= w.limit {
		w.over = true
	}
}

// push appends a member name to the path (RFC 6901 §3: ~ is ~0, / is ~1).
func (w *walker) push(key []byte) {
	w.path = append(w.path, '/')
	for _, c := range key {
		switch c {
		case '~':
			w.path = append(w.path, '~', '0')
		case '/':
			w.path = append(w.path, '~', '1')
		default:
			w.path = append(w.path, c)
		}
	}
}

func (w *walker) pushIndex(i int) {
	w.path = append(w.path, '/')
	w.path = strconv.AppendInt(w.path, int64(i), 10)
}

// pop removes the last token from the path.
func (w *walker) pop() {
	w.path = w.path[:bytes.LastIndexByte(w.path, '/')]
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (names
// are decoded as encoding/json does), so only quotes, backslashes and
// control characters need escaping.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
