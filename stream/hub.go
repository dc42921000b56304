package stream

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Source produces the state of one key; the poller is one. The hub calls Run
// in its own goroutine when a key gets its first subscriber, and cancels ctx
// when the key has had no subscriber for Linger, is denied, or the hub
// closes. Run must return soon after ctx is done.
type Source interface {
	Run(ctx context.Context, t Target, p Publisher)
}

// Publisher is how a source reports a key's state to the hub.
type Publisher interface {
	// Publish sets the key's current body. changes are the events that turn
	// the previous body into this one; for the first body they are ignored,
	// since every client starts with a snapshot.
	Publish(body []byte, changes []Change)
	// Replicate sets the key's state from a history that replicas share
	// (package fleet), whose ids every replica issues alike, instead of
	// numbering the changes itself as Publish does. It returns ErrNeedBody
	// when u does not continue the key's history and carries no body to
	// start over from: call again with the body.
	Replicate(u Replicated) error
	// Unavailable reports that the first poll failed for a reason that may
	// pass (network, 5xx): subscribers are admitted and wait for the first
	// Publish.
	Unavailable()
	// Deny ends the key: every subscriber, waiting or streaming, is ended,
	// and those not yet answered get d as their HTTP response.
	Deny(d Denial)
	// Subscribers is the number of clients of the key now; every change of
	// it raises a signal (SignalSubscriber or SignalSubscriberLeft).
	Subscribers() int
	// Signals is ready when TakeSignals has news for the source.
	Signals() <-chan struct{}
	// TakeSignals returns what happened since the last call, and clears it.
	TakeSignals() Signal
}

// Signal is news for a source about its key; values combine as bits.
type Signal uint8

// Signals.
const (
	// SignalNudge: the upstream said the key changed; poll now.
	SignalNudge Signal = 1 << iota
	// SignalSubscriber: a client joined; poll at the fastest interval.
	SignalSubscriber
	// SignalSubscriberLeft: a client left or was ended. With
	// SignalSubscriber, every change of Subscribers is signalled, so the
	// source can weigh its load by the subscribers present over time.
	SignalSubscriberLeft
)

// Replicated is a part of a key's history as a store shared by replicas
// holds it.
type Replicated struct {
	// Reset: start over from Body at Last, with Events as the history that
	// leads to it; clients get a snapshot unless they resume in it.
	Reset bool
	// Epoch and Last are the position after this update.
	Epoch Epoch
	Last  ID
	// Events follow the key's previous position without a gap, encoded
	// with their shared ids (NewEvent), IDs consecutive up to Last.
	Events []*Event
	// Body is the state at Last; nil when the update did not bring it.
	Body []byte
}

// ErrNeedBody is Replicate's answer to an update that does not continue the
// key's history and has no body to start over from.
var ErrNeedBody = errors.New("stream: replicated update needs the body")

// Denial is an upstream refusal passed on to clients: a browser EventSource
// does not retry a non-200 answer, which is right for a lost session.
type Denial struct {
	Status int
	Header http.Header // Content-Type and the like, already filtered
	Body   []byte
}

// Errors of Subscribe's admission.
var (
	ErrClosed             = errors.New("stream: hub closed")
	ErrTooManyConnections = errors.New("stream: too many connections")
	ErrTooManyPerIP       = errors.New("stream: too many streams from this address")
	ErrTooManyKeys        = errors.New("stream: too many keys")
)

// Options configure a Hub. Zero fields take DefaultOptions.
type Options struct {
	// HistorySize is the events kept per key for resume. Default 1000.
	HistorySize int
	// HistoryBytes bounds the encoded events kept per key for resume.
	// Default 256 KiB: 10,000 keys hold at most 2.5 GiB of history.
	HistoryBytes int
	// ClientBuffer is the events queued per subscriber before it is evicted
	// as slow. Default 256.
	ClientBuffer int
	// Linger is how long a key outlives its last subscriber. Default 30s.
	Linger time.Duration
	// MaxConnections caps open event streams (SSEGATE_MAX_CONNECTIONS); 0: no cap.
	MaxConnections int
	// MaxStreamsPerIP caps open streams per client address; 0: no cap.
	MaxStreamsPerIP int
	// MaxKeys caps keys polled at once, which bounds upstream load; 0: no cap.
	MaxKeys int
	// Logger receives the hub's logs. Default: discard.
	Logger *slog.Logger
	// Registerer receives the hub's metrics. Default: none.
	Registerer prometheus.Registerer
}

