package poller

import (
	"context"

	"github.com/ssegate/ssegate/stream"
)

// Shared shares the polls of keys with other replicas (package fleet
// implements it on Redis): one replica polls each key for all, and every
// replica's hub receives what it stores. Options.Shared nil: poll alone.
type Shared interface {
	// Join starts sharing t. pub is the key's publisher in this replica:
	// the shared history reaches it through pub.Replicate, from whichever
	// replica polled.
	Join(t stream.Target, pub stream.Publisher) (SharedKey, error)
}

// SharedKey is one key shared with other replicas.
type SharedKey interface {
	// Turn waits until this replica is to poll the key (it holds the
	// key's lease, or the shared store is unreachable) and says how. It
	// fails only when ctx is done.
	Turn(ctx context.Context) (Turn, error)
	// Store writes a poll's outcome during a shared turn; its changes
	// reach every replica's hub, this one's included. An error ends the
	// turn (another replica wrote meanwhile, or the store is unreachable):
	// nothing was written that the next turn does not read back.
	Store(ctx context.Context, w Write) error
	// Forget drops the key's stored state during a shared turn: the
	// upstream denied the key, and no replica may serve the stored body
	// to a client that joins later as if it had not.
	Forget(ctx context.Context) error
	// Subscribers is the key's clients on every replica, as last counted
	// (0 before the first count): the load contract's pages are the
	// fleet's, and the holder polls for all of them.
	Subscribers() int
	// Close stops sharing the key.
	Close()
}

// Turn is a stretch of time during which this replica polls a key.
type Turn struct {
	// Alone: the shared store is unreachable. Publish to this replica's
	// hub only, in an epoch of its own.
	Alone bool
	// Body, ETag and LastModified are the stored state to carry on from,
	// so that a takeover neither sends a snapshot nor drops the
	// validators of conditional requests; Body nil: none stored.
	Body         []byte
	ETag         string
	LastModified string
	// Over is closed when the turn ends: the lease is lost, or the store
	// became reachable or unreachable.
	Over <-chan struct{}
}

// Write is one poll's outcome as a shared turn stores it.
type Write struct {
	Body         []byte
	ETag         string
	LastModified string
	// Changes turn the stored body into Body; ignored for the first body.
	// None: only the body and validators change.
	Changes []stream.Change
}
