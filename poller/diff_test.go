package poller_test

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

func render(cs []stream.Change) string {
	parts := []string{}
	for _, c := range cs {
		parts = append(parts, c.Kind.String()+" "+string(c.Data))
	}
	return strings.Join(parts, "; ")
}

func TestDiffItems(t *testing.T) {
	tests := []struct {
		name      string
		prev, new string
		want      string
	}{
		{"created", `[{"id":1}]`, `[{"id":2,"t":"b"},{"id":1}]`, `created {"id":2,"t":"b"}`},
		{"updated", `[{"id":1,"t":"a"}]`, `[{"id":1,"t":"b"}]`, `updated {"id":1,"t":"b"}`},
		{"deleted", `[{"id":1},{"id":"x"}]`, `[{"id":1}]`, `deleted {"id":"x"}`},
		{"all three in upstream order", `[{"id":1},{"id":2,"v":1},{"id":3}]`, `[{"id":4},{"id":2,"v":2},{"id":5}]`,
			`created {"id":4}; updated {"id":2,"v":2}; created {"id":5}; deleted {"id":1}; deleted {"id":3}`},
		{"reordering alone emits nothing", `[{"id":1},{"id":2}]`, `[{"id":2},{"id":1}]`, ``},
		{"whitespace alone emits nothing", `[{"id":1, "a": 2}]`, "[ {\"id\":1,\n\"a\":2} ]", ``},
		{"to empty", `[{"id":1}]`, `[]`, `deleted {"id":1}`},
		{"from empty", `[]`, `[{"id":1}]`, `created {"id":1}`},
		{"numeric and string ids differ", `[{"id":1}]`, `[{"id":"1"}]`, `created {"id":"1"}; deleted {"id":1}`},
		{"multi-line item values", `[]`, `[{"id":1,"t":"a\nb"}]`, `created {"id":1,"t":"a\nb"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffItems})
			if cs, err := d.Next([]byte(tt.prev)); err != nil || len(cs) != 0 {
				t.Fatalf("first body: got %q, %v; want no changes", render(cs), err)
			}
			cs, err := d.Next([]byte(tt.new))
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if got := render(cs); got != tt.want {
				t.Errorf("got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDiffItemsInvalidBodies(t *testing.T) {
	for _, body := range []string{
		`{"id":1}`,              // not an array
		`[{"id":1},{"id":1}]`,   // duplicate ids
		`[{"id":1},2]`,          // not an object
		`[{"id":1},{"name":2}]`, // no id
		`[{"id":1}`,             // truncated
		`<html>`,
	} {
		d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffItems})
		if _, err := d.Next([]byte(`[{"id":1}]`)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Next([]byte(body)); !errors.Is(err, poller.ErrInvalidBody) {
			t.Errorf("body %s: got %v, want ErrInvalidBody", body, err)
		}
		// A failed body changes nothing: the next good body diffs against the last good one.
		cs, err := d.Next([]byte(`[{"id":1},{"id":2}]`))
		if err != nil || render(cs) != `created {"id":2}` {
			t.Errorf("after invalid %s: got %q, %v; want created id 2", body, render(cs), err)
		}
	}
}

func TestDiffItemsPointer(t *testing.T) {
	d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffItems, ItemsPointer: "/data/a~1b", IDField: "key"})
	if _, err := d.Next([]byte(`{"data":{"a/b":[{"key":"x"}]},"total":1}`)); err != nil {
		t.Fatal(err)
	}
	cs, err := d.Next([]byte(`{"data":{"a/b":[{"key":"x"},{"key":"y"}]},"total":2}`))
	if err != nil || render(cs) != `created {"key":"y"}` {
		t.Errorf("got %q, %v; want created y", render(cs), err)
	}
	cs, err = d.Next([]byte(`{"data":{"a/b":[{"key":"y"}]}}`))
	if err != nil || render(cs) != `deleted {"key":"x"}` {
		t.Errorf("got %q, %v; want deleted {\"key\":\"x\"}", render(cs), err)
	}
	if _, err := d.Next([]byte(`{"data":{}}`)); !errors.Is(err, poller.ErrInvalidBody) {
		t.Errorf("missing pointer target: got %v, want ErrInvalidBody", err)
	}
}

func TestDiffPatch(t *testing.T) {
	d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffPatch})
	if _, err := d.Next([]byte(`{"count":1,"list":["a"]}`)); err != nil {
		t.Fatal(err)
	}
	cs, err := d.Next([]byte(`{"count":2,"list":["z","a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `patch [{"value":2,"op":"replace","path":"/count"},{"value":"z","op":"add","path":"/list/0"}]`
	if got := render(cs); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if cs, err := d.Next([]byte(`{"list":["z","a"], "count":2}`)); err != nil || len(cs) != 0 {
		t.Errorf("same document reordered keys: got %q, %v; want no change", render(cs), err)
	}
	if _, err := d.Next([]byte(`not json`)); !errors.Is(err, poller.ErrInvalidBody) {
		t.Errorf("got %v, want ErrInvalidBody", err)
	}
}

func TestDiffSnapshot(t *testing.T) {
	d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffSnapshot})
	d.Next([]byte("<p>1</p>"))
	if cs, _ := d.Next([]byte("<p>1</p>")); len(cs) != 0 {
		t.Errorf("same bytes: got %q, want nothing", render(cs))
	}
	if cs, _ := d.Next([]byte("<p>2</p>")); render(cs) != "snapshot <p>2</p>" {
		t.Errorf("got %q, want the whole new body", render(cs))
	}
}

func TestDiffAutoDecides(t *testing.T) {
	tests := []struct {
		name, body string
		want       poller.DiffMode
	}{
		{"objects with ids", `[{"id":1}]`, poller.DiffItems},
		{"non-object items", `[1,2]`, poller.DiffPatch},
		{"mixed items", `[{"id":1},"x"]`, poller.DiffPatch},
		{"duplicate ids", `[{"id":1},{"id":1}]`, poller.DiffPatch},
		{"missing id", `[{"id":1},{"x":1}]`, poller.DiffPatch},
		{"object", `{"count":3}`, poller.DiffPatch},
		{"not JSON", `<html></html>`, poller.DiffSnapshot},
		{"empty array waits", `[]`, poller.DiffAuto},
	}
	for _, tt := range tests {
		d := poller.NewDiffer(poller.DiffOptions{})
		if _, err := d.Next([]byte(tt.body)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if d.Mode() != tt.want {
			t.Errorf("%s: mode %q, want %q", tt.name, d.Mode(), tt.want)
		}
	}
}

func TestDiffAutoWrappers(t *testing.T) {
	tests := []struct {
		name, body string
		mode       poller.DiffMode
		pointer    string
	}{
		{"items with a count", `{"items":[{"id":1}],"total":1,"next":null}`, poller.DiffItems, "/items"},
		{"data", `{"data":[{"id":"a"},{"id":"b"}]}`, poller.DiffItems, "/data"},
		{"escaped name", `{"a/b~":[{"id":1}],"meta":{"x":[1]}}`, poller.DiffItems, "/a~1b~0"},
		{"repeated name: the last counts", `{"data":[1],"data":[{"id":1}]}`, poller.DiffItems, "/data"},
		{"two arrays", `{"a":[{"id":1}],"b":[{"id":2}]}`, poller.DiffPatch, ""},
		{"no array", `{"a":{"id":1}}`, poller.DiffPatch, ""},
		{"numbers", `{"data":[1,2]}`, poller.DiffPatch, ""},
		{"duplicate ids", `{"data":[{"id":1},{"id":1}]}`, poller.DiffPatch, ""},
		{"empty waits", `{"data":[],"total":0}`, poller.DiffAuto, ""},
	}
	for _, tt := range tests {
		d := poller.NewDiffer(poller.DiffOptions{})
		if _, err := d.Next([]byte(tt.body)); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if d.Mode() != tt.mode || d.ItemsPointer() != tt.pointer {
			t.Errorf("%s: mode %q at %q, want %q at %q", tt.name, d.Mode(), d.ItemsPointer(), tt.mode, tt.pointer)
		}
	}
	d := poller.NewDiffer(poller.DiffOptions{})
	for _, step := range []struct{ body, want string }{
		{`{"items":[],"total":0}`, ``},
		{`{"items":[{"id":1}],"total":1}`, `created {"id":1}`},
		{`{"total":2,"items":[{"id":2},{"id":1,"t":"x"}]}`, `created {"id":2}; updated {"id":1,"t":"x"}`},
		{`{"items":[{"id":2}],"total":1}`, `deleted {"id":1}`},
	} {
		cs, err := d.Next([]byte(step.body))
		if err != nil || render(cs) != step.want {
			t.Errorf("%s: got %q, %v; want %q", step.body, render(cs), err, step.want)
		}
	}
	if _, err := d.Next([]byte(`{"data":[{"id":2}]}`)); !errors.Is(err, poller.ErrInvalidBody) {
		t.Errorf("the items array gone: got %v, want ErrInvalidBody", err)
	}
}

func TestDiffAutoFromEmptyArray(t *testing.T) {
	for _, tt := range []struct {
		next string
		mode poller.DiffMode
		want string
	}{
		{`[{"id":1}]`, poller.DiffItems, `created {"id":1}`},
		{`[1]`, poller.DiffPatch, `patch [{"value":1,"op":"add","path":"/0"}]`},
	} {
		d := poller.NewDiffer(poller.DiffOptions{})
		d.Next([]byte(`[]`))
		cs, err := d.Next([]byte(tt.next))
		if err != nil || d.Mode() != tt.mode || render(cs) != tt.want {
			t.Errorf("[] then %s: got %q, %v, mode %s; want %q in %s", tt.next, render(cs), err, d.Mode(), tt.want, tt.mode)
		}
	}
}

func BenchmarkDiffItems(b *testing.B) {
	for _, n := range []int{100, 1000} {
		prev, next := itemsBody(n, 0), itemsBody(n, 1)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffItems})
				d.Next(prev)
				d.Next(next)
			}
		})
	}
}

