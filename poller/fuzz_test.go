package poller_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/ssegate/ssegate/internal/jsonpatch"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

var diffSeeds = [][2]string{
	{`[{"id":1}]`, `[{"id":2},{"id":1,"x":2}]`},
	{`[]`, `[{"id":"a"}]`},
	{`{"a":[1,2,3],"b":{"c":null}}`, `{"a":[3,1],"b":{"c":[{}]},"d":"~/"}`},
	{`[1,2,3]`, `[3,2,1,0]`},
	{`{"a/b":{"~":1}}`, `{"a/b":{"~":2,"":3}}`},
	{`"x"`, `7`},
}

// FuzzDiffItems: applying the created, updated and deleted events to the
// old items gives the new items.
func FuzzDiffItems(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffItems})
		if _, err := d.Next([]byte(a)); err != nil {
			return // not an items body: nothing to check
		}
		changes, err := d.Next([]byte(b))
		if err != nil {
			if !errors.Is(err, poller.ErrInvalidBody) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		state := itemsByID(t, a)
		for _, c := range changes {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(c.Data, &obj); err != nil {
				t.Fatalf("%s event data %s is not an object", c.Kind, c.Data)
			}
			id := compactJSON(t, obj["id"])
			switch c.Kind {
			case stream.KindCreated, stream.KindUpdated:
				state[id] = compactJSON(t, c.Data)
			case stream.KindDeleted:
				delete(state, id)
			default:
				t.Fatalf("unexpected %s event in items mode", c.Kind)
			}
		}
		if want := itemsByID(t, b); !reflect.DeepEqual(state, want) {
			t.Fatalf("old %s + events %s\n got %v\nwant %v", a, render(changes), state, want)
		}
		// The same arrays in a wrapper object: auto finds them, same events.
		w := poller.NewDiffer(poller.DiffOptions{})
		if _, err := w.Next([]byte(`{"total":1,"items":` + a + `}`)); err != nil || w.Mode() != poller.DiffItems {
			return // an empty array: auto waits
		}
		wrapped, err := w.Next([]byte(`{"items":` + b + `,"total":2}`))
		if err != nil || render(wrapped) != render(changes) {
			t.Fatalf("wrapped %s then %s: got %s, %v; want %s", a, b, render(wrapped), err, render(changes))
		}
	})
}

func itemsByID(t *testing.T, body string) map[string]string {
	var arr []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &arr); err != nil {
		t.Fatalf("items body %s: %v", body, err)
	}
	out := map[string]string{}
	for _, it := range arr {
		raw, _ := json.Marshal(it)
		out[compactJSON(t, it["id"])] = canonical(t, raw)
	}
	return out
}

// compactJSON is raw with insignificant space removed.
func compactJSON(t *testing.T, raw []byte) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func canonical(t *testing.T, raw []byte) string { return compactJSON(t, raw) }

// FuzzDiffPatch: applying the patch events (RFC 6902) to the old document
// gives the new one.
func FuzzDiffPatch(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffPatch})
		if _, err := d.Next([]byte(a)); err != nil {
			return
		}
		changes, err := d.Next([]byte(b))
		if err != nil {
			return // b is not JSON
		}
		checkPatchEvents(t, a, b, changes)
		// The walker that takes large documents, on the same pair.
		data, ok := poller.WalkPatch([]byte(a), []byte(b))
		if !ok {
			t.Fatalf("walker gave up without a size limit")
		}
		var walked []stream.Change
		if data != nil {
			walked = []stream.Change{{Kind: stream.KindPatch, Data: data}}
		}
		checkPatchEvents(t, a, b, walked)
	})
}

// checkPatchEvents applies patch-mode events to a and expects b, with an
// RFC 6902 applier that does not trust the library that made the patch.
func checkPatchEvents(t *testing.T, a, b string, changes []stream.Change) {
	t.Helper()
	doc, _ := jsonpatch.Decode([]byte(a))
	for _, c := range changes {
		var err error
		switch c.Kind {
		case stream.KindSnapshot: // a patch larger than the body
			doc, err = jsonpatch.Decode(c.Data)
		case stream.KindPatch:
			doc, err = jsonpatch.Apply(doc, c.Data)
		default:
			t.Fatalf("unexpected %s event in patch mode", c.Kind)
		}
		if err != nil {
			t.Fatalf("%s event %.200s on %.200s: %v", c.Kind, c.Data, a, err)
		}
	}
	want, _ := jsonpatch.Decode([]byte(b))
	// Equal documents marshal alike (sorted names), and far faster than
	// reflect.DeepEqual compares large ones.
	got, _ := json.Marshal(doc)
	exp, _ := json.Marshal(want)
	if !bytes.Equal(got, exp) {
		t.Fatalf("old %.500s + events %.500s\n got %.500s\nwant %.500s", a, render(changes), got, exp)
	}
}

// FuzzDiffLargeArrays: large arrays (thousands of elements, the shape that
// made the old differ quadratic) built from the fuzz input, edited at the
// positions it names, still give events that turn the old body into the
// new one.
func FuzzDiffLargeArrays(f *testing.F) {
	f.Add(`[1,"a",{"k":[2]}]`, []byte{0, 0, 0, 1, 0x10, 0, 2, 0xff, 0xff}, uint16(3000), false)
	f.Add(`[{"id":1,"t":"x"},{"id":2}]`, []byte{0, 0, 0, 5, 0xff, 0xff}, uint16(20000), true)
	f.Add(`[0]`, []byte{2, 0, 0, 1, 0x80, 0}, uint16(60000), false)
	f.Fuzz(func(t *testing.T, elems string, edits []byte, repeat uint16, wrap bool) {
		var vals []json.RawMessage
		if json.Unmarshal([]byte(elems), &vals) != nil || len(vals) == 0 {
			return
		}
		n := 1000 + int(repeat)
		old := make([]json.RawMessage, n)
		for i := range old {
			old[i] = vals[i%len(vals)]
		}
		cur := append([]json.RawMessage(nil), old...)
		for i := 0; i+2 < len(edits) && i < 3*64; i += 3 {
			pos := int(edits[i+1])<<8 | int(edits[i+2])
			v := vals[int(edits[i]/3)%len(vals)]
			switch edits[i] % 3 {
			case 0: // insert
				pos %= len(cur) + 1
				cur = append(cur[:pos], append([]json.RawMessage{v}, cur[pos:]...)...)
			case 1: // remove
				if len(cur) > 0 {
					pos %= len(cur)
					cur = append(cur[:pos], cur[pos+1:]...)
				}
			case 2: // replace
				if len(cur) > 0 {
					cur[pos%len(cur)] = v
				}
			}
		}
		a, b := bodyOf(t, old, wrap), bodyOf(t, cur, wrap)
		d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffPatch})
		if _, err := d.Next([]byte(a)); err != nil {
			t.Fatal(err)
		}
		changes, err := d.Next([]byte(b))
		if err != nil {
			t.Fatal(err)
		}
		checkPatchEvents(t, a, b, changes)
	})
}

func bodyOf(t *testing.T, arr []json.RawMessage, wrap bool) string {
	var v any = arr
	if wrap {
		v = map[string]any{"data": arr, "count": len(arr)}
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
