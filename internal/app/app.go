// Package app wires ssegate's packages into a running gateway and owns its
// lifecycle: listeners, the drain on shutdown, and the admin listener.
package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ssegate/ssegate/certs"
	"github.com/ssegate/ssegate/config"
	"github.com/ssegate/ssegate/fleet"
	"github.com/ssegate/ssegate/nudge"
	"github.com/ssegate/ssegate/nudge/nudgeapi"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/proxy"
	"github.com/ssegate/ssegate/stream"
)

// Listening tells where a started gateway listens.
type Listening struct {
	Main    net.Addr
	Metrics net.Addr // nil when disabled
	Scheme  string   // https, or http with H2C
}

// Options are the parts of a run that do not come from the environment.
type Options struct {
	// Logger receives every log line. Default: discard.
	Logger *slog.Logger
	// OnReady is called once all listeners accept connections.
	OnReady func(Listening)
	// Upstream, when set, replaces cfg.UpstreamURL (the demo's own API).
	Upstream *url.URL
}

// NewLogger returns the logger cfg asks for, writing to w.
func NewLogger(cfg config.Config, w io.Writer) *slog.Logger {
	level, _ := cfg.SlogLevel() // validated
	ho := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// Version is the module version the binary was built from, or "dev".
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Run serves the gateway until ctx is done, then drains within
// cfg.ShutdownTimeout and returns nil. Configuration and start-up problems
// (bad key, port in use) are returned as one-line errors.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	g, err := build(cfg, opts)
	if err != nil {
		return err
	}
	err = g.serve(ctx, opts.OnReady)
	g.close()
	return err
}

// gateway owns every component of a built gateway until close.
type gateway struct {
	cfg      config.Config
	log      *slog.Logger
	upstream *url.URL
	reg      *prometheus.Registry

	ln, adminLn net.Listener // adminLn nil when disabled
	transport   *http.Transport
	fleet       *fleet.Engine // nil without SSEGATE_REDIS_URL
	fleetDone   chan struct{} // closed when the fleet's goroutines have returned
	src         *poller.Poller
	hub         *stream.Hub
	srv         *http.Server
	admin       *http.Server // nil when disabled
	tls         bool
	ready       atomic.Bool
}

// build constructs and wires every component and opens the listeners, but
// serves nothing yet. On error it releases what it opened.
func build(cfg config.Config, opts Options) (_ *gateway, err error) {
	g := &gateway{cfg: cfg, log: opts.Logger, upstream: opts.Upstream}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	log := g.log
	if g.upstream == nil {
		u, err := cfg.Upstream()
		if err != nil {
			return nil, fmt.Errorf("%sUPSTREAM_URL: %w", config.Prefix, err)
		}
		g.upstream = u
	}
	trusted, err := cfg.TrustedProxyPrefixes()
	if err != nil {
		return nil, fmt.Errorf("%sTRUSTED_PROXIES: %w", config.Prefix, err)
	}

	g.reg = prometheus.NewRegistry()
	g.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	promauto.With(g.reg).NewGaugeVec(prometheus.GaugeOpts{
		Name: "ssegate_build_info",
		Help: "Always 1; labels tell the build.",
	}, []string{"version", "goversion"}).WithLabelValues(Version(), runtime.Version()).Set(1)

	tlsConf, err := tlsConfig(cfg, log)
	if err != nil {
		return nil, err
	}
	g.tls = tlsConf != nil

	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if g.ln, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		return nil, fmt.Errorf("%sLISTEN_ADDR: %w", config.Prefix, err)
	}
	if cfg.MetricsAddr != "" {
		if g.adminLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("%sMETRICS_ADDR: %w", config.Prefix, err)
		}
	}

	secret := []byte(cfg.KeySecret)
	if cfg.RedisURL != "" {
		if g.fleet, secret, err = openFleet(cfg, log, g.reg); err != nil {
			return nil, err
		}
	}
	g.transport = NewTransport()
	po := pollerOptions(cfg)
	po.Client = &http.Client{Transport: g.transport}
	po.Logger = log.With("component", "poller")
	po.Registerer = g.reg
	if g.fleet != nil {
		po.Shared = g.fleet.Shared()
		po.MaxRPS = g.fleet.Share(cfg.UpstreamMaxRPS)
	}
	g.src = poller.New(po)
	ho := hubOptions(cfg)
	ho.Logger = log.With("component", "stream")
	ho.Registerer = g.reg
	g.hub = stream.NewHub(g.src, ho)
	keyer := stream.NewKeyerWith(stream.KeyerOptions{IdentityHeaders: cfg.IdentityHeaders, KeyByClientIP: cfg.KeyByClientIP, Secret: secret})
	var nudger http.Handler
	if cfg.NudgeToken != "" {
		nh := nudge.NewHandler(g.hub, keyer, cfg.NudgeToken, log.With("component", "nudge"))
		if g.fleet != nil {
			nh.Relay = g.fleet
		}
		nudger = nh
	}
	if g.fleet != nil {
		g.fleetDone = make(chan struct{})
		go g.followFleet(keyer, secret == nil)
	}
	front, err := proxy.New(proxy.Options{
		Upstream:       g.upstream,
		Transport:      g.transport,
		Hub:            g.hub,
		Keyer:          keyer,
		Stream:         streamOptions(cfg),
		StreamPaths:    cfg.StreamPaths,
		TrustedProxies: trusted,
		PassWebSockets: cfg.PassWebSockets,
		CORSOrigins:    cfg.CORSOrigins,
		Logger:         log.With("component", "proxy"),
		Registerer:     g.reg,
	})
	if err != nil {
		return nil, err
	}
	g.srv = proxy.NewServer(mainHandler(front, nudger), proxy.ServerOptions{TLS: tlsConf, H2C: cfg.H2C, Logger: log})
	if g.adminLn != nil {
		g.admin = &http.Server{Handler: adminHandler(g.reg, &g.ready, nudger, cfg.Pprof), ReadHeaderTimeout: 10 * time.Second}
	}
	return g, nil
}

