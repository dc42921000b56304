package poller_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// upstream is an in-memory http.RoundTripper: answer decides each reply.
type upstream struct {
	mu     sync.Mutex
	answer func(n int, r *http.Request) (*http.Response, error)
	reqs   []*http.Request
	times  []time.Time
}

func (u *upstream) RoundTrip(r *http.Request) (*http.Response, error) {
	u.mu.Lock()
	u.reqs = append(u.reqs, r)
	u.times = append(u.times, time.Now())
	n := len(u.reqs)
	u.mu.Unlock()
	return u.answer(n, r)
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

func reply(status int, body string, kv ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: -1}
}

// recorder is a stream.Publisher that remembers what it was told.
type recorder struct {
	mu          sync.Mutex
	bodies      []string
	changes     []string
	unavailable int
	denial      *stream.Denial
	sig         stream.Signal
	sigCh       chan struct{}
	subs        int
}

func (r *recorder) Publish(body []byte, cs []stream.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, string(body))
	r.changes = append(r.changes, render(cs))
}
func (r *recorder) Unavailable()                      { r.mu.Lock(); r.unavailable++; r.mu.Unlock() }
func (r *recorder) Replicate(stream.Replicated) error { return nil }
func (r *recorder) Deny(d stream.Denial) {
	r.mu.Lock()
	r.denial = &d
	r.mu.Unlock()
}
func (r *recorder) Subscribers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return max(r.subs, 1)
}

func (r *recorder) Signals() <-chan struct{} { return r.sigCh }
func (r *recorder) TakeSignals() stream.Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sig
	r.sig = 0
	return s
}

// signal sends s to the poller, as the hub does.
func (r *recorder) signal(s stream.Signal) {
	r.mu.Lock()
	r.sig |= s
	r.mu.Unlock()
	select {
	case r.sigCh <- struct{}{}:
	default:
	}
}

func (r *recorder) published() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.changes...)
}

type harness struct {
	up     *upstream
	pub    *recorder
	reg    *prometheus.Registry
	logs   *bytes.Buffer
	cancel context.CancelFunc
	done   chan struct{}
}

func start(t *testing.T, opts poller.Options, answer func(n int, r *http.Request) (*http.Response, error)) *harness {
	h := &harness{up: &upstream{answer: answer}, pub: &recorder{sigCh: make(chan struct{}, 1)}, reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, done: make(chan struct{})}
	opts.Client = &http.Client{Transport: h.up}
	opts.Registerer = h.reg
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, nil))
	p := poller.New(opts)
	t.Cleanup(p.Close) // after the key's goroutine has stopped (cleanups run last first)
	keyer := stream.NewKeyer([]string{"Authorization"})
	u, _ := url.Parse("http://upstream.test/api/n?a=1&token=s3cret")
	target := keyer.Target(u.Path, u, http.Header{"Authorization": {"Bearer alice"}, "X-Other": {"no"}})
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		p.Run(ctx, target, h.pub)
	}()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

func (h *harness) polls(t *testing.T, outcome string) float64 {
	return promtest.Value(t, h.reg, "ssegate_upstream_polls_total", "outcome", outcome)
}

func TestPollerIntervalAndConditionalRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, poller.Options{Interval: 2 * time.Second, IntervalMax: 2 * time.Second}, func(n int, r *http.Request) (*http.Response, error) {
			if r.Header.Get("If-None-Match") == `"v1"` {
				return reply(304, ""), nil
			}
			return reply(200, `[{"id":1}]`, "ETag", `"v1"`, "Last-Modified", "Tue, 24 Nov 2026 07:00:00 GMT"), nil
		})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		h.up.mu.Lock()
		defer h.up.mu.Unlock()
		if len(h.up.reqs) < 4 || len(h.up.reqs) > 6 {
			t.Fatalf("got %d polls in 10s at a 2s interval, want 5±1", len(h.up.reqs))
		}
		if !h.up.times[0].Equal(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("first poll at %v, want at once", h.up.times[0])
		}
		for i := 1; i < len(h.up.times); i++ {
			if gap := h.up.times[i].Sub(h.up.times[i-1]); gap < 1800*time.Millisecond || gap > 2200*time.Millisecond {
				t.Errorf("gap %d is %v, want 2s ±10%%", i, gap)
			}
		}
		first, second := h.up.reqs[0], h.up.reqs[1]
		if first.Header.Get("If-None-Match") != "" {
			t.Error("first poll is conditional, want unconditional")
		}
		if got := second.Header.Get("If-None-Match"); got != `"v1"` {
			t.Errorf("second poll If-None-Match = %q, want the ETag", got)
		}
		if got := second.Header.Get("If-Modified-Since"); got == "" {
			t.Error("second poll has no If-Modified-Since")
		}
		if got := first.Header.Get("Authorization"); got != "Bearer alice" {
			t.Errorf("Authorization upstream = %q, want the identity header", got)
		}
		if got := first.Header.Get("X-Other"); got != "" {
			t.Errorf("X-Other sent upstream (%q), want only identity headers", got)
		}
		if got := first.URL.String(); got != "http://upstream.test/api/n?a=1&token=s3cret" {
			t.Errorf("polled %s, want the target URL", got)
		}
		if got := h.pub.published(); len(got) != 1 {
			t.Errorf("published %d times, want once (the first body)", len(got))
		}
		if got := h.polls(t, "not_modified"); got != float64(len(h.up.reqs)-1) {
			t.Errorf("not_modified = %v, want %d", got, len(h.up.reqs)-1)
		}
	})
}

