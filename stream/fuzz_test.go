package stream_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ssegate/ssegate/internal/sse"
	"github.com/ssegate/ssegate/stream"
)

// FuzzAppendEvent: whatever the payload, the encoding parses (WHATWG) back
// to exactly one event with our id, our event name and the payload, its
// line ends normalised to LF; no byte of the payload becomes a field.
func FuzzAppendEvent(f *testing.F) {
	for _, s := range []string{"", "x", "a\nb", "a\r\nb", "a\rb", "\n", "\r\n\r\n", "id: 1\nevent: evil\n\ndata: x", "retry: 1\n", ": comment", "\x00", "héllo ✓"} {
		f.Add(uint64(1), uint8(1), []byte(s))
	}
	f.Fuzz(func(t *testing.T, id uint64, kind uint8, data []byte) {
		if id == 0 {
			id = 1
		}
		k := stream.Kinds()[int(kind)%len(stream.Kinds())]
		wire := stream.AppendEvent(nil, "ep", stream.ID(id), k, data)
		for _, line := range strings.Split(strings.TrimSuffix(string(wire), "\n\n"), "\n") {
			if !strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, "data: ") {
				t.Fatalf("line %q is not one of our fields in %q", line, wire)
			}
		}
		r := sse.NewReader(bytes.NewReader(wire))
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("parse %q: %v", wire, err)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(data), "\r\n", "\n"), "\r", "\n")
		if ev.ID != stream.Epoch("ep").Format(stream.ID(id)) || ev.Type != k.String() || ev.Data != want || ev.Retry != 0 {
			t.Fatalf("got %+v, want id ep-%d type %s data %q", ev, id, k, want)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("got a second event or error %v from %q", err, wire)
		}
	})
}

// FuzzEpochParse: Parse never panics, and what it accepts is exactly what
// Format writes.
func FuzzEpochParse(f *testing.F) {
	for _, s := range []string{"ep-1", "ep-0", "ep-", "ep--1", "ep-18446744073709551615", "ep-18446744073709551616", "x-1", "", "ep-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := stream.Epoch("ep").Parse(s)
		if ok && stream.Epoch("ep").Format(id) != s {
			t.Fatalf("Parse(%q) = %d, but Format gives %q", s, id, stream.Epoch("ep").Format(id))
		}
		if ok && id == 0 {
			t.Fatalf("Parse(%q) accepted id 0", s)
		}
	})
}

// FuzzKeysSeparateIdentities: two different identities never share a key,
// and the same identity always does.
func FuzzKeysSeparateIdentities(f *testing.F) {
	f.Add("Bearer a", "", "Bearer b", "")
	f.Add("a", "b", "ab", "")
	f.Add("", "x", "x", "")
	f.Fuzz(func(t *testing.T, auth1, cookie1, auth2, cookie2 string) {
		k := stream.NewKeyer([]string{"Authorization", "Cookie"})
		u, _ := url.Parse("http://up/n")
		h := func(a, c string) http.Header {
			hd := http.Header{}
			if a != "" {
				hd.Set("Authorization", a)
			}
			if c != "" {
				hd.Set("Cookie", c)
			}
			return hd
		}
		k1 := k.Target("/n", u, h(auth1, cookie1)).Key
		k2 := k.Target("/n", u, h(auth2, cookie2)).Key
		same := auth1 == auth2 && cookie1 == cookie2
		if same != (k1 == k2) {
			t.Fatalf("identities (%q,%q) and (%q,%q): same identity %v, same key %v", auth1, cookie1, auth2, cookie2, same, k1 == k2)
		}
	})
}
