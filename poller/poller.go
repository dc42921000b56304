// Package poller fetches a stream key's upstream answer on an interval,
// diffs it against the previous answer and publishes the changes into the
// stream hub. One goroutine per key; the hub starts and stops them.
package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/stream"
)

// Outcome classifies one poll, as the outcome label of
// ssegate_upstream_polls_total.
type Outcome string

// The outcomes of a poll.
const (
	Changed     Outcome = "changed"      // new body with change events
	Unchanged   Outcome = "unchanged"    // 200 with nothing clients would see change
	NotModified Outcome = "not_modified" // 304 to a conditional request
	HTTPError   Outcome = "http_error"   // any other status, including redirects
	InvalidBody Outcome = "invalid_body" // the diff mode cannot use the body
	TooLarge    Outcome = "too_large"    // body over MaxBodyBytes
	Timeout     Outcome = "timeout"      // no full answer within PollTimeout
	Unreachable Outcome = "unreachable"  // connection refused, DNS, TLS, reset
	// Denied is a 401, 403, 404 or 410: the key's streams end, and new
	// subscribers get that answer, as a GET of the same URL would. Its
	// metric label is http_error, to keep the documented set.
	Denied Outcome = "denied"
)

// Outcomes lists every outcome label of ssegate_upstream_polls_total.
func Outcomes() []Outcome {
	return []Outcome{Changed, Unchanged, NotModified, HTTPError, InvalidBody, TooLarge, Timeout, Unreachable}
}

func (o Outcome) label() Outcome {
	if o == Denied {
		return HTTPError
	}
	return o
}

func (o Outcome) failed() bool {
	switch o {
	case Changed, Unchanged, NotModified:
		return false
	}
	return true
}

// Options configure a Poller. Zero fields take the defaults documented here.
type Options struct {
	// Client sends the polls. Its redirects are never followed: a 3xx is a
	// failed poll, so identity headers never go to another host. Default:
	// a client with http.DefaultTransport.
	Client *http.Client
	// Interval is the time between polls of a key that is changing, and
	// the least time between two polls of one key, nudged ones included.
	// Default 2s.
	Interval time.Duration
	// IntervalMax is the longest time between polls of an unchanged key:
	// each unchanged poll stretches the interval ×1.5 up to
	// max(Interval, IntervalMax / subscribers). Default 30s; set it to
	// Interval for a fixed interval.
	IntervalMax time.Duration
	// LegacyInterval is how often each page that ssegate replaces used to
	// poll: the load contract lets a key's regular polls cost no more than
	// its subscribers' pages did (see allowance). Default 0: no contract.
	LegacyInterval time.Duration
	// MaxRPS caps poll starts per second across all keys, nudged polls
	// included. Default 0: no cap.
	MaxRPS float64
	// Concurrency caps polls in flight across all keys. Default 64;
	// NoLimit: no cap.
	Concurrency int
	// Timeout bounds one poll, body included. Default 10s.
	Timeout time.Duration
	// MaxBodyBytes rejects larger bodies. Default 1 MiB.
	MaxBodyBytes int64
	// MaxBackoff caps the wait after failures. Default 1m.
	MaxBackoff time.Duration
	// Shared shares each key's polls with other replicas (package fleet).
	// Default nil: this process polls every key it has clients for.
	Shared Shared
	// Diff selects how bodies are compared.
	Diff DiffOptions
	// Logger receives state changes of keys. Default: discard.
	Logger *slog.Logger
	// Registerer receives the poller's metrics. Default: none.
	Registerer prometheus.Registerer
}

// NoLimit in Options.Concurrency means no cap on polls in flight.
const NoLimit = -1

// DefaultOptions are the defaults New gives the zero fields of Options.
// Their zero values mean "off" for LegacyInterval and MaxRPS, so those have
// no default here.
func DefaultOptions() Options {
	return Options{
		Interval:     2 * time.Second,
		IntervalMax:  30 * time.Second,
		Concurrency:  64,
		Timeout:      10 * time.Second,
		MaxBodyBytes: 1 << 20,
		MaxBackoff:   time.Minute,
		Diff:         DiffOptions{Mode: DiffAuto, IDField: "id"},
	}
}

// setDefault replaces a zero or negative *v with d.
func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Poller is the stream.Source that polls the upstream. Close it after the
// hub that runs it.
type Poller struct {
	opts    Options
	client  *http.Client
	metrics *metrics
	sched   *scheduler
}

var _ stream.Source = (*Poller)(nil)