// TestPollerFailuresChangeNothing: after a good body, each kind of failed
// poll is counted under its outcome and publishes nothing; the recovery
// publishes exactly the real change.
func TestPollerFailuresChangeNothing(t *testing.T) {
	good := `[{"id":1}]`
	tests := []struct {
		outcome string
		mode    poller.DiffMode
		fail    func(r *http.Request) (*http.Response, error)
	}{
		{"http_error", poller.DiffAuto, func(*http.Request) (*http.Response, error) { return reply(503, "down"), nil }},
		{"http_error", poller.DiffAuto, func(*http.Request) (*http.Response, error) {
			return reply(302, "", "Location", "http://elsewhere.test/"), nil
		}},
		{"http_error", poller.DiffAuto, func(*http.Request) (*http.Response, error) { return reply(429, "slow down"), nil }},
		{"invalid_body", poller.DiffItems, func(*http.Request) (*http.Response, error) { return reply(200, "<html>oops</html>"), nil }},
		{"invalid_body", poller.DiffPatch, func(*http.Request) (*http.Response, error) { return reply(200, `[{"id":`), nil }},
		{"invalid_body", poller.DiffAuto, func(*http.Request) (*http.Response, error) { return reply(200, `{"error":"x"}`), nil }},
		{"too_large", poller.DiffAuto, func(*http.Request) (*http.Response, error) {
			return reply(200, "["+strings.Repeat(`{"id":1},`, 200)+`{"id":2}]`), nil
		}},
		{"timeout", poller.DiffAuto, func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}},
		{"unreachable", poller.DiffAuto, func(*http.Request) (*http.Response, error) {
			return nil, &url.Error{Op: "Get", URL: "x", Err: syscall.ECONNREFUSED}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.outcome+"/"+string(tt.mode), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := start(t, poller.Options{Interval: time.Second, IntervalMax: time.Second, Timeout: 5 * time.Second, MaxBodyBytes: 1000,
					Diff: poller.DiffOptions{Mode: tt.mode}},
					func(n int, r *http.Request) (*http.Response, error) {
						switch {
						case n == 1:
							return reply(200, good), nil
						case n <= 4:
							return tt.fail(r)
						}
						return reply(200, `[{"id":1},{"id":2}]`), nil
					})
				for h.up.count() < 5 {
					time.Sleep(time.Second)
				}
				synctest.Wait() // the recovery poll has been handled
				if got := h.polls(t, tt.outcome); got != 3 {
					t.Errorf("%s = %v, want 3", tt.outcome, got)
				}
				want := `created {"id":2}`
				if tt.mode == poller.DiffPatch {
					want = `patch [{"value":{"id":2},"op":"add","path":"/1"}]`
				}
				got := h.pub.published()
				if len(got) != 2 || got[1] != want {
					t.Errorf("published %q, want exactly [first body, %s]: nothing during the failures", got, want)
				}
				if n := strings.Count(h.logs.String(), "upstream poll failing"); n != 1 {
					t.Errorf("logged the failure %d times, want once per change of state\n%s", n, h.logs)
				}
				if n := strings.Count(h.logs.String(), "upstream poll recovered"); n != 1 {
					t.Errorf("logged the recovery %d times, want once", n)
				}
				if strings.Contains(h.logs.String(), "alice") || strings.Contains(h.logs.String(), "s3cret") {
					t.Errorf("logs contain the credential:\n%s", h.logs)
				}
			})
		})
	}
}

func TestPollerBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, poller.Options{Interval: time.Second, MaxBackoff: 16 * time.Second}, func(int, *http.Request) (*http.Response, error) {
			return reply(500, ""), nil
		})
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		h.up.mu.Lock()
		defer h.up.mu.Unlock()
		for i := 1; i < len(h.up.times); i++ {
			gap := h.up.times[i].Sub(h.up.times[i-1])
			d := min(time.Second<<i, 16*time.Second)
			if gap < d/2 || gap > d {
				t.Errorf("gap after failure %d is %v, want between %v and %v", i, gap, d/2, d)
			}
		}
		if len(h.up.times) < 10 {
			t.Errorf("only %d polls in 3 minutes, want the backoff capped at 16s", len(h.up.times))
		}
	})
}

func TestPollerHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, poller.Options{Interval: 10 * time.Second, MaxBackoff: 20 * time.Second}, func(n int, _ *http.Request) (*http.Response, error) {
			if n == 1 {
				return reply(503, "", "Retry-After", "120"), nil
			}
			return reply(200, "[]"), nil
		})
		time.Sleep(119 * time.Second)
		synctest.Wait()
		if n := h.up.count(); n != 1 {
			t.Errorf("%d polls before Retry-After passed, want 1", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := h.up.count(); n != 2 {
			t.Errorf("%d polls after Retry-After, want 2", n)
		}
	})
}

func TestPollerFirstPollFailureThenRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, poller.Options{Interval: time.Second}, func(n int, _ *http.Request) (*http.Response, error) {
			if n <= 2 {
				return nil, errors.New("connection refused")
			}
			return reply(200, `[]`), nil
		})
		time.Sleep(10 * time.Second)
		synctest.Wait()
		h.pub.mu.Lock()
		defer h.pub.mu.Unlock()
		if h.pub.unavailable != 2 || len(h.pub.bodies) != 1 || h.pub.denial != nil {
			t.Errorf("got %d unavailable, %d bodies, denial %v; want 2, 1, none", h.pub.unavailable, len(h.pub.bodies), h.pub.denial)
		}
	})
}

func TestPollerDenial(t *testing.T) {
	tests := []struct {
		name   string
		first  int
		later  int
		denied int // status passed to the hub; 0: none
	}{
		{"401 at admission", 401, 0, 401},
		{"403 at admission", 403, 0, 403},
		{"404 at admission", 404, 0, 404},
		{"410 at admission", 410, 0, 410},
		{"401 mid-session", 200, 401, 401},
		{"403 mid-session", 200, 403, 403},
		// The resource was deleted: a GET now gets 404 or 410, so must a stream.
		{"404 mid-session", 200, 404, 404},
		{"410 mid-session", 200, 410, 410},
		{"500 mid-session keeps streaming", 200, 500, 0},
		{"429 mid-session keeps streaming", 200, 429, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := start(t, poller.Options{Interval: time.Second}, func(n int, _ *http.Request) (*http.Response, error) {
					if n == 1 {
						return reply(tt.first, `{"error":"who?"}`, "Content-Type", "application/json", "Set-Cookie", "a=b"), nil
					}
					return reply(tt.later, `{"error":"who?"}`, "Content-Type", "application/json"), nil
				})
				time.Sleep(5 * time.Second)
				synctest.Wait()
				h.pub.mu.Lock()
				defer h.pub.mu.Unlock()
				if tt.denied == 0 {
					if h.pub.denial != nil {
						t.Fatalf("denied with %d, want streams kept", h.pub.denial.Status)
					}
					return
				}
				d := h.pub.denial
				if d == nil || d.Status != tt.denied || string(d.Body) != `{"error":"who?"}` {
					t.Fatalf("denial = %+v, want %d with the upstream body", d, tt.denied)
				}
				if d.Header.Get("Set-Cookie") != "" || d.Header.Get("Content-Type") != "application/json" {
					t.Errorf("denial headers %v, want Content-Type only", d.Header)
				}
				select {
				case <-h.done:
				default:
					t.Error("poller still running after a denial")
				}
			})
		})
	}
}

// TestPollerLogsChosenPointer: auto's choice of items inside a wrapper
// object is logged with the pointer it chose.
func TestPollerLogsChosenPointer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := start(t, poller.Options{Interval: 2 * time.Second, IntervalMax: 2 * time.Second}, func(n int, r *http.Request) (*http.Response, error) {
			return reply(200, `{"items":[{"id":"secret-id"}],"total":1}`), nil
		})
		time.Sleep(time.Second)
		synctest.Wait()
		logs := h.logs.String()
		if !strings.Contains(logs, `msg="diff mode chosen"`) || !strings.Contains(logs, "mode=items pointer=/items") {
			t.Errorf("logs do not name the chosen mode and pointer:\n%s", logs)
		}
		if strings.Contains(logs, "secret-id") {
			t.Errorf("logs contain a value from the body:\n%s", logs)
		}
	})
}
