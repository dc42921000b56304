// Package jsonpatch applies RFC 6902 JSON Patches, for tests that check
// that the patch events a stream carries turn one upstream body into the
// next, as a client's own patch library would. It is independent of the
// diff that makes the patches.
package jsonpatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Op is one operation (RFC 6902 §4).
type Op struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	From  string          `json:"from"`
	Value json.RawMessage `json:"value"`
}

// Decode reads a JSON document keeping numbers exact.
func Decode(doc []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// Apply applies patch to doc, a value from Decode, and returns the result.
func Apply(doc any, patch []byte) (any, error) {
	var ops []Op
	if err := json.Unmarshal(patch, &ops); err != nil {
		return nil, fmt.Errorf("patch: %w", err)
	}
	var err error
	for i, op := range ops {
		if doc, err = apply(doc, op); err != nil {
			return nil, fmt.Errorf("op %d (%s %s): %w", i, op.Op, op.Path, err)
		}
	}
	return doc, nil
}

func apply(doc any, op Op) (any, error) {
	switch op.Op {
	case "add", "replace", "test":
		v, err := Decode(op.Value)
		if err != nil {
			return nil, err
		}
		if op.Op == "test" {
			cur, err := get(doc, tokens(op.Path))
			if err != nil {
				return nil, err
			}
			a, _ := json.Marshal(cur)
			b, _ := json.Marshal(v)
			if !bytes.Equal(a, b) {
				return nil, fmt.Errorf("test failed")
			}
			return doc, nil
		}
		return put(doc, tokens(op.Path), v, op.Op == "add")
	case "remove":
		return del(doc, tokens(op.Path))
	case "move", "copy":
		v, err := get(doc, tokens(op.From))
		if err != nil {
			return nil, err
		}
		if op.Op == "move" {
			if doc, err = del(doc, tokens(op.From)); err != nil {
				return nil, err
			}
		} else if v, err = deepCopy(v); err != nil { // a copy is a new value, not an alias
			return nil, err
		}
		return put(doc, tokens(op.Path), v, true)
	}
	return nil, fmt.Errorf("unknown op %q", op.Op)
}

func deepCopy(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Decode(b)
}

// tokens splits an RFC 6901 pointer.
func tokens(p string) []string {
	if p == "" {
		return nil
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, s := range parts {
		parts[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(s)
	}
	return parts
}

func index(tok string, n int, appending bool) (int, error) {
	if appending && tok == "-" {
		return n, nil
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i > n || (!appending && i == n) {
		return 0, fmt.Errorf("bad index %q for length %d", tok, n)
	}
	return i, nil
}

func get(doc any, path []string) (any, error) {
	for _, tok := range path {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[tok]
			if !ok {
				return nil, fmt.Errorf("no member %q", tok)
			}
			doc = v
		case []any:
			i, err := index(tok, len(d), false)
			if err != nil {
				return nil, err
			}
			doc = d[i]
		default:
			return nil, fmt.Errorf("no container at %q", tok)
		}
	}
	return doc, nil
}

// put sets the value at path; insert makes an array index an insertion.
func put(doc any, path []string, v any, insert bool) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	parent, err := get(doc, path[:len(path)-1])
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		if _, ok := p[last]; !ok && !insert {
			return nil, fmt.Errorf("no member %q to replace", last)
		}
		p[last] = v
		return doc, nil
	case []any:
		i, err := index(last, len(p), insert)
		if err != nil {
			return nil, err
		}
		if insert {
			p = append(p, nil)
			copy(p[i+1:], p[i:])
		}
		p[i] = v
		return put(doc, path[:len(path)-1], p, false)
	}
	return nil, fmt.Errorf("no container for %q", last)
}

func del(doc any, path []string) (any, error) {
	if len(path) == 0 {
		return nil, fmt.Errorf("cannot remove the root")
	}
	parent, err := get(doc, path[:len(path)-1])
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	switch p := parent.(type) {
	case map[string]any:
		if _, ok := p[last]; !ok {
			return nil, fmt.Errorf("no member %q to remove", last)
		}
		delete(p, last)
		return doc, nil
	case []any:
		i, err := index(last, len(p), false)
		if err != nil {
			return nil, err
		}
		return put(doc, path[:len(path)-1], append(p[:i], p[i+1:]...), false)
	}
	return nil, fmt.Errorf("no container for %q", last)
}