// serve serves until ctx is done or a listener fails; close drains.
func (g *gateway) serve(ctx context.Context, onReady func(Listening)) error {
	serveErr := make(chan error, 2)
	go func() {
		if g.tls {
			serveErr <- g.srv.ServeTLS(g.ln, "", "")
		} else {
			serveErr <- g.srv.Serve(g.ln)
		}
	}()
	if g.admin != nil {
		go func() { serveErr <- g.admin.Serve(g.adminLn) }()
	}
	g.ready.Store(true)

	l := Listening{Main: g.ln.Addr(), Scheme: "https"}
	if !g.tls {
		l.Scheme = "http"
	}
	if g.adminLn != nil {
		l.Metrics = g.adminLn.Addr()
	}
	logContract(g.log, g.cfg)
	g.log.Info("ssegate listening", "addr", l.Main.String(), "scheme", l.Scheme, "upstream", g.upstream.Redacted(),
		"metrics", g.cfg.MetricsAddr, "version", Version())
	if onReady != nil {
		onReady(l)
	}

	var runErr error
	select {
	case <-ctx.Done():
		g.log.Info("shutting down", "timeout", g.cfg.ShutdownTimeout.String())
	case err := <-serveErr:
		runErr = fmt.Errorf("serve: %w", err)
	}
	g.ready.Store(false) // balancers stop sending before the listener goes
	return runErr
}

// close shuts the gateway down in this order, whether serve ran or build
// stopped half-way:
//  1. the main server stops accepting and the hub ends every event stream
//     at once: streams never go idle, so Shutdown alone would wait for
//     ever; ordinary requests get cfg.ShutdownTimeout, then are cut;
//  2. the admin server, whose scrapes in flight are not worth waiting for;
//  3. the poller's scheduler: the hub has cancelled every key's source, so
//     nothing waits on it any more;
//  4. the fleet's engine, with the hub's keys gone: it leaves the replica
//     set, so the others take the whole budget;
//  5. the upstream transport's idle connections, which no poll uses now;
//  6. the listeners, for a build that failed before its servers existed
//     (Shutdown and Close have closed them otherwise).
func (g *gateway) close() {
	if g.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- g.srv.Shutdown(ctx) }()
		g.hub.Close()
		if err := <-done; err != nil {
			g.log.Warn("drain timed out; closing remaining connections", "err", err)
			_ = g.srv.Close() // we are exiting; nothing more to do with its error
		}
	} else if g.hub != nil {
		g.hub.Close()
	}
	if g.admin != nil {
		_ = g.admin.Close()
	}
	if g.src != nil {
		g.src.Close()
	}
	if g.fleet != nil {
		// After the hub: every key's lease is released and its follower
		// stopped already; this leaves the replica set.
		if err := g.fleet.Close(); err != nil {
			g.log.Warn("closing the Redis connections", "err", err)
		}
		if g.fleetDone != nil {
			<-g.fleetDone
		}
	}
	if g.transport != nil {
		g.transport.CloseIdleConnections()
	}
	for _, ln := range []net.Listener{g.adminLn, g.ln} {
		if ln != nil {
			_ = ln.Close() // closed already after a Shutdown
		}
	}
	if g.srv != nil {
		g.log.Info("stopped")
	}
}

// pollerOptions, hubOptions, streamOptions and fleetOptions map the
// configuration into the packages' options; a test checks that the
// configuration's defaults map to the packages' own.
func pollerOptions(cfg config.Config) poller.Options {
	concurrency := cfg.UpstreamConcurrency
	if concurrency == 0 {
		concurrency = poller.NoLimit // 0 is "no cap" to an operator, "default" to poller
	}
	return poller.Options{
		Interval:       cfg.PollInterval,
		IntervalMax:    cfg.PollIntervalMax,
		LegacyInterval: cfg.LegacyInterval,
		MaxRPS:         cfg.UpstreamMaxRPS,
		Concurrency:    concurrency,
		Timeout:        cfg.PollTimeout,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		MaxBackoff:     cfg.MaxBackoff,
		Diff:           poller.DiffOptions{Mode: poller.DiffMode(cfg.DiffMode), ItemsPointer: cfg.ItemsPointer, IDField: cfg.ItemIDField},
	}
}

