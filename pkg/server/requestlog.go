package server

import (
	"sync"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"
)

// requestLogger is the logger controller-runtime gives a webhook's handler
// for req (admission.Webhook.LogConstructor): base with the request's
// values (admission.DefaultLogConstructor) and redacted. controller-runtime
// builds it for every request, and building it (the request's values,
// encoded as log fields) was 5% of a replica's CPU at saturation while
// almost no request writes a line; so the values are added only when a
// line is written or the logger is derived.
func requestLogger(base logr.Logger, req *admission.Request) logr.Logger {
	if req == nil {
		return redact.Logger(admission.DefaultLogConstructor(base, nil))
	}
	return logr.New(&deferredSink{base: base, req: req})
}

// deferredSink is a LogSink that builds the request's logger on first use.
type deferredSink struct {
	base logr.Logger
	req  *admission.Request

	once  sync.Once
	built logr.LogSink
}

func (s *deferredSink) sink() logr.LogSink {
	s.once.Do(func() { s.built = redact.Logger(admission.DefaultLogConstructor(s.base, s.req)).GetSink() })
	return s.built
}

// Init implements logr.LogSink: the built sink was initialized by its own logr.New.
func (s *deferredSink) Init(logr.RuntimeInfo) {}

// Enabled implements logr.LogSink without building: base decides levels.
func (s *deferredSink) Enabled(level int) bool {
	return s.base.GetSink() != nil && s.base.GetSink().Enabled(level)
}

// Info implements logr.LogSink.
func (s *deferredSink) Info(level int, msg string, kv ...any) { s.sink().Info(level, msg, kv...) }

// Error implements logr.LogSink.
func (s *deferredSink) Error(err error, msg string, kv ...any) { s.sink().Error(err, msg, kv...) }

// WithValues implements logr.LogSink. No values (controller-runtime's
// log.FromContext adds none on every call) builds nothing.
func (s *deferredSink) WithValues(kv ...any) logr.LogSink {
	if len(kv) == 0 {
		return s
	}
	return s.sink().WithValues(kv...)
}

// WithName implements logr.LogSink.
func (s *deferredSink) WithName(name string) logr.LogSink { return s.sink().WithName(name) }
