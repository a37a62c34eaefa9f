package redact

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
)

func TestQuotedRemovesEveryQuotedStringAndKeepsTheShape(t *testing.T) {
	tests := []struct{ in, want string }{
		{`parsing time "s3cr3t" as "2006-01-02T15:04:05Z07:00": cannot parse "s3cr3t" as "2006"`,
			`parsing time "…" as "…": cannot parse "…" as "…"`},
		{`yaml: invalid map key: []interface {}{"s3cr3t"}`, `yaml: invalid map key: []interface {}{"…"}`},
		{`an escaped quote "a\"s3cr3t\"b" inside`, `an escaped quote "…" inside`},
		{`nothing quoted here`, `nothing quoted here`},
		{`an unterminated "s3cr3t`, `an unterminated "s3cr3t`},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, Quoted(tc.in), "Quoted(%s)", tc.in)
	}
	assert.EqualError(t, Error(errors.New(`bad "s3cr3t"`)), `bad "…"`)
	assert.NoError(t, Error(nil))
}

func TestLoggerRedactsErrorsAndStringValues(t *testing.T) {
	var lines []string
	l := Logger(funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: 10}))
	l.Error(errors.New(`yaml: invalid map key: {"s3cr3t"}`), "unable to decode the request", "message", `cannot parse "s3cr3t"`)
	l.WithValues("reason", `bad "s3cr3t"`).V(5).Info("wrote response", "code", 400)
	for _, line := range lines {
		assert.NotContains(t, line, "s3cr3t")
	}
	assert.Len(t, lines, 2, "both lines are written, redacted")
}

// TestLoggerWrapsOneSinkFromManyGoroutines: controller-runtime wraps its
// logger anew for every request, concurrently; under -race this fails if
// wrapping writes to the shared sink.
func TestLoggerWrapsOneSinkFromManyGoroutines(t *testing.T) {
	base := funcr.New(func(string, string) {}, funcr.Options{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Logger(base).WithValues("k", `"v"`).Info("x")
		}()
	}
	wg.Wait()
}

func TestNameKeepsPlainNamesAndBoundsTheRest(t *testing.T) {
	long := strings.Repeat("a", 100)
	tests := []struct{ in, want string }{
		{"Pod", "Pod"},
		{"ephemeralcontainers", "ephemeralcontainers"},
		{"x\ny", `"x\ny"`},
		{"", ""},
		{long, `"` + long[:63] + `"...`},
		{strings.Repeat("é", 40), `"` + strings.Repeat("é", 31) + `"...`},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, Name(tc.in), "Name(%q)", tc.in)
	}
}
