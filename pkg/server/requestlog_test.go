package server

import (
	"context"
	"errors"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"
)

// countingSink counts the values loggers derived from it were given.
type countingSink struct {
	logr.LogSink
	withValues *int
}

func (s countingSink) WithValues(kv ...any) logr.LogSink {
	*s.withValues++
	return countingSink{s.LogSink.WithValues(kv...), s.withValues}
}

func (s countingSink) WithName(name string) logr.LogSink {
	return countingSink{s.LogSink.WithName(name), s.withValues}
}

func TestARequestsLoggerIsBuiltOnlyWhenItWritesAndWritesWhatControllerRuntimesWould(t *testing.T) {
	req := &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "7c3e", Namespace: "shop", Name: "web-1", Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		UserInfo: authenticationv1.UserInfo{Username: "alice"},
	}}
	var lines []string
	built := 0
	base := logr.New(countingSink{funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{}).GetSink(), &built})

	quiet := requestLogger(base, req)
	ctx := logf.IntoContext(context.Background(), quiet)
	assert.True(t, logf.FromContext(ctx).V(0).Enabled())
	assert.False(t, logf.FromContext(ctx).V(1).Enabled())
	assert.Zero(t, built, "a request whose handler writes no line costs no log values, however often it looks its logger up")

	write := func(l logr.Logger) []string {
		lines = nil
		l.Info("judged", "verdict", "allowed")
		l.WithName("audit").Error(errors.New(`cannot decode "secret-content"`), "bad request")
		return lines
	}
	got := write(requestLogger(base, req))
	want := write(redact.Logger(admission.DefaultLogConstructor(base, req)))
	assert.Equal(t, want, got, "the lines controller-runtime's constructor, redacted, would write")
	assert.Contains(t, got[0], `"requestID"="7c3e"`)
	assert.NotContains(t, got[1], "secret-content", "still redacted")
}
