package poller

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Hint names an upstream header that changes how often a key is polled, as
// the hint label of ssegate_upstream_hints_total.
type Hint string

// The hints. The first two raise a key's shortest interval while they are
// sent; the others pause the key until a time the upstream names, and a
// nudge waits for the pause too.
const (
	HintPollInterval Hint = "poll_interval" // X-Poll-Interval: N (GitHub's "please obey")
	HintMaxAge       Hint = "max_age"       // Cache-Control: max-age=N or s-maxage=N (RFC 9111 §5.2.2)
	HintRateLimit    Hint = "ratelimit"     // RateLimit: "policy";r=0;t=N (IETF httpapi ratelimit-headers draft)
	HintXRateLimit   Hint = "x_ratelimit"   // X-RateLimit-Remaining: 0 with X-RateLimit-Reset
	HintRetryAfter   Hint = "retry_after"   // Retry-After (RFC 9110 §10.2.3), on any status
)

// Hints lists every hint label of ssegate_upstream_hints_total.
func Hints() []Hint {
	return []Hint{HintPollInterval, HintMaxAge, HintRateLimit, HintXRateLimit, HintRetryAfter}
}

// maxHint caps what any hint can ask for, so a typo upstream cannot park a
// key for days.
const maxHint = time.Hour

// hints is what one answer's headers ask of the key's schedule.
type hints struct {
	interval     time.Duration // shortest interval; 0: none asked
	intervalHint Hint
	pause        time.Duration // no poll before now+pause; 0: none
	pauseHint    Hint
}

// parseHints reads the headers of one upstream answer received at now.
func parseHints(h http.Header, now time.Time) hints {
	var out hints
	if h == nil {
		return out
	}
	if s, ok := seconds(h.Get("X-Poll-Interval")); ok && s > 0 {
		out.interval, out.intervalHint = s, HintPollInterval
	} else if s, ok := maxAge(h.Values("Cache-Control")); ok && s > 0 {
		out.interval, out.intervalHint = s, HintMaxAge
	}
	pause := func(d time.Duration, hint Hint) {
		if d > out.pause {
			out.pause, out.pauseHint = min(d, maxHint), hint
		}
	}
	pause(rateLimitReset(h.Values("RateLimit")), HintRateLimit)
	if strings.TrimSpace(h.Get("X-RateLimit-Remaining")) == "0" {
		pause(resetTime(h.Get("X-RateLimit-Reset"), now), HintXRateLimit)
	}
	pause(parseRetryAfter(strings.TrimSpace(h.Get("Retry-After")), now), HintRetryAfter)
	out.interval = min(out.interval, maxHint)
	return out
}

// seconds reads a non-negative whole number of seconds.
func seconds(v string) (time.Duration, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return time.Duration(min(n, int64(maxHint/time.Second))) * time.Second, true
}

// maxAge reads the freshness lifetime a shared cache would use (RFC 9111
// §5.2.2.10: s-maxage overrides max-age). no-cache and no-store ask for
// revalidation on every use, so they cancel it.
func maxAge(values []string) (time.Duration, bool) {
	var age, sAge time.Duration
	var hasAge, hasSAge bool
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			arg = strings.Trim(strings.TrimSpace(arg), `"`)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-cache", "no-store":
				return 0, false
			case "max-age":
				age, hasAge = seconds(arg)
			case "s-maxage":
				sAge, hasSAge = seconds(arg)
			}
		}
	}
	if hasSAge {
		return sAge, true
	}
	return age, hasAge
}

// rateLimitReset reads the RateLimit field of the IETF httpapi draft, a
// structured-field list (RFC 8941 §3.1) of policies, each an item with the
// parameters r (remaining quota units) and t (seconds until the quota
// resets): `"default";r=0;t=30`. It returns the longest t among policies
// with nothing left. Earlier drafts' dictionary form, `remaining=0,
// reset=30`, is read too.
func rateLimitReset(values []string) time.Duration {
	var longest time.Duration
	var dictRemaining, dictReset string
	for _, v := range values {
		for _, member := range splitUnquoted(v, ',') {
			params := splitUnquoted(member, ';')
			var r, t string
			for i, p := range params {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				k, val = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val)
				if i == 0 && len(params) == 1 { // a dictionary member: key=value
					switch k {
					case "remaining":
						dictRemaining = val
					case "reset":
						dictReset = val
					}
					continue
				}
				switch k {
				case "r":
					r = val
				case "t":
					t = val
				}
			}
			if r == "0" {
				if d, ok := seconds(t); ok {
					longest = max(longest, d)
				}
			}
		}
	}
	if dictRemaining == "0" {
		if d, ok := seconds(dictReset); ok {
			longest = max(longest, d)
		}
	}
	return longest
}

// splitUnquoted splits s at sep outside double-quoted strings (RFC 8941
// sf-string, where a backslash escapes the next character).
func splitUnquoted(s string, sep byte) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// resetTime reads X-RateLimit-Reset: epoch seconds (GitHub) or seconds
// from now (others), as the time left until then. No API asks to wait
// decades, so a number over half of now's epoch seconds is a time.
func resetTime(v string, now time.Time) time.Duration {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	switch {
	case err != nil || n <= 0:
		return 0
	case n >= now.Unix()/2:
		if d := time.Unix(n, 0).Sub(now); d > 0 {
			return min(d, maxHint)
		}
		return 0
	default:
		return time.Duration(min(n, int64(maxHint/time.Second))) * time.Second
	}
}
