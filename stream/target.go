package stream

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/url"
)

// Key identifies the clients that share one poller: those for whom the
// upstream would give the same answer. It is comparable and holds no
// credential, only a keyed hash of them.
type Key struct {
	url      string   // upstream URL with a normalised query
	identity [32]byte // HMAC of the identity header values
}

// String is safe to log: a short digest of the whole key.
func (k Key) String() string {
	h := sha256.New()
	h.Write([]byte(k.url))
	h.Write(k.identity[:])
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// Identity is the keyed hash of the key's identity header values: equal for
// every key of one client identity (clients without identity headers share
// one), and as safe to hold, compare or use as a map key as the Key itself.
// A source may share its work fairly across identities by it.
func (k Key) Identity() [32]byte { return k.identity }

// Target is what a source fetches for one key.
type Target struct {
	Key Key
	// Path is the path clients asked for (a nudge's pattern matches it).
	Path string
	// URL is the upstream URL to poll.
	URL *url.URL
	// Header holds the identity headers to send upstream.
	Header http.Header
}

// Keyer derives keys. Identity values are hashed with a per-process secret
// so that a key (or its String) never reveals a credential, even to someone
// who can guess candidate cookies.
type Keyer struct {
	secret  []byte
	headers []string // canonical header names, in configured order
}

// NewKeyer returns a Keyer for the named identity headers.
func NewKeyer(identityHeaders []string) *Keyer {
	k := &Keyer{secret: make([]byte, 32)}
	rand.Read(k.secret) // never fails (crypto/rand since Go 1.24)
	for _, h := range identityHeaders {
		k.headers = append(k.headers, http.CanonicalHeaderKey(h))
	}
	return k
}

// Target builds the target for a client's request path, the upstream URL it
// maps to and the client's headers. The query of u must already be
// normalised (see NormalizeQuery).
func (k *Keyer) Target(path string, u *url.URL, h http.Header) Target {
	id := make(http.Header, len(k.headers))
	for _, name := range k.headers {
		if vs := h.Values(name); len(vs) > 0 {
			id[name] = append([]string(nil), vs...)
		}
	}
	return Target{Key: Key{url: u.String(), identity: k.identity(id)}, Path: path, URL: u, Header: id}
}

// HasIdentity reports whether one of t's identity headers is exactly value,
// or, for a Cookie header, holds value as one "name=value" pair (a backend
// knows its session cookie, not every cookie the browser sends): how a
// nudge names the user whose keys to poll.
func (k *Keyer) HasIdentity(t Target, value string) bool {
	found := 0
	for name, vs := range t.Header {
		for _, v := range vs {
			found |= subtle.ConstantTimeCompare([]byte(v), []byte(value))
			if name != "Cookie" {
				continue
			}
			cookies, err := http.ParseCookie(v)
			if err != nil {
				continue
			}
			for _, c := range cookies {
				found |= subtle.ConstantTimeCompare([]byte(c.Name+"="+c.Value), []byte(value))
			}
		}
	}
	return found == 1
}

// IdentityHash hashes one identity: each configured header's values. Every
// value is length-prefixed, so no two different identities hash alike by
// shifting bytes between headers or values.
func (k *Keyer) identity(h http.Header) [32]byte {
	m := hmac.New(sha256.New, k.secret)
	var n [8]byte
	for _, name := range k.headers {
		vs := h[name]
		binary.BigEndian.PutUint64(n[:], uint64(len(vs)))
		m.Write(n[:])
		for _, v := range vs {
			binary.BigEndian.PutUint64(n[:], uint64(len(v)))
			m.Write(n[:])
			m.Write([]byte(v))
		}
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// NormalizeQuery sorts a query by parameter name (keeping the order of
// repeated values, which may matter upstream) and drops the parameters in
// drop. Two requests that differ only in parameter order share a key.
func NormalizeQuery(raw string, drop ...string) (string, error) {
	if raw == "" {
		return "", nil
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return "", err
	}
	for _, d := range drop {
		v.Del(d)
	}
	return v.Encode(), nil
}
