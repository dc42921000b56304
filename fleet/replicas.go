package fleet

import (
	"context"
	"time"
)

// Replicas announce themselves in one sorted set (member: replica id,
// score: when the announcement runs out, by the Redis server's clock), so
// that each can take its share of a fleet-wide budget.

// replicaTTL is how long an announcement lasts: a few missed probes.
func (e *Engine) replicaTTL() time.Duration { return 5 * e.opts.probeInterval }

// fleetLoad is what the replicas announce: how many are live, and how many
// leases they hold in all, which weighs their shares of the budget.
type fleetLoad struct{ replicas, leases int }

// heartbeat announces this replica and the leases it holds, and counts the
// live replicas and their leases; the pub/sub loop calls it after each
// answered probe.
func (e *Engine) heartbeat() {
	e.mu.Lock()
	held := len(e.held)
	e.mu.Unlock()
	var res []any
	err := e.do(e.ctx, opReplica, func(ctx context.Context) (err error) {
		res, err = heartbeatScript.Run(ctx, e.rdb, []string{e.names.replicas(), e.names.leases()},
			e.token, e.replicaTTL().Milliseconds(), held).Slice()
		if err != nil {
			return err
		}
		return e.keepSecret(ctx)
	})
	if err == nil && len(res) == 2 {
		e.fleetLoad.set(fleetLoad{replicas: int(max(num(res[0]), 1)), leases: int(max(num(res[1]), 0))})
	}
}

// leave withdraws this replica's announcement.
func (e *Engine) leave(ctx context.Context) error {
	return e.do(ctx, opReplica, func(ctx context.Context) error {
		return heartbeatScript.Run(ctx, e.rdb, []string{e.names.replicas(), e.names.leases()}, e.token, 0, 0).Err()
	})
}

// LiveReplicas is the number of replicas that announced themselves lately
// (this one included), and a channel closed when it or the leases they
// hold change. While Redis is unreachable it keeps the last values seen:
// the upstream's capacity does not grow when Redis fails.
func (e *Engine) LiveReplicas() (int, <-chan struct{}) {
	l, ch := e.fleetLoad.get()
	return l.replicas, ch
}

// Share is this replica's part of a fleet-wide rate (0 stays 0, no cap),
// weighed by the leases each replica holds plus one: leases gather on the
// replicas whose clients came first, and an even split would leave the
// keys of a busy replica starving while the others' shares went unused.
// Each replica keeps a part for the first polls of new keys. The shares
// add up to maxRPS, give or take the leases that changed hands since the
// last heartbeat (a second).
//
// While Redis is unreachable every replica polls its own clients' keys,
// whoever held their leases: the shares are then even, by the last count of
// replicas, which keeps the fleet within maxRPS without starving a replica
// that held few leases.
func (e *Engine) Share(maxRPS float64) float64 {
	l, _ := e.fleetLoad.get()
	if !e.Connected() {
		return maxRPS / float64(max(l.replicas, 1))
	}
	e.mu.Lock()
	held := len(e.held)
	e.mu.Unlock()
	return maxRPS * float64(held+1) / float64(max(l.leases+l.replicas, held+1))
}
