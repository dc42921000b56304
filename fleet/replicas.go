package fleet

import (
	"context"
	"time"
)

// Replicas announce themselves in one sorted set (member: replica id,
// score: when the announcement runs out, by the Redis server's clock), so
// that each can take its share of a fleet-wide budget.

// replicaTTL is how long an announcement lasts: a few missed probes.
func (e *Engine) replicaTTL() time.Duration { return 5 * e.opts.ProbeInterval }

// heartbeat announces this replica and counts the live ones; the pub/sub
// loop calls it after each answered probe.
func (e *Engine) heartbeat() {
	var n int64
	err := e.do(e.ctx, opReplica, func(ctx context.Context) (err error) {
		n, err = heartbeatScript.Run(ctx, e.rdb, []string{e.names.replicas()}, e.token, e.replicaTTL().Milliseconds()).Int64()
		if err != nil {
			return err
		}
		return e.keepSecret(ctx)
	})
	if err == nil {
		e.replicas.set(int(max(n, 1)))
	}
}

// leave withdraws this replica's announcement.
func (e *Engine) leave(ctx context.Context) error {
	return e.do(ctx, opReplica, func(ctx context.Context) error {
		return heartbeatScript.Run(ctx, e.rdb, []string{e.names.replicas()}, e.token, 0).Err()
	})
}

// LiveReplicas is the number of replicas that announced themselves lately
// (this one included), and a channel closed when it changes. While Redis
// is unreachable it keeps the last number seen: the upstream's capacity
// does not grow when Redis fails.
func (e *Engine) LiveReplicas() (int, <-chan struct{}) { return e.replicas.get() }

// Share is this replica's part of a fleet-wide rate: maxRPS divided by the
// live replicas (0 stays 0, no cap).
func (e *Engine) Share(maxRPS float64) float64 {
	n, _ := e.LiveReplicas()
	return maxRPS / float64(max(n, 1))
}
