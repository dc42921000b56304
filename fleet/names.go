package fleet

import (
	"errors"
	"fmt"
)

// names builds Redis key and channel names. Every key of one stream key
// carries the same hash tag, {<key id>}, so that one Redis Cluster slot
// holds them all and each script touches a single slot.
type names struct{ prefix string }

func (n names) tag(key string) string       { return n.prefix + "{" + key + "}:" }
func (n names) state(key string) string     { return n.tag(key) + "state" }
func (n names) events(key string) string    { return n.tag(key) + "events" }
func (n names) lease(key string) string     { return n.tag(key) + "lease" }
func (n names) notify(key string) string    { return n.tag(key) + "notify" }
func (n names) subs(key string) string      { return n.tag(key) + "subs" }
func (n names) nudge() string               { return n.prefix + "nudge" }
func (n names) probe(replica string) string { return n.prefix + "probe:" + replica }
func (n names) replicas() string            { return n.prefix + "{fleet}:replicas" }
func (n names) secret() string              { return n.prefix + "{fleet}:secret" }
func (n names) leases() string              { return n.prefix + "{fleet}:leases" }

var errBadKey = errors.New("fleet: key id must be 1 to 128 of [0-9A-Za-z_-]")

// checkKey accepts the opaque ids callers pass (hex of an HMAC), and nothing
// that could break a hash tag or smuggle a value into a key name.
func checkKey(key string) error {
	if len(key) == 0 || len(key) > 128 {
		return errBadKey
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return fmt.Errorf("%w: byte %d", errBadKey, i)
		}
	}
	return nil
}