func hubOptions(cfg config.Config) stream.Options {
	return stream.Options{
		HistorySize:     cfg.HistorySize,
		HistoryBytes:    cfg.HistoryBytes,
		ClientBuffer:    cfg.ClientBuffer,
		Linger:          cfg.Linger,
		MaxConnections:  cfg.MaxConnections,
		MaxStreamsPerIP: cfg.MaxStreamsPerIP,
		MaxKeys:         cfg.MaxKeys,
	}
}

func streamOptions(cfg config.Config) proxy.StreamOptions {
	return proxy.StreamOptions{Retry: cfg.Retry, Heartbeat: cfg.HeartbeatInterval, MaxDuration: cfg.StreamMaxDuration}
}

// fleetOptions keeps as much history in Redis as the hub keeps in memory.
func fleetOptions(cfg config.Config) fleet.Options {
	return fleet.Options{Prefix: cfg.RedisPrefix, HistorySize: cfg.HistorySize, HistoryBytes: cfg.HistoryBytes, LeaseTime: cfg.LeaseTime}
}

// logContract states the load contract once, in numbers an operator can
// check against ssegate_upstream_polls_by_kind_total and
// ssegate_legacy_polling_rps.
func logContract(log *slog.Logger, cfg config.Config) {
	if cfg.LegacyInterval == 0 {
		log.Info("load contract off (SSEGATE_LEGACY_INTERVAL=0): keys are polled by the adaptive interval alone",
			"poll_interval", cfg.PollInterval.String(), "poll_interval_max", cfg.PollIntervalMax.String(), "upstream_max_rps", cfg.UpstreamMaxRPS)
		return
	}
	log.Info(fmt.Sprintf("load contract: per key, regular polls never exceed one per %s per subscriber, plus its first poll and up to %d saved; "+
		"nudged polls come on top, at least %s apart per key", cfg.LegacyInterval, poller.BurstPolls, cfg.PollInterval),
		"legacy_interval", cfg.LegacyInterval.String(), "burst_polls", poller.BurstPolls,
		"poll_interval", cfg.PollInterval.String(), "upstream_max_rps", cfg.UpstreamMaxRPS)
}

func tlsConfig(cfg config.Config, log *slog.Logger) (*tls.Config, error) {
	if cfg.H2C {
		return nil, nil
	}
	if cfg.TLSCertFile != "" {
		r, err := certs.NewReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log.With("component", "certs"))
		if err != nil {
			return nil, fmt.Errorf("%sTLS_CERT_FILE/%sTLS_KEY_FILE: %w", config.Prefix, config.Prefix, err)
		}
		log.Info("serving TLS certificate", "path", cfg.TLSCertFile, "sha256", certs.Fingerprint(r.Certificate()))
		return certs.TLSConfig(r.GetCertificate), nil
	}
	dir, err := cfg.CertDirOrDefault()
	if err != nil {
		return nil, err
	}
	cert, path, created, err := certs.EnsureSelfSigned(dir, cfg.TLSHosts, time.Now(), log.With("component", "certs"))
	if err != nil {
		return nil, fmt.Errorf("%sCERT_DIR: %w", config.Prefix, err)
	}
	log.Info("serving self-signed TLS certificate", "path", path, "created", created, "sha256", certs.Fingerprint(cert))
	return certs.TLSConfig(certs.Static{Cert: cert}.GetCertificate), nil
}

// NewTransport is the client transport to the upstream: bounded dial and
// handshake times so an unreachable upstream answers 502 instead of hanging.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // the upstream is fixed; never an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// mainHandler is the main listener's: the nudge endpoint at nudgeapi.Path
// when nudges are on, every other request to the proxy. Not an
// http.ServeMux, which would answer a path with "//", "." or ".." segments
// with a redirect: pass-through must reach the upstream as written.
func mainHandler(front, nudger http.Handler) http.Handler {
	if nudger == nil {
		return front
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == nudgeapi.Path {
			nudger.ServeHTTP(w, r)
			return
		}
		front.ServeHTTP(w, r)
	})
}

func adminHandler(reg *prometheus.Registry, ready *atomic.Bool, nudger http.Handler, profiles bool) http.Handler {
	mux := http.NewServeMux()
	if profiles {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if nudger != nil {
		mux.Handle(nudgeapi.Path, nudger)
	} else {
		mux.HandleFunc(nudgeapi.Path, func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "ssegate: nudges are disabled; set SSEGATE_NUDGE_TOKEN", http.StatusNotFound)
		})
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}
