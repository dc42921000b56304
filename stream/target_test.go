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
	// Another host or proto is another key, but not another identity: a
	// client varying Host must not get a share of the poll slots per host.
	tenant1 := http.Header{"Authorization": {"Bearer alice"}, "X-Forwarded-Host": {"t1.example"}, "X-Forwarded-Proto": {"https"}}
	tenant2 := http.Header{"Authorization": {"Bearer alice"}, "X-Forwarded-Host": {"t2.example"}, "X-Forwarded-Proto": {"http"}}
	t1, t2 := k.Target("/a", a, tenant1).Key, k.Target("/a", a, tenant2).Key
	if t1 == t2 {
		t.Error("two hosts share a key")
	}
	if t1.Identity() != t2.Identity() || t1.Identity() != k.Target("/a", a, alice).Key.Identity() {
		t.Error("the forwarded host or proto changes the identity")
	}
}

func TestNormalizeQuery(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"b=2&a=1", "a=1&b=2"},
		{"a=2&a=1", "a=2&a=1"}, // repeated values keep their order
		{"lastEventId=x&q=1", "q=1"},
		{"q=a%20b", "q=a+b"},
		// What url.ParseQuery rejects is left out, as pass-through
		// (httputil.ReverseProxy) leaves it out.
		{"q=a;b", ""},
		{"z=1&q=a;b&a=2", "a=2&z=1"},
		{"a=%zz&b=1", "b=1"},
		{"a=%", ""},
	}
	for _, tt := range tests {
		if got := stream.NormalizeQuery(tt.in, "lastEventId"); got != tt.want {
			t.Errorf("NormalizeQuery(%q) = %q; want %q", tt.in, got, tt.want)
		}
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

// The key holds every forwarding header that may change the upstream's
// answer; the client's address only with KeyByClientIP.
func TestKeysIncludeForwarding(t *testing.T) {
	u, _ := url.Parse("http://up/n")
	base := http.Header{
		"Authorization":     {"Bearer a"},
		"X-Forwarded-For":   {"192.0.2.1"},
		"X-Forwarded-Host":  {"a.example"},
		"X-Forwarded-Proto": {"https"},
	}
	with := func(name, value string) http.Header {
		h := base.Clone()
		if value == "" {
			h.Del(name)
		} else {
			h.Set(name, value)
		}
		return h
	}
	for _, byIP := range []bool{false, true} {
		k := stream.NewKeyerWith(stream.KeyerOptions{IdentityHeaders: []string{"Authorization"}, KeyByClientIP: byIP})
		key := func(h http.Header) stream.Key { return k.Target("/n", u, h).Key }
		apart := []http.Header{
			with("X-Forwarded-Host", "b.example"),
			with("X-Forwarded-Host", ""),
			with("X-Forwarded-Proto", "http"),
			with("X-Forwarded-Prefix", "/tenant"),
			with("Forwarded", "host=a.example;proto=https"),
			with("Forwarded", "for=192.0.2.1;host=b.example"),
		}
		for _, h := range apart {
			if key(h) == key(base) {
				t.Errorf("KeyByClientIP=%v: %v shares a key with %v", byIP, h, base)
			}
		}
		byAddress := []http.Header{
			with("X-Forwarded-For", "192.0.2.2"),
			with("X-Real-Ip", "192.0.2.2"),
		}
		for _, h := range byAddress {
			if got := key(h) != key(base); got != byIP {
				t.Errorf("KeyByClientIP=%v: %v apart from %v is %v, want %v", byIP, h, base, got, byIP)
			}
		}
		fw := func(v string) stream.Key { return key(with("Forwarded", v)) }
		if got := fw(`for=192.0.2.1;host=a.example`) != fw(`for="[2001:db8::1]:80;x";host=a.example`); got != byIP {
			t.Errorf("KeyByClientIP=%v: Forwarded differing in for= only: apart %v, want %v", byIP, got, byIP)
		}
		if fw(`for=x, host=a.example`) == fw(`for=x;host=a.example`) {
			t.Error("Forwarded elements and pairs share a key")
		}
		if fw(`for="open`) == fw(`for="other`) {
			t.Error("an unparsable Forwarded value lost its for= (keys too few)")
		}

		tg := k.Target("/n", u, base)
		if tg.Header.Get("X-Forwarded-Host") != "" || tg.Forward.Get("X-Forwarded-Host") != "a.example" || tg.Forward.Get("Authorization") != "" {
			t.Errorf("identity %v and forwarding %v headers mixed up", tg.Header, tg.Forward)
		}
		if tg.Forward.Get("X-Forwarded-For") != "192.0.2.1" {
			t.Errorf("the poll does not carry X-Forwarded-For: %v", tg.Forward)
		}
		// A nudge names an identity, never a forwarded value.
		if k.HasIdentity(tg, "a.example") {
			t.Error("a forwarding header matched a nudge's identity")
		}
	}
}

func TestIsForwardingHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"Forwarded": true, "x-forwarded-for": true, "X-Forwarded-Client-Cert": true, "X-Real-IP": true,
		"X-Forward": false, "Authorization": false, "Via": false,
	} {
		if got := stream.IsForwardingHeader(name); got != want {
			t.Errorf("IsForwardingHeader(%q) = %v, want %v", name, got, want)
		}
	}
}
