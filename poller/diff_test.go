package poller_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/config"
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
			d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffItems})
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
		d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffItems})
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
	d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffItems, ItemsPointer: "/data/a~1b", IDField: "key"})
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
	d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffPatch})
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
	d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffSnapshot})
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
		name, body, want string
	}{
		{"objects with ids", `[{"id":1}]`, config.DiffItems},
		{"non-object items", `[1,2]`, config.DiffPatch},
		{"mixed items", `[{"id":1},"x"]`, config.DiffPatch},
		{"duplicate ids", `[{"id":1},{"id":1}]`, config.DiffPatch},
		{"missing id", `[{"id":1},{"x":1}]`, config.DiffPatch},
		{"object", `{"count":3}`, config.DiffPatch},
		{"not JSON", `<html></html>`, config.DiffSnapshot},
		{"empty array waits", `[]`, config.DiffAuto},
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

func TestDiffAutoFromEmptyArray(t *testing.T) {
	for _, tt := range []struct{ next, mode, want string }{
		{`[{"id":1}]`, config.DiffItems, `created {"id":1}`},
		{`[1]`, config.DiffPatch, `patch [{"value":1,"op":"add","path":"/0"}]`},
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
				d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffItems})
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
				d := poller.NewDiffer(poller.DiffOptions{Mode: config.DiffPatch})
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