func BenchmarkDiffPatch(b *testing.B) {
	for _, n := range []int{100, 1000} {
		prev, next := itemsBody(n, 0), itemsBody(n, 1)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffPatch})
				d.Next(prev)
				d.Next(next)
			}
		})
	}
}

// itemsBody is a realistic notification list of n items; shift adds that
// many new items at the front and drops as many from the end.
func itemsBody(n, shift int) []byte {
	var sb strings.Builder
	sb.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		id := n + shift - i
		fmt.Fprintf(&sb, `{"id":%d,"title":"Notification %d","body":"Someone commented on your post about item %d.","read":%t,"created_at":"2026-11-24T07:%02d:00Z"}`, id, id, id, id%3 == 0, id%60)
	}
	sb.WriteByte(']')
	return []byte(sb.String())
}

// A shape of large body, and how its i-th element reads.
type bigShape struct {
	name string
	n    int
	elem func(i int) string
	wrap string          // body is {"<wrap>":[...],"total":n} when set
	mode poller.DiffMode // what auto decides
}

func bigShapes() []bigShape {
	object := func(i int) string {
		return fmt.Sprintf(`{"name":"user %d","score":%d,"tags":["a","b"],"active":%t}`, i, i*7, i%2 == 0)
	}
	withID := func(i int) string {
		return fmt.Sprintf(`{"id":%d,"title":"Notification %d","read":%t}`, i, i, i%3 == 0)
	}
	return []bigShape{
		{"digits 4,000", 4000, func(i int) string { return fmt.Sprint(i % 10) }, "", poller.DiffPatch}, // 8 KB that cost 132 MB with jsondiff's LCS
		{"numbers", 100_000, func(i int) string { return fmt.Sprint(i * 7) }, "", poller.DiffPatch},
		{"digits", 500_000, func(i int) string { return fmt.Sprint(i % 10) }, "", poller.DiffPatch}, // 1 MB: the worst ratio of elements to bytes
		{"strings", 100_000, func(i int) string { return fmt.Sprintf(`"s%d"`, i) }, "", poller.DiffPatch},
		{"objects", 20_000, object, "", poller.DiffPatch},
		{"items wrapper", 20_000, withID, "items", poller.DiffItems},
		{"data wrapper", 20_000, withID, "data", poller.DiffItems},
		{"objects wrapper", 20_000, object, "data", poller.DiffPatch},
	}
}

