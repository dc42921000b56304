package stream_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/ssegate/ssegate/stream"
)

func TestKeysSeparateIdentities(t *testing.T) {
	k := stream.NewKeyer([]string{"Authorization", "Cookie"})
	u, _ := url.Parse("http://up/n?a=1")
	key := func(h http.Header) stream.Key { return k.Target("/n", u, h).Key }
	distinct := []http.Header{
		{},
		{"Authorization": {""}},
		{"Authorization": {"Bearer a"}},
		{"Authorization": {"Bearer b"}},
		{"Cookie": {"Bearer a"}}, // same value, other header
		{"Authorization": {"Bearer a"}, "Cookie": {""}}, // an empty cookie is still a cookie
		{"Authorization": {"Bearer a", "x"}},
		{"Authorization": {"Bearer ax"}},
		{"Authorization": {"Bearer a"}, "Cookie": {"x"}},
	}
	seen := map[stream.Key]int{}
	for i, h := range distinct {
		kk := key(h)
		if j, dup := seen[kk]; dup {
			t.Errorf("identities %d %v and %d %v share a key", j, distinct[j], i, h)
		}
		seen[kk] = i
	}
	// Headers that are not identity headers do not split keys.
	if key(http.Header{"Authorization": {"Bearer a"}}) != key(http.Header{"Authorization": {"Bearer a"}, "X-Trace": {"1"}}) {
		t.Error("a non-identity header changed the key")
	}
	// Two keyers (two processes) never produce comparable keys for the same identity in logs.
	k2 := stream.NewKeyer([]string{"Authorization", "Cookie"})
	if k.Target("/n", u, distinct[2]).Key.String() == k2.Target("/n", u, distinct[2]).Key.String() {
		t.Error("key digests do not depend on the per-process secret")
	}
}

// TestKeyIdentity: keys of one identity on different paths share an
// Identity (the scheduler shares poll slots by it); other identities do not.
func TestKeyIdentity(t *testing.T) {
	k := stream.NewKeyer([]string{"Authorization"})
	a, _ := url.Parse("http://up/a")
	b, _ := url.Parse("http://up/b?x=1")
	alice := http.Header{"Authorization": {"Bearer alice"}}
	if k.Target("/a", a, alice).Key.Identity() != k.Target("/b", b, alice).Key.Identity() {
		t.Error("one identity's keys on two paths have different identities")
	}
	if k.Target("/a", a, alice).Key.Identity() == k.Target("/a", a, http.Header{"Authorization": {"Bearer bob"}}).Key.Identity() {
		t.Error("two identities share one")
	}
	if k.Target("/a", a, nil).Key.Identity() != k.Target("/b", b, http.Header{"X-Other": {"1"}}).Key.Identity() {
		t.Error("clients without identity headers do not share one identity")
	}
}

func TestNormalizeQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"b=2&a=1", "a=1&b=2"},
		{"a=2&a=1", "a=2&a=1"}, // repeated values keep their order
		{"lastEventId=x&q=1", "q=1"},
		{"q=a%20b", "q=a+b"},
	}
	for _, tt := range tests {
		got, err := stream.NormalizeQuery(tt.in, "lastEventId")
		if err != nil || got != tt.want {
			t.Errorf("NormalizeQuery(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := stream.NormalizeQuery("a=%zz"); err == nil {
		t.Error("malformed query: no error")
	}
}

func TestHasIdentity(t *testing.T) {
	k := stream.NewKeyer([]string{"Authorization", "Cookie"})
	u, _ := url.Parse("http://up/n")
	tg := k.Target("/n", u, http.Header{"Authorization": {"Bearer alice"}, "Cookie": {"theme=dark; user=alice"}})
	for value, want := range map[string]bool{
		"Bearer alice":           true,
		"theme=dark; user=alice": true, // the whole cookie header
		"user=alice":             true, // one cookie pair
		"user=bob":               false,
		"alice":                  false,
		"Bearer ali":             false,
		"":                       false,
	} {
		if got := k.HasIdentity(tg, value); got != want {
			t.Errorf("HasIdentity(%q) = %v, want %v", value, got, want)
		}
	}
}
