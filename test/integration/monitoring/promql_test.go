package monitoring_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selector is one vector selector of a PromQL expression: the metric it
// names and the label names its matchers use.
type selector struct {
	Metric string
	Labels []string
}

// Words that are never metric names. PromQL matches keywords and aggregation
// operators case-insensitively; function names are found by the "(" after
// them instead, so that no list of functions can fall behind Prometheus's.
var (
	keywords = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
		"by", "without", "on", "ignoring", "group_left", "group_right"}
	// labelListKeywords are followed by a parenthesised list of label names.
	labelListKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	aggregators       = []string{"sum", "avg", "count", "min", "max", "group", "stddev", "stdvar",
		"topk", "bottomk", "count_values", "quantile", "limitk", "limit_ratio"}
)

// selectors returns the vector selectors of a PromQL expression, in order. It
// is a small tokenizer, not a parser: it skips strings, label matchers
// (keeping their label names), range and subquery brackets, durations and
// numbers, comments, Grafana variables ($job, ${job}, $__rate_interval),
// keywords and aggregation operators with their label lists, and function
// names (a word followed by "("). Every other word is a metric name. A
// selector without a name ({__name__="x"}) names the metric of its __name__
// equality matcher, if any.
func selectors(expr string) ([]selector, error) {
	l := &lexer{s: expr}
	var out []selector
	for {
		l.skipSpace()
		if l.done() {
			return out, nil
		}
		c := l.s[l.i]
		switch {
		case c == '#':
			for !l.done() && l.s[l.i] != '\n' {
				l.i++
			}
		case c == '"' || c == '\'' || c == '`':
			if _, err := l.str(); err != nil {
				return nil, err
			}
		case c == '{':
			name, labels, err := l.matchers()
			if err != nil {
				return nil, err
			}
			if name == "" {
				return nil, fmt.Errorf("a selector without a metric name at offset %d selects every metric", l.i)
			}
			out = append(out, selector{Metric: name, Labels: labels})
		case c == '[':
			end := strings.IndexByte(l.s[l.i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at offset %d", l.i)
			}
			l.i += end + 1
		case c == '$':
			l.grafanaVariable()
		case isDigit(c) || c == '.' && l.i+1 < len(l.s) && isDigit(l.s[l.i+1]):
			l.number()
		case isIdentStart(c):
			word := l.ident()
			lower := strings.ToLower(word)
			switch {
			case slices.Contains(labelListKeywords, lower):
				l.skipSpace()
				if l.peek() == '(' {
					end := strings.IndexByte(l.s[l.i:], ')')
					if end < 0 {
						return nil, fmt.Errorf("unclosed label list after %s at offset %d", word, l.i)
					}
					l.i += end + 1
				}
			case slices.Contains(keywords, lower), slices.Contains(aggregators, lower):
			default:
				l.skipSpace()
				switch l.peek() {
				case '(': // a function
				case '{':
					name, labels, err := l.matchers()
					if err != nil {
						return nil, err
					}
					if name != "" {
						return nil, fmt.Errorf("metric %s also named %s inside its braces", word, name)
					}
					out = append(out, selector{Metric: word, Labels: labels})
				default:
					out = append(out, selector{Metric: word})
				}
			}
		default:
			l.i++ // an operator, a parenthesis, a comma, @
		}
	}
}

type lexer struct {
	s string
	i int
}

func (l *lexer) done() bool { return l.i >= len(l.s) }

func (l *lexer) peek() byte {
	if l.done() {
		return 0
	}
	return l.s[l.i]
}

func (l *lexer) skipSpace() {
	for !l.done() && strings.ContainsRune(" \t\r\n", rune(l.s[l.i])) {
		l.i++
	}
}

func isDigit(c byte) bool {
	return '0' <= c && c <= '9'
}

// isIdentStart and isIdent follow PromQL's metric names: [a-zA-Z_:][a-zA-Z0-9_:]*.
func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isIdent(c byte) bool {
	return isIdentStart(c) || isDigit(c)
}

func (l *lexer) ident() string {
	start := l.i
	for !l.done() && isIdent(l.s[l.i]) {
		l.i++
	}
	return l.s[start:l.i]
}

// number skips a number or a duration: 0.99, 1e-3, 0x1f, 14, 5m, 1h30m.
func (l *lexer) number() {
	start := l.i
	for !l.done() {
		c := l.s[l.i]
		switch {
		case isIdent(c) || c == '.':
			l.i++
		case (c == '+' || c == '-') && (l.s[l.i-1] == 'e' || l.s[l.i-1] == 'E') && !strings.HasPrefix(strings.ToLower(l.s[start:l.i]), "0x"):
			l.i++
		default:
			return
		}
	}
}

// str reads a quoted string ("..." and '...' with backslash escapes,
// `...` raw) and returns its content, escapes left as written.
func (l *lexer) str() (string, error) {
	quote, start := l.s[l.i], l.i
	l.i++
	for !l.done() {
		c := l.s[l.i]
		switch {
		case c == '\\' && quote != '`':
			l.i += 2
		case c == quote:
			l.i++
			return l.s[start+1 : l.i-1], nil
		default:
			l.i++
		}
	}
	return "", fmt.Errorf("unterminated string at offset %d", start)
}

// grafanaVariable skips $name or ${name...}.
func (l *lexer) grafanaVariable() {
	l.i++
	if l.peek() == '{' {
		if end := strings.IndexByte(l.s[l.i:], '}'); end >= 0 {
			l.i += end + 1
			return
		}
	}
	l.ident()
}

// matchers reads {name op "value", ...} and returns the label names, and the
// metric name the braces give (__name__="x", or a quoted name alone, as
// Prometheus 3 writes names that are not identifiers).
func (l *lexer) matchers() (string, []string, error) {
	open := l.i
	l.i++
	var metric string
	var labels []string
	for {
		l.skipSpace()
		if l.peek() == '}' {
			l.i++
			return metric, labels, nil
		}
		var name string
		quoted := l.peek() == '"' || l.peek() == '\''
		switch {
		case quoted:
			s, err := l.str()
			if err != nil {
				return "", nil, err
			}
			name = s
		case isIdentStart(l.peek()):
			name = l.ident()
		default:
			return "", nil, fmt.Errorf("unexpected %q in the label matchers at offset %d", l.peek(), l.i)
		}
		l.skipSpace()
		if quoted && (l.peek() == ',' || l.peek() == '}') {
			metric = name
		} else {
			op := ""
			for _, o := range []string{"=~", "!~", "!=", "="} {
				if strings.HasPrefix(l.s[l.i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return "", nil, fmt.Errorf("label %s without a match operator at offset %d", name, l.i)
			}
			l.i += len(op)
			l.skipSpace()
			if c := l.peek(); c != '"' && c != '\'' && c != '`' {
				return "", nil, fmt.Errorf("label %s without a quoted value at offset %d", name, l.i)
			}
			value, err := l.str()
			if err != nil {
				return "", nil, err
			}
			switch {
			case name == "__name__" && op == "=":
				metric = value
			case name == "__name__":
				// A name matched by a pattern could be any metric: nothing to check it against.
				return "", nil, fmt.Errorf("__name__%s%q matches metric names by pattern, which cannot be checked", op, value)
			default:
				labels = append(labels, name)
			}
		}
		l.skipSpace()
		switch l.peek() {
		case ',':
			l.i++
		case '}':
		default:
			return "", nil, fmt.Errorf("unclosed { at offset %d", open)
		}
	}
}

// TestSelectors is the tokenizer's own table test: what it must find, and
// what it must skip.
func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []selector
	}{
		{`up`, []selector{{Metric: "up"}}},
		{`sum by (webhook) (rate(svcguard_admission_requests_total{job="svcguard",decision="error"}[5m]))`,
			[]selector{{"svcguard_admission_requests_total", []string{"job", "decision"}}}},
		{`sum(rate(a_total[5m])) by (reason) / ignoring(reason) group_left count(b)`,
			[]selector{{Metric: "a_total"}, {Metric: "b"}}},
		{`histogram_quantile(0.99, sum by (name, le) (rate(h_bucket{name=~"(x|y)[.]io"}[5m]))) > 1`,
			[]selector{{"h_bucket", []string{"name"}}}},
		{`absent(svcguard_ready{job="svcguard"} == 1)`, []selector{{"svcguard_ready", []string{"job"}}}},
		{`x unless x offset 10m`, []selector{{Metric: "x"}, {Metric: "x"}}},
		{`a * on (pod) group_left(node) b and on() c`, []selector{{Metric: "a"}, {Metric: "b"}, {Metric: "c"}}},
		{`min(x{job="j"} > 0) - time() < 14 * 86400`, []selector{{"x", []string{"job"}}}},
		{`{__name__="foo", job="a"} + bar`, []selector{{"foo", []string{"job"}}, {Metric: "bar"}}},
		{`{"my.metric", job='a'}`, []selector{{"my.metric", []string{"job"}}}},
		{`label_replace(up, "dst", "svcguard_not_a_metric", "src", "(.*)")`, []selector{{Metric: "up"}}},
		{`rate(x{job="$job"}[$__rate_interval]) / ${divisor} + $offset_var`, []selector{{"x", []string{"job"}}}},
		{"count_values(\"v\", x) # sum(not_a_metric)\n + topk(3, y)", []selector{{Metric: "x"}, {Metric: "y"}}},
		{"x{a=~`b\\.c`, d!~'e\\'f', g != \"h\"} > 1e-3", []selector{{"x", []string{"a", "d", "g"}}}},
		{`SUM BY (l) (x) OR Inf > NaN`, []selector{{Metric: "x"}}},
		{`max_over_time(x[1h30m:5m]) @ end()`, []selector{{Metric: "x"}}},
		{`0x1F + .5 + 2E+3 * metric_after_exponent`, []selector{{Metric: "metric_after_exponent"}}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			got, err := selectors(tc.expr)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	for _, bad := range []string{`x{a="b"`, `x{a="b}`, `x{a}`, `x{a=b}`, `rate(x[5m)`, `sum by (a`,
		`{__name__=~"svcguard_.*"}`, `{job="svcguard"}`, `x{__name__="y"}`} {
		_, err := selectors(bad)
		assert.Error(t, err, "%s must not tokenize", bad)
	}
}