// DefaultOptions are the defaults NewHub gives the zero fields of Options.
// The caps (MaxConnections, MaxStreamsPerIP, MaxKeys) default to 0: no cap.
func DefaultOptions() Options {
	return Options{HistorySize: 1000, HistoryBytes: 256 << 10, ClientBuffer: 256, Linger: 30 * time.Second}
}

func (o *Options) setDefaults() {
	d := DefaultOptions()
	if o.HistorySize <= 0 {
		o.HistorySize = d.HistorySize
	}
	if o.HistoryBytes <= 0 {
		o.HistoryBytes = d.HistoryBytes
	}
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = d.ClientBuffer
	}
	if o.Linger <= 0 {
		o.Linger = d.Linger
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Hub owns every key's state and the source goroutine behind it.
type Hub struct {
	src     Source
	opts    Options
	metrics *metrics

	ctx    context.Context // parent of every source's context
	cancel context.CancelFunc
	wg     sync.WaitGroup // source goroutines

	mu     sync.Mutex
	keys   map[Key]*keyState
	conns  int            // admitted streams, counted against MaxConnections
	perIP  map[string]int // admitted streams by client address
	closed bool
}

// NewHub returns a hub that runs src for each key with subscribers.
func NewHub(src Source, opts Options) *Hub {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		src:     src,
		opts:    opts,
		metrics: newMetrics(opts.Registerer, opts.MaxConnections),
		ctx:     ctx,
		cancel:  cancel,
		keys:    make(map[Key]*keyState),
		perIP:   make(map[string]int),
	}
}

// admit counts a stream from ip against the limits; release undoes it.
func (h *Hub) admit(ip string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return ErrClosed
	case h.opts.MaxConnections > 0 && h.conns >= h.opts.MaxConnections:
		return ErrTooManyConnections
	case h.opts.MaxStreamsPerIP > 0 && h.perIP[ip] >= h.opts.MaxStreamsPerIP:
		return ErrTooManyPerIP
	}
	h.conns++
	h.perIP[ip]++
	return nil
}

func (h *Hub) release(ip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns--
	if h.perIP[ip]--; h.perIP[ip] <= 0 {
		delete(h.perIP, ip)
	}
}

// subscribe adds a subscriber to the key, creating its state and
// starting its source when it is the first. lastEventID is the client's
// resume point as sent.
func (h *Hub) subscribe(t Target, lastEventID string) (*Subscription, error) {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, ErrClosed
		}
		ks := h.keys[t.Key]
		if ks == nil {
			if h.opts.MaxKeys > 0 && len(h.keys) >= h.opts.MaxKeys {
				h.mu.Unlock()
				return nil, ErrTooManyKeys
			}
			ks = h.startKey(t)
		}
		h.mu.Unlock()
		if sub := ks.join(lastEventID); sub != nil {
			return sub, nil
		}
		// The key expired between the lookup and the join: look again.
	}
}

// startKey must be called with h.mu held.
func (h *Hub) startKey(t Target) *keyState {
	ctx, cancel := context.WithCancel(h.ctx)
	ks := newKeyState(h, t, cancel)
	h.keys[t.Key] = ks
	h.metrics.keys(1)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.src.Run(ctx, t, ks)
	}()
	return ks
}

// remove takes ks out of the map if it is still there; it must be called
// with h.mu and ks.mu held.
func (h *Hub) remove(ks *keyState) {
	if ks.removed {
		return
	}
	ks.removed = true
	ks.cancel()
	if ks.linger != nil {
		ks.linger.Stop()
	}
	if h.keys[ks.target.Key] == ks {
		delete(h.keys, ks.target.Key)
	}
	h.metrics.keys(-1)
}

// Nudge signals the source of every key for which match is true and
// returns how many keys it signalled. match runs outside the hub's lock:
// it may be slow (the nudge handler builds a request per key), and streams
// must still be admitted meanwhile. A key that ends meanwhile may still be
// counted; its signal goes nowhere.
func (h *Hub) Nudge(match func(Target) bool) int {
	h.mu.Lock()
	keys := make([]*keyState, 0, len(h.keys))
	for _, ks := range h.keys {
		keys = append(keys, ks)
	}
	h.mu.Unlock()
	n := 0
	for _, ks := range keys {
		if match(ks.target) {
			ks.signal(SignalNudge)
			n++
		}
	}
	return n
}

// Close ends every subscription, stops every source and waits for the
// sources to return. Later subscriptions get ErrClosed.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for _, ks := range h.keys {
		ks.mu.Lock()
		h.remove(ks)
		for sub := range ks.subs {
			ks.end(sub, reasonShutdown)
		}
		ks.closeReady()
		ks.mu.Unlock()
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}
