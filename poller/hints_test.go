package poller_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ssegate/ssegate/internal/promtest"
	"github.com/ssegate/ssegate/poller"
	"github.com/ssegate/ssegate/stream"
)

// hintOpts polls every 2s when nothing else says otherwise: the contract
// is off, so the gaps show the hints alone.
func hintOpts() poller.Options {
	return poller.Options{Interval: 2 * time.Second, IntervalMax: 2 * time.Second, MaxBackoff: 2 * time.Second}
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func pollStarts(polls []poll) []time.Time {
	var out []time.Time
	for _, p := range polls {
		out = append(out, p.at)
	}
	return out
}

// TestHintShortestInterval: X-Poll-Interval and Cache-Control max-age (or
// s-maxage) raise the key's shortest interval while the upstream sends
// them; polls come back to the usual interval when it stops.
func TestHintShortestInterval(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want time.Duration // 0: no hint
		hint string
	}{
		{"X-Poll-Interval", header("X-Poll-Interval", "60"), 60 * time.Second, "poll_interval"},
		{"max-age", header("Cache-Control", "private, max-age=30"), 30 * time.Second, "max_age"},
		{"s-maxage overrides max-age", header("Cache-Control", "max-age=10, s-maxage=45"), 45 * time.Second, "max_age"},
		{"over two fields", header("Cache-Control", "public", "Cache-Control", `max-age="20"`), 20 * time.Second, "max_age"},
		{"X-Poll-Interval first", header("X-Poll-Interval", "40", "Cache-Control", "max-age=10"), 40 * time.Second, "poll_interval"},
		{"no-cache cancels max-age", header("Cache-Control", "no-cache, max-age=30"), 0, ""},
		{"max-age=0", header("Cache-Control", "max-age=0"), 0, ""},
		{"garbage", header("X-Poll-Interval", "soon", "Cache-Control", "max-age=-5"), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const hinted = 5 // answers 1..5 carry the header
				r := runContract(t, hintOpts(), 1, func() string { return `[]` }, func(r *contractRig) {
					r.hdr = func(n int) http.Header {
						if n <= hinted {
							return tt.h
						}
						return nil
					}
				})
				time.Sleep(hinted*max(tt.want, 2*time.Second) + time.Minute)
				gs := gaps(pollStarts(r.all()))
				if len(gs) < hinted+3 {
					t.Fatalf("only %d polls", len(gs)+1)
				}
				for i, g := range gs {
					switch {
					case i < hinted && tt.want > 0 && g < tt.want:
						t.Errorf("gap %d is %v while the upstream asks for %v", i+1, g, tt.want)
					case (i >= hinted || tt.want == 0) && !near(g, 2*time.Second):
						t.Errorf("gap %d is %v, want the usual 2s ±10%%", i+1, g)
					}
				}
				if tt.hint == "" {
					return
				}
				if got := promtest.Value(t, r.reg, "ssegate_upstream_hints_total", "hint", tt.hint); got != hinted {
					t.Errorf("ssegate_upstream_hints_total{hint=%q} = %v, want %d", tt.hint, got, hinted)
				}
				logs := r.logs.String()
				if !strings.Contains(logs, "hint="+tt.hint) || !strings.Contains(logs, "upstream stopped setting the shortest interval") {
					t.Errorf("debug log does not tell the hint and its end:\n%s", logs)
				}
			})
		})
	}
}

