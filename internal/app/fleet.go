package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/fleet"
	"github.com/ssegate/ssegate/nudge"
	"github.com/ssegate/ssegate/stream"
)

// openFleet connects to the fleet's Redis and returns the key secret the
// replicas share: SSEGATE_KEY_SECRET, else the one in Redis. An unreachable
// Redis is not an error (the gateway polls alone until it answers), but
// without a configured secret this replica's keys differ from the fleet's
// until it answers (followFleet reads the secret then), so that is logged.
func openFleet(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*fleet.Engine, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	opts := fleetOptions(cfg)
	opts.Logger = log.With("component", "fleet")
	opts.Registerer = reg
	e, err := fleet.Open(ctx, cfg.RedisURL, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("%sREDIS_URL: %w", config.Prefix, err)
	}
	if cfg.KeySecret != "" {
		return e, []byte(cfg.KeySecret), nil
	}
	secret, err := e.KeySecret(ctx)
	if err != nil {
		log.Error("no key secret from Redis: this replica's keys are not shared with the fleet until Redis answers; set SSEGATE_KEY_SECRET to avoid this", "err", err)
		return e, nil, nil
	}
	return e, secret, nil
}

// followFleet relays nudges from other replicas to the hub and keeps this
// replica's share of the upstream budget as replicas come and go, until
// the engine closes. needSecret: Redis did not answer at start, so the
// keyer's secret is this replica's own until the fleet's is read.
func (g *gateway) followFleet(keyer *stream.Keyer, needSecret bool) {
	defer close(g.fleetDone)
	nudges := g.fleet.Nudges()
	n, changed := g.fleet.LiveReplicas()
	_, connChanged := g.fleet.WatchConnected()
	g.log.Info("fleet", "connected", g.fleet.Connected(), "replicas", n)
	g.applyShare() // the count may have changed since the poller was made
	var connCh <-chan struct{}
	var retry <-chan time.Time
	if needSecret {
		retry = time.After(0)
	}
	for {
		select {
		case <-connCh:
			connCh, retry = nil, time.After(0)
		case <-retry:
			retry = nil
			up, ch := g.fleet.WatchConnected()
			if !up {
				connCh = ch
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			secret, err := g.fleet.KeySecret(ctx)
			cancel()
			if err != nil {
				retry = time.After(time.Second)
				continue
			}
			keyer.SetSecret(secret)
			g.log.Info("key secret read from Redis: this replica's keys are shared with the fleet from now on")
		case p, ok := <-nudges:
			if !ok {
				return // the engine closed
			}
			nudge.Receive(g.hub, keyer, p)
		case <-connChanged:
			// Alone or shared: the budget's shares change (see Share).
			_, connChanged = g.fleet.WatchConnected()
			g.applyShare()
		case <-changed:
			// The replicas, or the leases they hold, changed: so did
			// this replica's share of the budget.
			was := n
			n, changed = g.fleet.LiveReplicas()
			g.applyShare()
			if n != was {
				g.log.Info("fleet replicas changed", "replicas", n)
			}
		}
	}
}

// applyShare gives the poller this replica's share of the fleet's upstream
// budget, when there is one.
func (g *gateway) applyShare() {
	if g.cfg.UpstreamMaxRPS > 0 {
		g.src.SetMaxRPS(g.fleet.Share(g.cfg.UpstreamMaxRPS))
	}
}