// bigBody is the shape's body with elements idx (-1 is a new element).
func (s bigShape) body(idx []int) []byte {
	var b bytes.Buffer
	if s.wrap != "" {
		fmt.Fprintf(&b, `{"%s":`, s.wrap)
	}
	b.WriteByte('[')
	for k, i := range idx {
		if k > 0 {
			b.WriteByte(',')
		}
		if i < 0 {
			i = s.n + 1007 // an element (and id) the old body does not have
		}
		b.WriteString(s.elem(i))
	}
	b.WriteByte(']')
	if s.wrap != "" {
		fmt.Fprintf(&b, `,"total":%d}`, len(idx))
	}
	return b.Bytes()
}

type bigChange struct {
	name string
	edit func(idx []int, at int) []int
}

var bigChanges = []bigChange{
	{"insert", func(idx []int, at int) []int { return slices.Insert(idx, at, -1) }},
	{"remove", func(idx []int, at int) []int { return slices.Delete(idx, at, at+1) }},
	{"replace", func(idx []int, at int) []int { idx[at] = -1; return idx }},
}

// bigPair is the shape's old body and its body after change at pos
// ("front", "middle", "end").
func bigPair(s bigShape, c bigChange, pos string) (prev, next []byte) {
	idx := make([]int, s.n)
	for i := range idx {
		idx[i] = i
	}
	prev = s.body(idx)
	at := map[string]int{"front": 0, "middle": s.n / 2, "end": s.n - 1}[pos]
	return prev, s.body(c.edit(idx, at))
}