// TestHintNudgeObeysPollInterval: a nudge waits for X-Poll-Interval since
// the key's last poll (the upstream's allowed polling rate), but not for
// max-age (freshness, which the nudge says is over).
func TestHintNudgeObeysPollInterval(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    http.Header
		wait time.Duration // from the hinted poll to the nudged one, at least
	}{
		{"X-Poll-Interval", header("X-Poll-Interval", "60"), 60 * time.Second},
		{"max-age", header("Cache-Control", "max-age=60"), 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := runContract(t, hintOpts(), 1, func() string { return `[]` }, func(r *contractRig) {
					r.hdr = func(n int) http.Header { return tt.h }
				})
				time.Sleep(time.Second) // the admission poll answered with the hint
				hinted := r.all()[0].at
				time.Sleep(9 * time.Second)
				r.crowd.signal(stream.SignalNudge)
				time.Sleep(2 * time.Minute)
				ps := pollStarts(r.all())
				if len(ps) < 2 {
					t.Fatalf("only %d polls", len(ps))
				}
				want := latest(hinted.Add(tt.wait), hinted.Add(10*time.Second)) // the nudge came at 10s
				if got := ps[1].Sub(hinted); ps[1].Before(want) || ps[1].After(want.Add(time.Second)) {
					t.Errorf("nudged poll %v after the hinted one, want %v", got, want.Sub(hinted))
				}
			})
		})
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// TestHintPause: RateLimit with nothing left, X-RateLimit-Remaining: 0
// with a reset, and Retry-After (on a 200 too) pause the key until then,
// and a nudge during the pause waits for its end.
func TestHintPause(t *testing.T) {
	tests := []struct {
		name   string
		status int
		h      func(now time.Time) http.Header
		want   time.Duration // 0: no pause
		hint   string
	}{
		{"RateLimit", 200, func(time.Time) http.Header { return header("RateLimit", `"default";r=0;t=50`) }, 50 * time.Second, "ratelimit"},
		{"RateLimit, the empty policy wins", 200, func(time.Time) http.Header {
			return header("RateLimit", `"burst";r=5;t=1, "day;s";r=0;t=80`)
		}, 80 * time.Second, "ratelimit"},
		{"RateLimit, quota left", 200, func(time.Time) http.Header { return header("RateLimit", `"default";r=3;t=50`) }, 0, ""},
		{"RateLimit, earlier draft", 200, func(time.Time) http.Header { return header("RateLimit", "limit=100, remaining=0, reset=40") }, 40 * time.Second, "ratelimit"},
		{"X-RateLimit epoch", 200, func(now time.Time) http.Header {
			reset := now.Add(70*time.Second + time.Second - 1).Unix() // whole seconds, not before now+70s
			return header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", fmt.Sprint(reset))
		}, 70 * time.Second, "x_ratelimit"},
		{"X-RateLimit delta", 200, func(time.Time) http.Header {
			return header("X-RateLimit-Remaining", "0", "X-RateLimit-Reset", "25")
		}, 25 * time.Second, "x_ratelimit"},
		{"X-RateLimit, quota left", 200, func(time.Time) http.Header {
			return header("X-RateLimit-Remaining", "1", "X-RateLimit-Reset", "25")
		}, 0, ""},
		{"Retry-After on a 200", 200, func(time.Time) http.Header { return header("Retry-After", "45") }, 45 * time.Second, "retry_after"},
		{"Retry-After on a 429", 429, func(time.Time) http.Header { return header("Retry-After", "45") }, 45 * time.Second, "retry_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				begin := time.Now()
				r := runContract(t, hintOpts(), 1, func() string { return `[]` }, func(r *contractRig) {
					r.hdr = func(n int) http.Header {
						if n == 2 {
							return tt.h(time.Now())
						}
						return nil
					}
					r.status = func(n int) int {
						if n == 2 {
							return tt.status
						}
						return 200
					}
				})
				time.Sleep(3 * time.Second) // the second poll, at 2s ±10%, answers with the hint
				paused := r.all()[1].at
				time.Sleep(5 * time.Second)
				r.crowd.signal(stream.SignalNudge) // the backend announces a change
				time.Sleep(3 * time.Minute)
				ps := pollStarts(r.all())
				if len(ps) < 4 {
					t.Fatalf("only %d polls", len(ps))
				}
				next := ps[2]
				if tt.want == 0 {
					if next.Sub(begin) > 8*time.Second || !next.Before(paused.Add(5*time.Second+time.Millisecond)) {
						t.Errorf("third poll %v after the second, want no pause", next.Sub(paused))
					}
					return
				}
				if next.Before(paused.Add(tt.want)) {
					t.Errorf("polled %v after the upstream asked for a %v pause (the nudge broke it?)", next.Sub(paused), tt.want)
				}
				if next.After(paused.Add(tt.want + time.Second)) {
					t.Errorf("nudged change polled %v after a %v pause began, want as soon as it ended", next.Sub(paused), tt.want)
				}
				if got := promtest.Value(t, r.reg, "ssegate_upstream_hints_total", "hint", tt.hint); got != 1 {
					t.Errorf("ssegate_upstream_hints_total{hint=%q} = %v, want 1", tt.hint, got)
				}
				if logs := r.logs.String(); !strings.Contains(logs, "upstream asked for a pause") || !strings.Contains(logs, "hint="+tt.hint) {
					t.Errorf("debug log does not tell the pause:\n%s", logs)
				}
			})
		})
	}
}

// TestHintPauseCapped: a pause beyond an hour is taken as an hour.
func TestHintPauseCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := runContract(t, hintOpts(), 1, func() string { return `[]` }, func(r *contractRig) {
			r.hdr = func(n int) http.Header {
				if n == 1 {
					return header("Retry-After", "86400")
				}
				return nil
			}
		})
		time.Sleep(61 * time.Minute)
		if n := len(r.all()); n < 2 {
			t.Errorf("%d polls in 61 minutes after Retry-After: 86400, want the pause capped at an hour", n)
		}
	})
}
