package poller

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The scanner below walks a document that json.Valid has accepted, without
// decoding it: a value is a span of the body, so looking at a 1 MiB array
// costs one span per element instead of a decoded tree.

// span is the byte range [s, e) of one JSON value in a body. int32 keeps an
// element of a large array at 8 bytes; bodies are capped far below 2 GiB
// (MaxBodyBytes), and the patch walker refuses larger ones.
type span struct{ s, e int32 }

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// root is the span of the document's one value.
func root(b []byte) span {
	s := skipSpace(b, 0)
	return span{int32(s), int32(valueEnd(b, s))}
}

// stringEnd returns the index after the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	j := i + 1
	for {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return len(b)
		}
		j += q
		// The quote is escaped when an odd number of backslashes precedes it.
		n := 0
		for k := j - 1; k > i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
}

// valueEnd returns the index after the value starting at b[i]. It counts
// brackets instead of recursing, so nesting depth costs no stack.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) && !isSpace(b[i]) && b[i] != ',' && b[i] != ']' && b[i] != '}' {
			i++
		}
		return i
	}
}

// eachElement calls f with each element of the array at v, in order.
func eachElement(b []byte, v span, f func(span)) {
	i := skipSpace(b, int(v.s)+1)
	if i >= int(v.e) || b[i] == ']' {
		return
	}
	for {
		e := valueEnd(b, i)
		f(span{int32(i), int32(e)})
		i = skipSpace(b, e)
		if i >= int(v.e) || b[i] != ',' {
			return
		}
		i = skipSpace(b, i+1)
	}
}

// elements returns the spans of the array at v's elements, allocated once
// at their exact count.
func elements(b []byte, v span) []span {
	n := 0
	eachElement(b, v, func(span) { n++ })
	out := make([]span, 0, n)
	eachElement(b, v, func(s span) { out = append(out, s) })
	return out
}

// member is one name/value pair of an object.
type member struct {
	key []byte // the decoded name; points into the body unless it had escapes
	val span
}

// eachMember calls f with each member of the object at v, in order.
func eachMember(b []byte, v span, f func(key span, val span)) {
	i := skipSpace(b, int(v.s)+1)
	for i < int(v.e) && b[i] == '"' {
		ke := stringEnd(b, i)
		j := skipSpace(b, ke)
		j = skipSpace(b, j+1) // past ':'
		ve := valueEnd(b, j)
		f(span{int32(i), int32(ke)}, span{int32(j), int32(ve)})
		i = skipSpace(b, ve)
		if i >= int(v.e) || b[i] != ',' {
			return
		}
		i = skipSpace(b, i+1)
	}
}

// members returns the object at v's members with decoded names.
func members(b []byte, v span) []member {
	n := 0
	eachMember(b, v, func(span, span) { n++ })
	out := make([]member, 0, n)
	eachMember(b, v, func(k, val span) {
		out = append(out, member{key: decodeKey(b[k.s:k.e]), val: val})
	})
	return out
}

// decodeKey returns the decoded string raw (with its quotes): the bytes
// between the quotes when they need no decoding, else what encoding/json
// makes of them (escapes resolved, invalid UTF-8 replaced), so that names
// compare as a decoder sees them.
func decodeKey(raw []byte) []byte {
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return in
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return in // unreachable for a validated body
	}
	return []byte(s)
}