// TestDiffCostBoundedByBody: diffing large arrays of any shape allocates
// less than 20 times the two bodies (jsondiff's LCS allocated 132 MB for
// 8 KB of numbers) and takes well under a second; the events are right.
func TestDiffCostBoundedByBody(t *testing.T) {
	if testing.Short() {
		t.Skip("large bodies")
	}
	positions, limit := []string{"front", "middle", "end"}, 2*time.Second
	if raceEnabled {
		// Allocation does not depend on the detector; keep the suite's
		// time down and allow for its slowdown.
		positions, limit = []string{"middle"}, 10*time.Second
	}
	for _, s := range bigShapes() {
		for _, c := range bigChanges {
			for _, pos := range positions {
				t.Run(s.name+"/"+c.name+"/"+pos, func(t *testing.T) {
					prev, next := bigPair(s, c, pos)
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					start := time.Now()
					d := poller.NewDiffer(poller.DiffOptions{})
					if _, err := d.Next(prev); err != nil {
						t.Fatal(err)
					}
					changes, err := d.Next(next)
					took := time.Since(start)
					runtime.ReadMemStats(&after)
					if err != nil {
						t.Fatal(err)
					}
					// TotalAlloc counts every byte allocated, so it bounds the peak.
					alloc, bound := after.TotalAlloc-before.TotalAlloc, 20*uint64(len(prev)+len(next))
					t.Logf("bodies %d+%d bytes: allocated %d (%.1f×), %v, %d events", len(prev), len(next), alloc, float64(alloc)/float64(len(prev)+len(next)), took, len(changes))
					if alloc > bound {
						t.Errorf("allocated %d bytes, want under %d (20× the bodies)", alloc, bound)
					}
					if took > limit { // generous: a loaded machine; timings are in BENCHMARKS.md
						t.Errorf("diff took %v, want well under a second", took)
					}
					if d.Mode() != s.mode {
						t.Fatalf("auto chose %s, want %s", d.Mode(), s.mode)
					}
					if s.mode == poller.DiffItems {
						want := map[string]string{"insert": "created", "remove": "deleted", "replace": "created deleted"}[c.name]
						var kinds []string
						for _, ch := range changes {
							kinds = append(kinds, ch.Kind.String())
						}
						if got := strings.Join(kinds, " "); got != want {
							t.Errorf("events %s, want %s", got, want)
						}
						return
					}
					if len(changes) != 1 || changes[0].Kind != stream.KindPatch || len(changes[0].Data) > 200 {
						t.Errorf("got %d events (%.200s), want one small patch", len(changes), render(changes))
					}
					checkPatchEvents(t, string(prev), string(next), changes)
				})
			}
		}
	}
}

