package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Errors of the engine, to be told apart with errors.Is.
var (
	// ErrDisconnected: Redis is unreachable (or was a moment ago and the
	// liveness probe has not yet seen it back). The caller works alone.
	ErrDisconnected = errors.New("fleet: not connected to Redis")
	// ErrClosed: the engine was closed.
	ErrClosed = errors.New("fleet: engine closed")
)

// Errors of the history, which the shared keys handle themselves.
var (
	// errConflict: another writer appended to the key since the position
	// the caller expected. Nothing was written.
	errConflict = errors.New("fleet: another writer appended meanwhile")
	// errUnknown: the position is not in the key's history (another epoch,
	// trimmed, or no state): the client needs a snapshot.
	errUnknown = errors.New("fleet: position not in the key's history")
)

// Options configure an Engine. Zero fields take DefaultOptions, except the
// history bounds, which the caller passes from the hub's options so that
// Redis keeps what memory would.
type Options struct {
	// Prefix starts every Redis key and channel name. Default "ssegate:".
	Prefix string
	// HistorySize is the events kept per key for resume. Required.
	HistorySize int
	// HistoryBytes bounds the events kept per key by their size (data plus
	// an estimate of the SSE framing). 0: no byte bound.
	HistoryBytes int
	// LeaseTime is how long a poll lease lasts unless renewed; holders renew
	// it at a third of that. Default 5s.
	LeaseTime time.Duration
	// Timeout bounds each Redis call, so that an unreachable Redis costs a
	// caller at most this. Default 1s.
	Timeout time.Duration
	// Logger receives connection changes (never a URL, key or value).
	// Default: discard.
	Logger *slog.Logger
	// Registerer receives the engine's metrics. Default: none.
	Registerer prometheus.Registerer

	// No operator tunes these; tests shorten them. Zero: the defaults below.
	//
	// stateTTL is how long a key's state and history outlive its last
	// write or lease renewal. probeInterval is the time between liveness
	// probes of the pub/sub connection and replica heartbeats; probeTimeout
	// is how long a probe may take to come back before the subscription is
	// declared dead and rebuilt.
	stateTTL, probeInterval, probeTimeout time.Duration

	// dial and dialSub, for tests, dial the command and pub/sub
	// connections.
	dial, dialSub func(ctx context.Context, network, addr string) (net.Conn, error)
}

const (
	defaultStateTTL      = 10 * time.Minute
	defaultProbeInterval = time.Second
	defaultProbeTimeout  = 3 * time.Second
)

// DefaultOptions are the defaults Open gives the zero fields of Options;
// HistorySize and HistoryBytes have none.
func DefaultOptions() Options {
	return Options{
		Prefix:    "ssegate:",
		LeaseTime: 5 * time.Second,
		Timeout:   time.Second,
	}
}

func (o *Options) setDefaults() error {
	d := DefaultOptions()
	def := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	if o.Prefix == "" {
		o.Prefix = d.Prefix
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return errors.New("fleet: prefix must not contain { or }: they delimit hash tags")
	}
	if o.HistorySize <= 0 {
		return errors.New("fleet: HistorySize must be positive")
	}
	if o.HistoryBytes < 0 {
		o.HistoryBytes = 0
	}
	def(&o.LeaseTime, d.LeaseTime)
	def(&o.Timeout, d.Timeout)
	def(&o.stateTTL, defaultStateTTL)
	def(&o.probeInterval, defaultProbeInterval)
	def(&o.probeTimeout, defaultProbeTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Engine is one replica's connection to the fleet.
type Engine struct {
	opts    Options
	rdb     *redis.Client // commands
	sub     *redis.Client // the pub/sub connection only
	names   names
	token   string // this replica's random id: lease values, probe channel
	metrics *metrics

	connected watched[bool]
	fleetLoad watched[fleetLoad]

	subMu     sync.Mutex // orders SUBSCRIBE and UNSUBSCRIBE of followers
	mu        sync.Mutex
	followers map[string]*follower // by notification channel
	held      map[string]struct{}  // keys whose lease this replica holds
	shared    map[*sharedKey]struct{}
	secret    string        // the key secret, once read (KeySecret)
	ps        *redis.PubSub // current subscription; nil while down
	closed    bool

	nudges     chan []byte
	muteNotify bool // tests: appends publish no notification

	ctx    context.Context // done at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Open connects to the Redis at rawURL (redis:// or rediss://, with user,
// password and database number as go-redis parses them). It fails only for
// bad options: an unreachable Redis gives an engine that is not Connected
// and keeps trying, so that the gateway starts and polls on its own.
func Open(ctx context.Context, rawURL string, opts Options) (*Engine, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	ro, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		opts:      opts,
		token:     randomHex(16),
		followers: make(map[string]*follower),
		held:      make(map[string]struct{}),
		shared:    make(map[*sharedKey]struct{}),
		nudges:    make(chan []byte, 64),
	}
	e.metrics = newMetrics(opts.Registerer, e.leaderless)
	e.names = names{prefix: opts.Prefix}
	e.fleetLoad.set(fleetLoad{replicas: 1})
	// Fail fast: one dial attempt, no retries; the caller falls back to
	// local polling and the probe loop reconnects.
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout, ro.PoolTimeout = opts.Timeout, opts.Timeout, opts.Timeout, opts.Timeout
	ro.DialerRetries, ro.MaxRetries = 1, -1
	ro.ContextTimeoutEnabled = true
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	so := *ro
	if opts.dial != nil {
		ro.Dialer = opts.dial
	}
	e.rdb = redis.NewClient(ro)
	so.ClientName = "ssegate-sub-" + e.token[:8]
	so.ReadTimeout = -1 // reads wait for messages; ReceiveTimeout sets its own deadline
	if opts.dialSub != nil {
		so.Dialer = opts.dialSub
	}
	e.sub = redis.NewClient(&so)
	e.ctx, e.cancel = context.WithCancel(context.Background())

	// A first probe, so that a reachable Redis is Connected when Open returns.
	e.wg.Add(1)
	first := make(chan struct{})
	go e.pubsubLoop(first)
	select {
	case <-first:
	case <-ctx.Done():
	}
	return e, nil
}

// parseURL reads a Redis URL without ever putting it in an error: it may
// hold a password.
func parseURL(rawURL string) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("fleet: Redis URL: %w", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fmt.Errorf("fleet: Redis URL: scheme must be redis or rediss, got %q", u.Scheme)
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		// go-redis names the offending part, not the whole URL.
		return nil, fmt.Errorf("fleet: Redis URL: %w", err)
	}
	return ro, nil
}

// Close stops the engine: it releases the leases this replica holds,
// leaves the replica set and closes the connections. Followers stop.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	held := make([]string, 0, len(e.held))
	for k := range e.held {
		held = append(held, k)
	}
	fs := make([]*follower, 0, len(e.followers))
	for _, f := range e.followers {
		fs = append(fs, f)
	}
	e.mu.Unlock()
	for _, f := range fs {
		f.Stop()
	}
	// Best effort: another replica takes over at once instead of after
	// the lease time.
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.Timeout)
	for _, k := range held {
		_ = e.release(ctx, k)
	}
	_ = e.leave(ctx)
	cancel()
	e.cancel()
	e.wg.Wait()
	close(e.nudges)
	e.setConnected(false, nil)
	return errors.Join(e.sub.Close(), e.rdb.Close())
}