// New returns a Poller.
func New(opts Options) *Poller {
	d := DefaultOptions()
	setDefault(&opts.Interval, d.Interval)
	setDefault(&opts.IntervalMax, d.IntervalMax)
	opts.IntervalMax = max(opts.IntervalMax, opts.Interval)
	setDefault(&opts.Timeout, d.Timeout)
	setDefault(&opts.MaxBodyBytes, d.MaxBodyBytes)
	setDefault(&opts.MaxBackoff, d.MaxBackoff)
	switch {
	case opts.Concurrency == 0:
		opts.Concurrency = d.Concurrency
	case opts.Concurrency < 0:
		opts.Concurrency = 0 // the scheduler's "no cap"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := http.Client{Transport: http.DefaultTransport}
	if opts.Client != nil {
		c = *opts.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.Timeout = 0 // per poll via context instead, so a timeout is told apart
	m := newMetrics(opts.Registerer)
	m.budget.Set(opts.MaxRPS)
	return &Poller{opts: opts, client: &c, metrics: m, sched: newScheduler(opts.MaxRPS, opts.Concurrency, m.lag)}
}

// SetMaxRPS changes Options.MaxRPS: a replica's share of the fleet's
// budget changes as replicas come and go.
func (p *Poller) SetMaxRPS(maxRPS float64) {
	p.metrics.budget.Set(maxRPS)
	p.sched.setRate(maxRPS)
}

// Close stops the scheduler.
func (p *Poller) Close() { p.sched.Close() }

// keyState is what one key's goroutine remembers between polls.
type keyState struct {
	differ       *differ
	hasBody      bool
	body         []byte
	etag         string
	lastModified string
	failures     int     // consecutive failed polls
	failing      Outcome // last failure logged; "" while healthy
}

// result is one poll's answer.
type result struct {
	outcome    Outcome
	body       []byte
	changes    []stream.Change
	status     int
	header     http.Header
	retryAfter time.Duration
	err        error
	// upstreamHeader is the answer's header, for the hints; nil when no
	// answer came.
	upstreamHeader http.Header
}

// Run polls t until ctx is done or the upstream denies the key. keyPlan
// decides when; with Options.Shared, only during this replica's turns.
func (p *Poller) Run(ctx context.Context, t stream.Target, pub stream.Publisher) {
	log := p.opts.Logger.With("key", t.Key.String(), "path", t.Path)
	k := p.newPlan(time.Now(), pub.Subscribers(), log)
	k.local = pub.Subscribers
	defer k.close()
	if p.opts.Shared == nil {
		p.runTurn(ctx, t, pub, k, log, nil, Turn{})
		return
	}
	sk, err := p.opts.Shared.Join(t, pub)
	if err != nil {
		log.Warn("sharing the key with the fleet failed; polling it alone", "err", err)
		p.runTurn(ctx, t, pub, k, log, nil, Turn{})
		return
	}
	defer sk.Close()
	for {
		turn, err := p.awaitTurn(ctx, pub, k, sk)
		if err != nil {
			return
		}
		if p.runTurn(ctx, t, pub, k, log, sk, turn) {
			return
		}
	}
}

// awaitTurn waits for the key's next turn while keeping its plan up to date
// with the hub's news: the subscriber counts (so that this replica's
// ssegate_legacy_polling_rps follows its own clients while another replica
// polls) and nudges, which only hasten the turn's first poll.
func (p *Poller) awaitTurn(ctx context.Context, pub stream.Publisher, k *keyPlan, sk SharedKey) (Turn, error) {
	type answer struct {
		turn Turn
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		turn, err := sk.Turn(ctx)
		ch <- answer{turn, err}
	}()
	for {
		select {
		case a := <-ch:
			k.signal(time.Now(), pub.TakeSignals(), fleetSubscribers(pub, sk))
			return a.turn, a.err
		case <-pub.Signals():
			k.signal(time.Now(), pub.TakeSignals(), fleetSubscribers(pub, sk))
		}
	}
}

// runTurn polls t until the turn is over (false) or the key ends (true:
// ctx is done or the upstream denied it). sk nil: the poller is alone, and
// the turn lasts as long as the key.
func (p *Poller) runTurn(ctx context.Context, t stream.Target, pub stream.Publisher, k *keyPlan, log *slog.Logger, sk SharedKey, turn Turn) (ended bool) {
	st := &keyState{differ: newDiffer(p.opts.Diff)}
	shared := sk != nil && !turn.Alone
	if shared && turn.Body != nil {
		// Carry on from the stored state: its validators, and the body
		// the next poll is diffed against.
		if _, err := st.differ.Next(turn.Body); err == nil {
			st.hasBody, st.body, st.etag, st.lastModified = true, turn.Body, turn.ETag, turn.LastModified
		}
	}
	var alone aloneLife
	// The subscribers the plan counts: in a shared turn those of the whole
	// fleet, whose pages this replica's polls replace (the metric's share
	// stays this replica's own, see keyPlan.local).
	subs := pub.Subscribers
	if shared {
		subs = func() int { return fleetSubscribers(pub, sk) }
	}
	keyCtx := ctx
	if turn.Over != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-turn.Over:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	for {
		due, prio := k.plan()
		release, woken, err := p.sched.Wait(ctx, t.Key.Identity(), due, prio, pub.Signals())
		if err != nil {
			return keyCtx.Err() != nil
		}
		if woken {
			k.signal(time.Now(), pub.TakeSignals(), subs())
			continue
		}
		start := time.Now()
		if !k.start(start, subs()) {
			release()
			continue
		}
		p.metrics.kinds[k.polling].Inc()
		if !k.prevStart.IsZero() {
			p.metrics.interval.Observe(start.Sub(k.prevStart).Seconds())
		}
		etag, lastModified := st.etag, st.lastModified
		res := p.poll(ctx, t, st)
		release()
		if ctx.Err() != nil {
			return keyCtx.Err() != nil // ended meanwhile: do not count or log a cancelled poll
		}
		p.metrics.polls[res.outcome.label()].Inc()
		p.report(log, st, res)
		switch {
		case res.outcome == Denied:
			if shared {
				// Before the hub forgets the key: a client that joins
				// any replica next must get the denial, not the body
				// stored for the fleet.
				if err := sk.Forget(ctx); err != nil {
					log.Warn("forgetting a denied key's state in the fleet failed", "err", err)
				}
			}
			pub.Deny(stream.Denial{Status: res.status, Header: res.header, Body: res.body})
			return true
		case res.outcome.failed():
			st.failures++
			if !st.hasBody {
				pub.Unavailable()
			}
		case shared:
			st.failures = 0
			if res.body == nil && st.etag == etag && st.lastModified == lastModified {
				break // nothing to store
			}
			body := res.body
			if body == nil {
				body = st.body // new validators of the same body
			}
			if err := sk.Store(ctx, Write{Body: body, ETag: st.etag, LastModified: st.lastModified, Changes: res.changes}); err != nil {
				log.Debug("storing a poll for the fleet failed; the turn ends", "err", err)
				k.done(time.Now(), res, subs(), st.failures)
				return false
			}
			st.hasBody, st.body = true, body
		default:
			st.failures = 0
			if res.body == nil {
				break
			}
			if sk != nil {
				alone.publish(pub, res.body, res.changes)
			} else {
				pub.Publish(res.body, res.changes)
			}
			st.hasBody, st.body = true, res.body
		}
		k.done(time.Now(), res, subs(), st.failures)
	}
}

// fleetSubscribers is a shared key's clients on every replica, at least
// this replica's own (the fleet's count may lag a new client here).
func fleetSubscribers(pub stream.Publisher, sk SharedKey) int {
	return max(pub.Subscribers(), sk.Subscribers())
}

// aloneLife numbers the states of a key that a replica of a fleet polls
// alone (the shared store is unreachable) in an epoch of its own, and hands
// them to the hub with their ids (Replicate), never as Publish: if the
// hub's history moved to the fleet's meanwhile (the store came back just as
// this poll ended), these ids start their own life again instead of
// continuing the fleet's epoch with numbers the fleet may issue too.
type aloneLife struct {
	epoch stream.Epoch
	last  stream.ID
}

func (a *aloneLife) publish(pub stream.Publisher, body []byte, changes []stream.Change) {
	if a.epoch == "" {
		a.epoch, a.last = stream.NewEpoch(), 1
		_ = pub.Replicate(stream.Replicated{Reset: true, Epoch: a.epoch, Last: a.last, Body: body})
		return
	}
	u := stream.Replicated{Epoch: a.epoch, Body: body}
	for _, c := range changes {
		a.last++
		u.Events = append(u.Events, stream.NewEvent(a.epoch, a.last, c.Kind, c.Data))
	}
	u.Last = a.last
	// With a body, Replicate takes any position: a hub elsewhere starts
	// over from it, so no error can come back.
	_ = pub.Replicate(u)
}

// report logs a key's state changes once, not once per poll.
func (p *Poller) report(log *slog.Logger, st *keyState, res result) {
	switch {
	case res.outcome == Denied:
		log.Info("upstream denied the key; ending its streams", "status", res.status)
	case res.outcome.failed() && st.failing != res.outcome:
		log.Warn("upstream poll failing", "outcome", string(res.outcome), "status", res.status, "err", res.err)
		st.failing = res.outcome
	case !res.outcome.failed() && st.failing != "":
		log.Info("upstream poll recovered", "after_failures", st.failures)
		st.failing = ""
	}
}

func (p *Poller) poll(ctx context.Context, t stream.Target, st *keyState) (res result) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	start := time.Now()
	defer func() { p.metrics.duration.Observe(time.Since(start).Seconds()) }()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL.String(), nil)
	if err != nil {
		return result{outcome: Unreachable, err: err}
	}
	for k, vs := range t.Header {
		req.Header[k] = vs
	}
	for k, vs := range t.Forward { // what pass-through sent for the key's first client
		req.Header[k] = vs
	}
	req.Header.Set("Accept", "application/json, */*;q=0.5")
	req.Header.Set("User-Agent", "ssegate")
	if st.hasBody {
		if st.etag != "" {
			req.Header.Set("If-None-Match", st.etag)
		}
		if st.lastModified != "" {
			req.Header.Set("If-Modified-Since", st.lastModified)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		// A *url.Error holds the whole URL, and a client's query may
		// carry a token: keep only what went wrong, for the logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return result{outcome: classify(ctx, err), err: err}
	}
	defer resp.Body.Close()
	defer func() { res.upstreamHeader = resp.Header }() // every outcome: hints come on any status

	res.status = resp.StatusCode
	switch {
	case resp.StatusCode == http.StatusNotModified && st.hasBody:
		res.outcome = NotModified
		drain(resp.Body)
		return res
	case denies(resp.StatusCode):
		res.outcome = Denied
		res.header = denialHeader(resp.Header)
		res.body, _ = io.ReadAll(io.LimitReader(resp.Body, min(p.opts.MaxBodyBytes, 64<<10)))
		return res
	case resp.StatusCode != http.StatusOK:
		res.outcome = HTTPError
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		res.err = fmt.Errorf("status %d", resp.StatusCode)
		drain(resp.Body)
		return res
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, p.opts.MaxBodyBytes+1))
	switch {
	case err != nil:
		return result{outcome: classify(ctx, err), status: res.status, err: err}
	case int64(len(body)) > p.opts.MaxBodyBytes:
		return result{outcome: TooLarge, status: res.status, err: fmt.Errorf("body over %d bytes", p.opts.MaxBodyBytes)}
	}
	if st.hasBody && bytes.Equal(body, st.body) {
		st.etag, st.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
		return result{outcome: Unchanged, status: res.status}
	}
	before := st.differ.Mode()
	changes, err := st.differ.Next(body)
	if err != nil {
		return result{outcome: InvalidBody, status: res.status, err: err}
	}
	if m := st.differ.Mode(); m != before {
		p.opts.Logger.Info("diff mode chosen", "key", t.Key.String(), "path", t.URL.Path, "mode", m, "pointer", st.differ.ItemsPointer())
	}
	st.etag, st.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	res.body, res.changes, res.outcome = body, changes, Unchanged
	if len(changes) > 0 || !st.hasBody { // the first body is news too
		res.outcome = Changed
	}
	return res
}

// denies reports whether status ends a key, before or after its first body:
// the session is gone (401, 403) or the resource is (404, 410), and an
// EventSource must then see what a GET of the same URL sees, not heartbeats
// and a snapshot of what was deleted. Its streams end cleanly, so an
// EventSource reconnects once and gets the status.
func denies(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusGone:
		return true
	}
	return false
}

// classify tells a timeout from an unreachable upstream.
func classify(ctx context.Context, err error) Outcome {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
		return Timeout
	}
	return Unreachable
}

// drain reads a little of an unused body so the connection can be reused.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10)) }

// denialHeader keeps the headers that describe a denial's body, and the
// challenge a client may need; nothing that would set state in the browser.
func denialHeader(h http.Header) http.Header {
	out := http.Header{}
	for _, k := range []string{"Content-Type", "Www-Authenticate"} {
		if v := h.Values(k); len(v) > 0 {
			out[k] = v
		}
	}
	return out
}

// parseRetryAfter reads delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