// TestDiffCostAdversarial: shapes that defeat trimming (a sliding window,
// every element changed, changes spread everywhere, deep nesting, wide
// objects) stay within the same bound, as a patch or as a snapshot.
func TestDiffCostAdversarial(t *testing.T) {
	if testing.Short() {
		t.Skip("large bodies")
	}
	seq := func(n int, f func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = f(i)
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	nested := func(depth int, leaf string) string {
		return strings.Repeat(`{"a":[`, depth) + leaf + strings.Repeat(`]}`, depth)
	}
	wide := func(n, v int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`"k%d":%d`, i, i*v%7)
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	num := func(i int) string { return fmt.Sprint(i) }
	tests := []struct{ name, prev, next string }{
		{"sliding window", seq(100_000, num), seq(100_000, func(i int) string { return fmt.Sprint(i + 1) })},
		{"reversed", seq(200_000, func(i int) string { return fmt.Sprint(i % 10) }), seq(200_000, func(i int) string { return fmt.Sprint(9 - i%10) })},
		{"every 100th changed", seq(100_000, num), seq(100_000, func(i int) string {
			if i%100 == 50 {
				return "-1"
			}
			return num(i)
		})},
		{"every 1000th inserted", seq(100_000, num), seq(100_100, func(i int) string {
			if i%1001 == 500 {
				return "-1"
			}
			return num(i - (i+500)/1001)
		})},
		{"tiny objects all changed", seq(100_000, func(i int) string { return `{"a":1}` }), seq(100_000, func(i int) string { return `{"a":2}` })},
		{"nested arrays all changed", seq(100_000, func(i int) string { return `[1]` }), seq(100_000, func(i int) string { return `[2]` })},
		{"deep nesting", nested(5000, "1"), nested(5000, "2")},
		{"wide object", wide(50_000, 1), wide(50_000, 3)},
		{"type change", seq(100_000, num), `{"a":1}`},
		// Two arrays in one document: the first spent the alignment budget
		// (and once overdrew it, which left the second without any bound).
		{"two arrays", `{"a":` + seq(60_000, num) + `,"z":` + seq(100_000, num) + `}`,
			`{"a":` + seq(60_000, func(i int) string {
				if i%85 == 0 {
					return "-1"
				}
				return num(i)
			}) + `,"z":` + seq(100_000, func(i int) string {
				if i%33 == 0 {
					return "-1"
				}
				return num(i)
			}) + `}`},
		// Small but deep: 8 KB of nested objects is not for jsondiff.
		{"small and deep", strings.Repeat(`{"a":`, 1365) + "1" + strings.Repeat(`}`, 1365), strings.Repeat(`{"a":`, 1365) + "2" + strings.Repeat(`}`, 1365)},
		// 300 edits around a long run that every diagonal of the edit
		// search can follow: quadratic comparisons without a budget.
		{"long equal run between edits", seq(200_300, func(i int) string {
			if i < 150 || i >= 200_150 {
				return num(i + 1)
			}
			return "0"
		}), seq(200_300, func(i int) string {
			if i < 150 || i >= 200_150 {
				return num(-i - 1)
			}
			return "0"
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, next := []byte(tt.prev), []byte(tt.next)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffPatch})
			d.Next(prev)
			changes, err := d.Next(next)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			alloc, bound := after.TotalAlloc-before.TotalAlloc, 20*uint64(len(prev)+len(next))
			t.Logf("bodies %d+%d bytes: allocated %d (%.1f×), %v, %s of %d bytes", len(prev), len(next), alloc, float64(alloc)/float64(len(prev)+len(next)), took, changes[0].Kind, len(changes[0].Data))
			if alloc > bound {
				t.Errorf("allocated %d bytes, want under %d (20× the bodies)", alloc, bound)
			}
			if limit := map[bool]time.Duration{false: 2 * time.Second, true: 10 * time.Second}[raceEnabled]; took > limit {
				t.Errorf("diff took %v, want well under a second", took)
			}
			checkPatchEvents(t, tt.prev, tt.next, changes)
		})
	}
}

