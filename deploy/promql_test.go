package deploy_test

import (
	"fmt"
	"strings"
	"testing"
)

// selector is a vector selector in a PromQL expression: a metric name and
// its label matchers.
type selector struct {
	metric   string
	matchers []matcher
}

type matcher struct{ label, op, value string }

// promql is what the kit's checks need to know of an expression: the
// selectors, and the labels of its by, without, on, ignoring and group_*
// clauses.
type promql struct {
	selectors []selector
	grouping  []string
}

var (
	// Words followed by a label list in parentheses.
	groupingWords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	// Aggregations may have "by (...)" between their name and "(".
	aggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true,
		"stdvar": true, "count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true}
	keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"atan2": true, "inf": true, "nan": true}
)

// parsePromQL lexes expr far enough to find its selectors and grouping
// labels. Strings, ranges and numbers are skipped; an identifier followed
// by "(" is a function. It is not a full parser: Prometheus itself checks
// that every expression parses (TestLivePrometheus).
func parsePromQL(expr string) (promql, error) {
	var p promql
	s := expr
	i := 0
	lastSelector := -1 // index of the selector a "{" just after belongs to
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '#': // comment to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			_, j, err := readString(s, i)
			if err != nil {
				return p, err
			}
			i = j
		case c == '{':
			ms, j, err := readMatchers(s, i)
			if err != nil {
				return p, err
			}
			i = j
			if lastSelector >= 0 {
				p.selectors[lastSelector].matchers = ms
			} else {
				sel := selector{matchers: ms}
				for _, m := range ms {
					if m.label == "__name__" && m.op == "=" {
						sel.metric = m.value
					}
				}
				if sel.metric == "" {
					return p, fmt.Errorf("selector %s names no metric", s[:j])
				}
				p.selectors = append(p.selectors, sel)
			}
			lastSelector = -1
			continue
		case c == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return p, fmt.Errorf("unclosed [ in %q", expr)
			}
			i += j + 1
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word := s[i:j]
			i = j
			next := skipSpace(s, i)
			switch {
			case groupingWords[word]:
				if next < len(s) && s[next] == '(' {
					end := strings.IndexByte(s[next:], ')')
					if end < 0 {
						return p, fmt.Errorf("unclosed %s( in %q", word, expr)
					}
					for _, l := range strings.Split(s[next+1:next+end], ",") {
						if l = strings.TrimSpace(l); l != "" {
							p.grouping = append(p.grouping, l)
						}
					}
					i = next + end + 1
				}
				lastSelector = -1
				continue
			case aggregations[word] || keywords[word] || (next < len(s) && s[next] == '('):
				lastSelector = -1
				continue
			}
			p.selectors = append(p.selectors, selector{metric: word})
			lastSelector = len(p.selectors) - 1
			continue
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.') {
				i++
			}
		default:
			i++
		}
		lastSelector = -1
	}
	return p, nil
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// readString reads the quoted string at s[i] and returns its value and
// the index after it.
func readString(s string, i int) (string, int, error) {
	q := s[i]
	var b strings.Builder
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`' && j+1 < len(s):
			j++
			b.WriteByte(s[j])
		case s[j] == q:
			return b.String(), j + 1, nil
		default:
			b.WriteByte(s[j])
		}
	}
	return "", 0, fmt.Errorf("unclosed string in %q", s)
}

// readMatchers reads {label op "value", ...} at s[i].
func readMatchers(s string, i int) ([]matcher, int, error) {
	var ms []matcher
	i++ // {
	for {
		i = skipSpace(s, i)
		if i < len(s) && s[i] == ',' {
			i++
			continue
		}
		if i < len(s) && s[i] == '}' {
			return ms, i + 1, nil
		}
		j := i
		for j < len(s) && isIdentChar(s[j]) {
			j++
		}
		if j == i {
			return nil, 0, fmt.Errorf("want a label name at %q", s[i:])
		}
		m := matcher{label: s[i:j]}
		i = skipSpace(s, j)
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(s[i:], op) {
				m.op = op
				break
			}
		}
		if m.op == "" {
			return nil, 0, fmt.Errorf("want a matcher operator at %q", s[i:])
		}
		i = skipSpace(s, i+len(m.op))
		if i >= len(s) || !strings.ContainsRune("\"'`", rune(s[i])) {
			return nil, 0, fmt.Errorf("want a quoted value at %q", s[i:])
		}
		v, j2, err := readString(s, i)
		if err != nil {
			return nil, 0, err
		}
		m.value, i = v, j2
		ms = append(ms, m)
	}
}

func TestParsePromQL(t *testing.T) {
	p, err := parsePromQL(`histogram_quantile(0.9, sum by (job, le) (rate(a_bucket{x=~"p|q",y!="}"}[5m] offset 1m)))
		/ on (job) group_left(v) b > 0.5 and c{__name__="d"} unless sum(e) without(z) or count (f:g:h)`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range p.selectors {
		got = append(got, fmt.Sprintf("%s %v", s.metric, s.matchers))
	}
	want := []string{`a_bucket [{x =~ p|q} {y != }}]`, "b []", "c [{__name__ = d}]", "e []", "f:g:h []"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("selectors:\n got %q\nwant %q", got, want)
	}
	if g := strings.Join(p.grouping, ","); g != "job,le,job,v,z" {
		t.Errorf("grouping: got %s", g)
	}
}