// leaderless counts the shared keys of this replica that no replica has
// held the lease of for longer than the lease time while Redis answers.
func (e *Engine) leaderless() float64 {
	if !e.Connected() {
		return 0 // every replica polls alone meanwhile
	}
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k := range e.shared {
		if k.leaderless(now) {
			n++
		}
	}
	return float64(n)
}

// Connected reports whether Redis answered the last liveness probe. While it
// is false every call fails at once with ErrDisconnected.
func (e *Engine) Connected() bool { v, _ := e.connected.get(); return v }

// WatchConnected returns Connected and a channel closed at its next change.
func (e *Engine) WatchConnected() (bool, <-chan struct{}) { return e.connected.get() }

// setConnected records a change of Connected and reports whether it was one.
func (e *Engine) setConnected(v bool, cause error) bool {
	if !e.connected.set(v) {
		return false
	}
	if v {
		e.metrics.connected.Set(1)
		e.opts.Logger.Info("fleet: connected to Redis")
	} else {
		e.metrics.connected.Set(0)
		if e.ctx.Err() == nil {
			e.opts.Logger.Warn("fleet: Redis unreachable; polling alone until it is back", "err", cause)
		}
	}
	return true
}

// Redis operations, as the op label of the metrics.
const (
	opAcquire = "acquire"
	opRenew   = "renew"
	opRelease = "release"
	opAppend  = "append"
	opRead    = "read"
	opPublish = "publish"
	opProbe   = "probe"
	opReplica = "replicas"
)

// do runs one Redis call with the engine's timeout and metrics. A network
// failure marks the engine disconnected at once (the probe loop brings it
// back); a reply error from Redis does not.
func (e *Engine) do(ctx context.Context, op string, f func(ctx context.Context) error) error {
	if op != opProbe && !e.Connected() {
		return fmt.Errorf("fleet: %s: %w", op, ErrDisconnected)
	}
	cctx, cancel := context.WithTimeout(ctx, e.opts.Timeout)
	start := time.Now()
	err := f(cctx)
	cancel()
	e.metrics.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, errConflict) || errors.Is(err, errUnknown) {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("fleet: %s: %w", op, ctx.Err()) // the caller gave up: not Redis's fault
	}
	e.metrics.errors.WithLabelValues(op).Inc()
	var reply redis.Error
	if !errors.As(err, &reply) || isTimeout(err) {
		e.setConnected(false, err)
	}
	return fmt.Errorf("fleet: %s: %w", op, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b)
}

// watched is a value with a channel closed at each change, so that any
// number of waiters learn of it without a send that could block or drop.
type watched[T comparable] struct {
	mu sync.Mutex
	v  T
	ch chan struct{}
}

func (w *watched[T]) get() (T, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.v, w.ch
}

// set stores v and reports whether it changed.
func (w *watched[T]) set(v T) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.v == v {
		return false
	}
	w.v = v
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
	return true
}
