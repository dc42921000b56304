package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// Shared returns the engine as the poller's Shared: each key a replica has
// clients of is polled by the holder of its lease, stored in Redis, and
// followed by every replica into its hub.
func (e *Engine) Shared() poller.Shared { return sharedPolls{e} }

type sharedPolls struct{ e *Engine }

var (
	_ poller.Shared    = sharedPolls{}
	_ poller.SharedKey = (*sharedKey)(nil)
)

// sharedKey is one key of this replica's hub, shared with the fleet: its
// lease loop, its follower, and the position the poller's turn writes
// after.
type sharedKey struct {
	e     *Engine
	id    string
	pub   stream.Publisher
	lease *lease
	start time.Time

	follower atomic.Pointer[follower]
	needBody atomic.Bool // the hub asked for a body the follower's update lacked

	ctx    context.Context // the lease loop's
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed chan struct{} // closed when Close has returned
	got    chan struct{} // closed at the follower's first update
	gotOne sync.Once

	// Owned by the poller's goroutine (Turn, Store, Close).
	pos     position      // where the next Store appends
	endTurn chan struct{} // closes the current turn's Over; nil between turns
}

// Join implements poller.Shared.
func (s sharedPolls) Join(t stream.Target, pub stream.Publisher) (poller.SharedKey, error) {
	e := s.e
	k := &sharedKey{e: e, id: t.Key.ID(), pub: pub, lease: e.newLease(t.Key.ID()), start: time.Now(), closed: make(chan struct{}), got: make(chan struct{})}
	k.lease.subs = pub.Subscribers
	k.ctx, k.cancel = context.WithCancel(e.ctx)
	f, err := e.follow(k.id, k.update)
	// The key's previous life in this replica's hub (its linger ran out,
	// or it was denied, just before this client came) may still be
	// closing: wait for it rather than poll alone for as long as the key
	// lives. Its Close takes a release and an unsubscribe at most.
	for deadline := time.Now().Add(5 * e.opts.Timeout); errors.Is(err, errFollowed) && time.Now().Before(deadline); {
		e.waitClosed(k.id, time.Until(deadline))
		f, err = e.follow(k.id, k.update)
	}
	if err != nil {
		k.cancel()
		return nil, err
	}
	k.follower.Store(f)
	if k.needBody.Load() {
		f.poke()
	}
	e.mu.Lock()
	e.shared[k] = struct{}{}
	e.mu.Unlock()
	k.wg.Add(2)
	go func() {
		defer k.wg.Done()
		k.lease.Run(k.ctx)
	}()
	go func() {
		// A single process lets a key's clients in (200, heartbeats)
		// once its first poll failed. A replica that does not poll the
		// key never sees that poll fail: it lets them in when a lease
		// time passes without a first state, and they get the first
		// body whenever a holder stores it.
		defer k.wg.Done()
		select {
		case <-k.ctx.Done():
		case <-k.got:
		case <-time.After(e.opts.LeaseTime):
			pub.Unavailable()
		}
	}()
	return k, nil
}

// waitClosed waits at most d for the sharedKey of id that this engine has
// (if any) to be closed.
func (e *Engine) waitClosed(id string, d time.Duration) {
	var closed chan struct{}
	e.mu.Lock()
	for k := range e.shared {
		if k.id == id {
			closed = k.closed
		}
	}
	e.mu.Unlock()
	if closed == nil {
		// Not registered yet, or just gone: look again in a moment.
		d = min(d, 10*time.Millisecond)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-closed:
	case <-t.C:
	case <-e.ctx.Done():
	}
}

// update hands the follower's news to the hub, encoding each event once for
// every client of this replica.
func (k *sharedKey) update(u update) {
	k.gotOne.Do(func() { close(k.got) })
	r := stream.Replicated{Reset: u.Reset, Epoch: u.Epoch, Last: u.Last, Body: u.Body}
	if len(u.Events) > 0 {
		r.Events = make([]*stream.Event, len(u.Events))
		for i, en := range u.Events {
			r.Events[i] = stream.NewEvent(u.Epoch, en.ID, en.Kind, en.Data)
		}
	}
	if err := k.pub.Replicate(r); errors.Is(err, stream.ErrNeedBody) {
		// This replica's history went its own way (it polled alone
		// meanwhile): start over from the body at the newest position.
		k.needBody.Store(true)
		if f := k.follower.Load(); f != nil {
			f.poke()
		}
	}
}

// Turn implements poller.SharedKey.
func (k *sharedKey) Turn(ctx context.Context) (poller.Turn, error) {
	k.closeTurn()
	for {
		up, connCh := k.e.WatchConnected()
		if !up {
			return poller.Turn{Alone: true, Over: connCh}, nil
		}
		held, heldCh := k.lease.held.get()
		if held {
			st, ok, err := k.e.state(ctx, k.id)
			if err == nil {
				k.pos = position{}
				turn := poller.Turn{Over: k.openTurn(heldCh, connCh)}
				if ok {
					k.pos = st.position
					turn.Body, turn.ETag, turn.LastModified = st.Body, st.ETag, st.LastModified
				}
				return turn, nil
			}
		}
		var retry <-chan time.Time
		if held {
			retry = time.After(k.e.opts.Timeout) // the state read failed
		}
		select {
		case <-ctx.Done():
			return poller.Turn{}, ctx.Err()
		case <-heldCh:
		case <-connCh:
		case <-retry:
		}
	}
}

// openTurn returns a channel closed when the lease is lost, the connection
// state changes, or the next Turn or Close starts.
func (k *sharedKey) openTurn(heldCh, connCh <-chan struct{}) <-chan struct{} {
	end, over := make(chan struct{}), make(chan struct{})
	k.endTurn = end
	go func() {
		defer close(over)
		select {
		case <-heldCh:
		case <-connCh:
		case <-end:
		}
	}()
	return over
}

func (k *sharedKey) closeTurn() {
	if k.endTurn != nil {
		close(k.endTurn)
		k.endTurn = nil
	}
}

// Store implements poller.SharedKey.
func (k *sharedKey) Store(ctx context.Context, w poller.Write) error {
	pos, err := k.e.append(ctx, k.id, k.pos, write{Body: w.Body, ETag: w.ETag, LastModified: w.LastModified, Changes: w.Changes})
	if err != nil {
		return err
	}
	k.pos = pos
	return nil
}

// Forget implements poller.SharedKey.
func (k *sharedKey) Forget(ctx context.Context) error { return k.e.forget(ctx, k.id) }

// Subscribers implements poller.SharedKey.
func (k *sharedKey) Subscribers() int { return k.lease.fleetSubscribers() }

// Close implements poller.SharedKey: it releases the lease (another
// replica with clients takes over at once) and stops following.
func (k *sharedKey) Close() {
	k.closeTurn()
	k.cancel()
	k.wg.Wait()
	k.follower.Load().Stop()
	k.e.mu.Lock()
	delete(k.e.shared, k)
	k.e.mu.Unlock()
	close(k.closed)
}

// leaderless reports whether no replica has held the key's lease for longer
// than the lease time, while Redis answers: its clients get no updates.
func (k *sharedKey) leaderless(now time.Time) bool {
	seen := k.lease.holderSeen()
	if seen.IsZero() {
		seen = k.start
	}
	return now.Sub(seen) > k.e.opts.LeaseTime
}
