package stream

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Key identifies the clients that share one poller: those for whom the
// upstream would give the same answer. It is comparable and holds no
// credential, only a keyed hash of them.
type Key struct {
	url      string   // upstream URL with a normalised query
	identity [32]byte // HMAC of the identity and keyed forwarding headers
	user     [32]byte // HMAC of the identity headers alone
}

// String is safe to log: a short digest of the whole key.
func (k Key) String() string {
	h := sha256.New()
	h.Write([]byte(k.url))
	h.Write(k.identity[:])
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// ID names the key where replicas share it (package fleet): the same for
// every replica with the same Keyer secret and upstream, 128 bits so that
// two keys never meet, and as free of credentials as the Key.
func (k Key) ID() string {
	h := sha256.New()
	h.Write([]byte(k.url))
	h.Write(k.identity[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Identity is the keyed hash of the key's identity header values alone:
// equal for every key of one client identity (clients without identity
// headers share one), whatever host or proto it was asked for, so a client
// cannot mint identities by varying Host; and as safe to hold, compare or
// use as a map key as the Key itself. A source may share its work fairly
// across identities by it.
func (k Key) Identity() [32]byte { return k.user }

// Target is what a source fetches for one key.
type Target struct {
	Key Key
	// Path is the path clients asked for (a nudge's pattern matches it).
	Path string
	// URL is the upstream URL to poll.
	URL *url.URL
	// Header holds the identity headers to send upstream.
	Header http.Header
	// Forward holds the forwarding headers (see IsForwardingHeader) to
	// send upstream with each poll: those pass-through sent for the
	// client that opened the key.
	Forward http.Header
}

// Keyer derives keys. Identity values are hashed with a per-process secret
// so that a key (or its String) never reveals a credential, even to someone
// who can guess candidate cookies.
type Keyer struct {
	secret        atomic.Pointer[keySecret]
	headers       []string // canonical header names, in configured order
	keyByClientIP bool
}

// keySecret is a Keyer's secret and the HMAC-SHA256 states keyed with it,
// reset, for reuse: two hmac.New per stream opened would be 2 KB of
// garbage. A new secret comes with a pool of its own, so no state keyed
// with the old one is handed out after SetSecret.
type keySecret struct {
	b    []byte
	macs sync.Pool
}

func newKeySecret(b []byte) *keySecret { return &keySecret{b: b} }

// mac is an HMAC-SHA256 keyed with s in its initial state; the caller puts
// it back in s.macs.
func (s *keySecret) mac() hash.Hash {
	if m, ok := s.macs.Get().(hash.Hash); ok {
		m.Reset()
		return m
	}
	return hmac.New(sha256.New, s.b)
}

// KeyerOptions configure NewKeyerWith.
type KeyerOptions struct {
	// IdentityHeaders name the headers that identify a user.
	IdentityHeaders []string
	// KeyByClientIP makes the forwarding headers that carry the client's
	// address (X-Forwarded-For, X-Real-Ip, the for= of Forwarded) part of
	// the key, for upstreams that authorise by address. Without it a key
	// is shared by the clients of one identity at any address.
	KeyByClientIP bool
	// Secret keys the hashes (HMAC-SHA256). Replicas that share polls need
	// the same secret; empty: a random one.
	Secret []byte
}

// NewKeyer returns a Keyer for the named identity headers.
func NewKeyer(identityHeaders []string) *Keyer {
	return NewKeyerWith(KeyerOptions{IdentityHeaders: identityHeaders})
}

// NewKeyerWith returns a Keyer configured by opts.
func NewKeyerWith(opts KeyerOptions) *Keyer {
	k := &Keyer{keyByClientIP: opts.KeyByClientIP}
	secret := bytes.Clone(opts.Secret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		rand.Read(secret) // never fails (crypto/rand since Go 1.24)
	}
	k.secret.Store(newKeySecret(secret))
	for _, h := range opts.IdentityHeaders {
		k.headers = append(k.headers, http.CanonicalHeaderKey(h))
	}
	return k
}

// SetSecret replaces the secret for the keys derived from now on: a replica
// that started while the fleet's Redis was unreachable takes the fleet's
// secret once it answers. Keys derived before keep their names.
func (k *Keyer) SetSecret(secret []byte) {
	k.secret.Store(newKeySecret(bytes.Clone(secret)))
}

// IsForwardingHeader reports whether a header describes the path a request
// took rather than the request: Forwarded (RFC 7239), X-Real-Ip and every
// X-Forwarded-*. The proxy decides them (a client's own are trusted only
// from a trusted proxy) and polls send the ones pass-through would.
func IsForwardingHeader(name string) bool {
	name = http.CanonicalHeaderKey(name)
	return name == "Forwarded" || name == "X-Real-Ip" || strings.HasPrefix(name, "X-Forwarded-")
}

// Target builds the target for a client's request path, the upstream URL it
// maps to, and the request's header as pass-through sends it upstream (its
// forwarding headers already decided by the proxy). The query of u must
// already be normalised (see NormalizeQuery).
//
// The key holds everything sent on a poll that may change the answer: the
// URL, the identity headers, and the forwarding headers (the forwarded
// host and proto among them), but the client's address only with
// KeyByClientIP. Without it a shared poll carries the address of the client
// that opened the key.
func (k *Keyer) Target(path string, u *url.URL, h http.Header) Target {
	id := make(http.Header, len(k.headers))
	for _, name := range k.headers {
		if vs := h.Values(name); len(vs) > 0 {
			id[name] = slices.Clone(vs)
		}
	}
	var fwd http.Header
	for name, vs := range h {
		if IsForwardingHeader(name) && len(vs) > 0 {
			if fwd == nil {
				fwd = http.Header{}
			}
			fwd[http.CanonicalHeaderKey(name)] = slices.Clone(vs)
		}
	}
	key := Key{url: u.String(), identity: k.identity(id, fwd), user: k.identity(id, nil)}
	return Target{Key: key, Path: path, URL: u, Header: id, Forward: fwd}
}

// HasIdentity reports whether one of t's identity headers is exactly value,
// or, for a Cookie header, holds value as one "name=value" pair (a backend
// knows its session cookie, not every cookie the browser sends): how a
// nudge names the user whose keys to poll.
func (k *Keyer) HasIdentity(t Target, value string) bool {
	found := 0
	identityValues(t, func(v string) {
		found |= subtle.ConstantTimeCompare([]byte(v), []byte(value))
	})
	return found == 1
}

// IdentityMAC is the keyed hash of an identity value, as HasIdentityMAC
// matches it: how a nudge for one user travels to other replicas without
// the credential.
func (k *Keyer) IdentityMAC(value string) []byte {
	m := hmac.New(sha256.New, k.secret.Load().b)
	m.Write([]byte("nudge identity\x00"))
	m.Write([]byte(value))
	return m.Sum(nil)
}

// HasIdentityMAC is HasIdentity for a value known only by its IdentityMAC.
func (k *Keyer) HasIdentityMAC(t Target, mac []byte) bool {
	found := 0
	identityValues(t, func(v string) {
		found |= subtle.ConstantTimeCompare(k.IdentityMAC(v), mac)
	})
	return found == 1
}

// identityValues calls f with each identity header value of t and each
// "name=value" pair of its cookies.
func identityValues(t Target, f func(string)) {
	for name, vs := range t.Header {
		for _, v := range vs {
			f(v)
			if name != "Cookie" {
				continue
			}
			cookies, err := http.ParseCookie(v)
			if err != nil {
				continue
			}
			for _, c := range cookies {
				f(c.Name + "=" + c.Value)
			}
		}
	}
}

// identity hashes one identity: each configured header's values, then the
// keyed forwarding headers by name. Every count, name and value is
// length-prefixed, so no two different identities hash alike by shifting
// bytes between headers or values.
func (k *Keyer) identity(id, fwd http.Header) [32]byte {
	ks := k.secret.Load()
	m := ks.mac()
	defer ks.macs.Put(m)
	for _, name := range k.headers {
		writeValues(m, id[name])
	}
	names := make([]string, 0, len(fwd))
	for name := range fwd {
		if k.keyByClientIP || (name != "X-Forwarded-For" && name != "X-Real-Ip") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	writeLen(m, len(names))
	for _, name := range names {
		writeValues(m, []string{name})
		vs := fwd[name]
		if name == "Forwarded" && !k.keyByClientIP {
			vs = slices.Clone(vs)
			for i, v := range vs {
				vs[i] = forwardedWithoutFor(v)
			}
		}
		writeValues(m, vs)
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func writeLen(m hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	m.Write(b[:])
}

func writeValues(m hash.Hash, vs []string) {
	writeLen(m, len(vs))
	for _, v := range vs {
		writeLen(m, len(v))
		m.Write([]byte(v))
	}
}

// forwardedWithoutFor is a Forwarded value (RFC 7239 §4) without its for=
// pairs, the client addresses, so that clients of one identity behind one
// proxy share a key; host=, proto= and by= stay. Separators are kept, so
// values that differ in anything else stay apart. A value it cannot parse
// (an open quoted-string) is kept whole: a key too many, never too few.
func forwardedWithoutFor(v string) string {
	var out strings.Builder
	start, quoted := 0, false
	for i := 0; i <= len(v); i++ {
		if i < len(v) {
			switch c := v[i]; {
			case quoted && c == '\\' && i+1 < len(v):
				i++ // quoted-pair: the next byte is literal
				continue
			case c == '"':
				quoted = !quoted
				continue
			case quoted || c != ';' && c != ',':
				continue
			}
		} else if quoted {
			return v
		}
		pair := strings.TrimSpace(v[start:i])
		if name, _, _ := strings.Cut(pair, "="); !strings.EqualFold(strings.TrimSpace(name), "for") {
			out.WriteString(pair)
		}
		if i < len(v) {
			out.WriteByte(v[i])
		}
		start = i + 1
	}
	return out.String()
}

// NormalizeQuery sorts a query by parameter name (keeping the order of
// repeated values, which may matter upstream) and drops the parameters in
// drop. Two requests that differ only in parameter order share a key.
//
// A parameter url.ParseQuery rejects (a ';', a bad %-escape) is left out,
// never an error: httputil.ReverseProxy leaves it out of pass-through too,
// so the stream polls what a GET of the same URL would fetch.
func NormalizeQuery(raw string, drop ...string) string {
	if raw == "" {
		return ""
	}
	v, _ := url.ParseQuery(raw) // v holds every parameter that parses
	for _, d := range drop {
		v.Del(d)
	}
	return v.Encode()
}
