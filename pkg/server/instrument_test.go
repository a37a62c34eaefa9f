package server

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/readiness"
)

func TestDecisionOf(t *testing.T) {
	tests := []struct {
		name string
		resp admission.Response
		want metrics.Decision
	}{
		{"allowed without patch", admission.Allowed(""), metrics.Allowed},
		{"allowed with patch", admission.Patched("", jsonpatch.NewOperation("add", "/a", 1)), metrics.Patched},
		{"denied by a rule", admission.Denied("no"), metrics.Denied},
		{"refused as malformed", admission.Errored(http.StatusBadRequest, errors.New("bad")), metrics.Error},
		{"internal error", admission.Errored(http.StatusInternalServerError, errors.New("boom")), metrics.Error},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, DecisionOf(tc.resp))
		})
	}
}

type handlerFunc func(context.Context, admission.Request) admission.Response

func (f handlerFunc) Handle(ctx context.Context, req admission.Request) admission.Response {
	return f(ctx, req)
}

func request(op admissionv1.Operation) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "u", Operation: op}}
}

func durationSamples(t *testing.T, webhook string) uint64 {
	t.Helper()
	m := &dto.Metric{}
	if err := metrics.AdmissionDuration.WithLabelValues(webhook).(prometheus.Metric).Write(m); err != nil {
		t.Fatalf("reading svcguard_admission_duration_seconds: %v", err)
	}
	return m.GetHistogram().GetSampleCount()
}

func TestInstrumentedCountsEachDecision(t *testing.T) {
	h := instrumented{name: "test-decisions", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Denied("no")
	})}
	counter := metrics.AdmissionRequests.WithLabelValues("test-decisions", "UPDATE", "denied")
	before, samplesBefore := testutil.ToFloat64(counter), durationSamples(t, "test-decisions")

	resp := h.Handle(context.Background(), request(admissionv1.Update))

	assert.False(t, resp.Allowed)
	assert.Equal(t, before+1, testutil.ToFloat64(counter), "svcguard_admission_requests_total{decision=denied} must count the request")
	assert.Equal(t, samplesBefore+1, durationSamples(t, "test-decisions"), "svcguard_admission_duration_seconds must observe the request")
}

func TestInstrumentedRecoversPanicInto500(t *testing.T) {
	h := instrumented{name: "test-panic", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		var m map[string]int
		m["boom"]++ // a nil-map write: a real bug, not a polite panic
		return admission.Allowed("")
	})}
	panics := metrics.AdmissionPanics.WithLabelValues("test-panic")
	errorsCounted := metrics.AdmissionRequests.WithLabelValues("test-panic", "CREATE", "error")
	before, errorsBefore := testutil.ToFloat64(panics), testutil.ToFloat64(errorsCounted)

	var resp admission.Response
	assert.NotPanics(t, func() { resp = h.Handle(context.Background(), request(admissionv1.Create)) })

	assert.False(t, resp.Allowed, "a panicking handler must not admit")
	if assert.NotNil(t, resp.Result) {
		assert.EqualValues(t, http.StatusInternalServerError, resp.Result.Code)
		assert.Contains(t, resp.Result.Message, "test-panic", "the answer names the webhook")
	}
	assert.Equal(t, before+1, testutil.ToFloat64(panics), "svcguard_admission_panics_total must count the panic")
	assert.Equal(t, errorsBefore+1, testutil.ToFloat64(errorsCounted), "the panic counts as decision=error")
}

func TestInstrumentedAnswersTheSelfTestWithoutTheWebhookOrMetrics(t *testing.T) {
	called := false
	h := instrumented{name: "test-self-test", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		called = true
		return admission.Denied("no")
	})}
	req := request(admissionv1.Connect)
	req.UserInfo.Username = readiness.SelfTestUser
	req.Kind.Group = readiness.SelfTestGroup
	before := durationSamples(t, "test-self-test")
	resp := h.Handle(context.Background(), req)
	assert.True(t, resp.Allowed, "the self-test is answered allowed")
	assert.False(t, called, "the self-test must not reach the webhook's rules")
	assert.Equal(t, before, durationSamples(t, "test-self-test"), "the self-test must not be counted")

	req.Kind.Group = "" // a real request from a user with that name is judged as any other
	h.Handle(context.Background(), req)
	assert.True(t, called, "only both marks together make a self-test")
}
