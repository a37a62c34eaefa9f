// Package redact keeps what a request carried out of svcguard's logs. Errors
// from decoders quote the values they could not parse (a timestamp, a map
// key), and those values may be anything a client sent, a secret included;
// Quoted and Error replace every quoted string with a placeholder, so a log
// line keeps the error's shape and loses its content.
package redact

import (
	"errors"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/go-logr/logr"
)

// Placeholder stands for a quoted string that was removed.
const Placeholder = `"…"`

// quoted matches a double-quoted string with Go or JSON escapes inside.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// Quoted returns s with every double-quoted string replaced by Placeholder.
func Quoted(s string) string {
	return quoted.ReplaceAllString(s, Placeholder)
}

// Error returns err with its message passed through Quoted; nil stays nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(Quoted(err.Error()))
}

// Logger returns l with every error and every string value it logs passed
// through Quoted. It wraps loggers that third-party code (controller-runtime's
// admission decoding) writes decoder errors to.
func Logger(l logr.Logger) logr.Logger {
	if l.GetSink() == nil {
		return l
	}
	return logr.New(sink{l.GetSink()})
}

type sink struct{ logr.LogSink }

// Init does nothing: the wrapped sink was initialised when its own logger was
// made, and is shared by every logger wrapped from it, concurrently.
func (s sink) Init(logr.RuntimeInfo) {}

// WithCallDepth keeps the caller that the wrapped sink reports, when it can.
func (s sink) WithCallDepth(depth int) logr.LogSink {
	if cd, ok := s.LogSink.(logr.CallDepthLogSink); ok {
		return sink{cd.WithCallDepth(depth)}
	}
	return s
}

func (s sink) Info(level int, msg string, kv ...any) { s.LogSink.Info(level, msg, values(kv)...) }

func (s sink) Error(err error, msg string, kv ...any) {
	s.LogSink.Error(Error(err), msg, values(kv)...)
}

func (s sink) WithValues(kv ...any) logr.LogSink { return sink{s.LogSink.WithValues(values(kv)...)} }

func (s sink) WithName(name string) logr.LogSink { return sink{s.LogSink.WithName(name)} }

// values redacts the string and error values of a key/value list.
func values(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		switch v := v.(type) {
		case string:
			if i%2 == 1 {
				out[i] = Quoted(v)
				continue
			}
			out[i] = v
		case error:
			out[i] = Error(v)
		default:
			out[i] = v
		}
	}
	return out
}

// maxName is the longest name Name passes on whole: a DNS label, and far
// more than any kind, resource or port name the API server sends.
const maxName = 63

// Name is how a message or log line names something a request named (a
// kind, a resource, a port): as is when it looks like a Kubernetes name,
// quoted otherwise, and cut to 63 bytes either way, so that a client that
// reaches the webhook directly cannot write lines or whole payloads into the
// logs through a name.
func Name(s string) string {
	plain := len(s) <= maxName
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			plain = false
		}
	}
	if plain {
		return s
	}
	if len(s) > maxName {
		cut := maxName
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}
