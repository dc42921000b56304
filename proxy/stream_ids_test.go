package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/stream"
)

// TestHubIDsPerKey: each key numbers its events from 1 in a random epoch of
// its own, so an id tells nothing about other keys' events, and an id of
// another key, or of an earlier life of this one, gets a snapshot even
// where its sequence number exists.
func TestHubIDsPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newSource()
		h, k, _ := newHub(t, src, stream.Options{Linger: time.Second})
		split := func(id string) (epoch, seq string) {
			epoch, seq, ok := strings.Cut(id, "-")
			if !ok {
				t.Fatalf("id %q is not <epoch>-<sequence>", id)
			}
			return epoch, seq
		}
		// start opens identity's key, publishes body and then n changes,
		// and returns the ids of its first and last events.
		start := func(identity, body string, n int) (first, last string) {
			c := open(h, k, "/n", identity, "")
			defer c.Close()
			r := src.next(t)
			r.pub.Publish([]byte(body), nil)
			first = c.Expect(t, "snapshot", body).ID
			last = first
			for i := range n {
				data := fmt.Sprintf(`"%s %d"`, identity, i)
				r.pub.Publish([]byte(data), []stream.Change{{Kind: stream.KindUpdated, Data: []byte(data)}})
				last = c.Expect(t, "updated", data).ID
			}
			return first, last
		}

		aliceFirst, aliceLast := start("alice", `"a"`, 5)
		bobFirst, bobLast := start("bob", `"b"`, 9)
		aliceEpoch, aliceSeq := split(aliceFirst)
		bobEpoch, bobSeq := split(bobFirst)
		if aliceSeq != "1" || bobSeq != "1" {
			t.Errorf("first ids %s and %s, want each key's sequence to start at 1", aliceFirst, bobFirst)
		}
		if aliceEpoch == bobEpoch {
			t.Errorf("alice and bob share the epoch %q, want one per key", aliceEpoch)
		}
		if _, seq := split(bobLast); seq != "10" {
			t.Errorf("bob's last id %s, want -10: alice's events moved bob's sequence", bobLast)
		}

		// Alice's id at bob's key, whose sequence has passed it: a snapshot,
		// not bob's events after "6".
		c := open(h, k, "/n", "bob", aliceLast)
		c.Expect(t, "snapshot", `"bob 8"`)
		c.Close()

		// Alice's key ends (linger) and starts again: a new epoch, and her
		// old id resyncs even once the new life has passed its sequence.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		againFirst, _ := start("alice", `"a2"`, 9)
		if epoch, _ := split(againFirst); epoch == aliceEpoch {
			t.Errorf("alice's key started again in its old epoch %q, want a new one", epoch)
		}
		c = open(h, k, "/n", "alice", aliceLast)
		c.Expect(t, "snapshot", `"alice 8"`)
		c.Close()
	})
}