// TestDiffErrorsNameNoValues: error texts end up in logs, and bodies never
// may (SECURITY.md): they name positions and counts, not ids or content.
func TestDiffErrorsNameNoValues(t *testing.T) {
	const secret = "sk_live_7f3a9c2e"
	tests := []struct {
		opts poller.DiffOptions
		body string
	}{
		{poller.DiffOptions{Mode: poller.DiffItems}, `[{"id":"` + secret + `"},{"id":"` + secret + `"}]`},
		{poller.DiffOptions{Mode: poller.DiffItems}, `[{"id":{"k":"` + secret + `"}},{"id":{ "k" : "` + secret + `"}}]`},
		{poller.DiffOptions{Mode: poller.DiffItems}, `[{"id":1},"` + secret + `"]`},
		{poller.DiffOptions{Mode: poller.DiffItems}, `[{"id":1},{"` + secret + `":1}]`},
		{poller.DiffOptions{Mode: poller.DiffItems}, `{"` + secret + `":[]}`},
		{poller.DiffOptions{Mode: poller.DiffItems}, `[{"id":"` + secret},
		{poller.DiffOptions{Mode: poller.DiffItems}, secret},
		{poller.DiffOptions{Mode: poller.DiffItems, ItemsPointer: "/data"}, `{"data":{"` + secret + `":1}}`},
		{poller.DiffOptions{Mode: poller.DiffItems, ItemsPointer: "/data/0"}, `{"data":["` + secret + `"]}`},
		{poller.DiffOptions{Mode: poller.DiffPatch}, `{"token":"` + secret},
		{poller.DiffOptions{Mode: poller.DiffPatch}, secret},
	}
	for _, tt := range tests {
		d := poller.NewDiffer(tt.opts)
		_, err := d.Next([]byte(tt.body))
		if !errors.Is(err, poller.ErrInvalidBody) {
			t.Errorf("%s: got %v, want ErrInvalidBody", tt.body, err)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:4]) {
			t.Errorf("error %q shows a value from the body", err)
		}
	}
	// The same through a first good body, where patch mode diffs.
	d := poller.NewDiffer(poller.DiffOptions{Mode: poller.DiffItems})
	d.Next([]byte(`[{"id":1}]`))
	if _, err := d.Next([]byte(`[{"id":"` + secret + `"},{"id":"` + secret + `"}]`)); err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("got %v, want an error without the id", err)
	}
}

// BenchmarkDiffLarge: one poll's diff of each large shape (bytes/op is what
// it allocates; the differ sees the old body first, as after a poll).
func BenchmarkDiffLarge(b *testing.B) {
	for _, s := range bigShapes() {
		for _, cp := range []struct {
			change bigChange
			pos    string
		}{{bigChanges[0], "front"}, {bigChanges[2], "middle"}, {bigChanges[1], "end"}} {
			prev, next := bigPair(s, cp.change, cp.pos)
			b.Run(strings.ReplaceAll(s.name, " ", "_")+"/"+cp.change.name+"_"+cp.pos, func(b *testing.B) {
				benchmarkDiff(b, prev, next)
			})
		}
	}
}

// BenchmarkDiffDigits: the arrays of one-digit numbers changing at the
// front with which jsondiff's LCS allocated 132 MB (4,000) and 1.2 GB
// (12,000) per diff.
func BenchmarkDiffDigits(b *testing.B) {
	for _, n := range []int{4000, 12000} {
		s := bigShape{n: n, elem: func(i int) string { return fmt.Sprint(i % 10) }}
		prev, next := bigPair(s, bigChanges[2], "front")
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchmarkDiff(b, prev, next) })
	}
}

func benchmarkDiff(b *testing.B, prev, next []byte) {
	b.ReportAllocs()
	b.SetBytes(int64(len(prev) + len(next)))
	for b.Loop() {
		d := poller.NewDiffer(poller.DiffOptions{})
		if _, err := d.Next(prev); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Next(next); err != nil {
			b.Fatal(err)
		}
	}
}
