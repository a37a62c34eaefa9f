package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
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

	resp := h.Handle(context.Background(), admissiontest.Request{Operation: admissionv1.Update}.Build(t))

	assert.False(t, resp.Allowed)
	assert.Equal(t, before+1, testutil.ToFloat64(counter), "svcguard_admission_requests_total{decision=denied} must count the request")
	assert.Equal(t, samplesBefore+1, durationSamples(t, "test-decisions"), "svcguard_admission_duration_seconds must observe the request")
}

func TestInstrumentedRecoversPanicInto500(t *testing.T) {
	h := instrumented{name: "test-panic", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		var m map[string]int
		m["boom"]++ //nolint:staticcheck // SA5000: a nil-map write on purpose, a real bug rather than a polite panic
		return admission.Allowed("")
	})}
	panics := metrics.AdmissionPanics.WithLabelValues("test-panic")
	errorsCounted := metrics.AdmissionRequests.WithLabelValues("test-panic", "CREATE", "error")
	before, errorsBefore := testutil.ToFloat64(panics), testutil.ToFloat64(errorsCounted)

	var resp admission.Response
	assert.NotPanics(t, func() {
		resp = h.Handle(context.Background(), admissiontest.Request{Operation: admissionv1.Create}.Build(t))
	})

	assert.False(t, resp.Allowed, "a panicking handler must not admit")
	if assert.NotNil(t, resp.Result) {
		assert.EqualValues(t, http.StatusInternalServerError, resp.Result.Code)
		assert.Contains(t, resp.Result.Message, "test-panic", "the answer names the webhook")
	}
	assert.Equal(t, before+1, testutil.ToFloat64(panics), "svcguard_admission_panics_total must count the panic")
	assert.Equal(t, errorsBefore+1, testutil.ToFloat64(errorsCounted), "the panic counts as decision=error")
}

// selfTestContext is the context that a server of mark gives a request that
// signer signed.
func selfTestContext(mark, signer readiness.SelfTestMark) context.Context {
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	signer.Sign(r)
	return mark.Context(context.Background(), r)
}

func TestInstrumentedRunsTheSelfTestThroughTheHandlerUncounted(t *testing.T) {
	called := 0
	h := instrumented{name: "test-self-test", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		called++
		return admission.Errored(http.StatusBadRequest, errors.New("cannot decode"))
	})}
	errorsCounted := metrics.AdmissionRequests.WithLabelValues("test-self-test", "CREATE", "error")
	before, samplesBefore := testutil.ToFloat64(errorsCounted), durationSamples(t, "test-self-test")

	mark := readiness.NewSelfTestMark()
	resp := h.Handle(selfTestContext(mark, mark), admissiontest.Request{Operation: admissionv1.Create}.Build(t))
	assert.Equal(t, 1, called, "the self-test must reach the webhook's handler")
	if assert.NotNil(t, resp.Result) {
		assert.EqualValues(t, http.StatusBadRequest, resp.Result.Code, "the handler's error answers the self-test, so readiness sees it")
	}
	assert.Equal(t, before, testutil.ToFloat64(errorsCounted), "the self-test must not be counted in svcguard_admission_requests_total")
	assert.Equal(t, samplesBefore, durationSamples(t, "test-self-test"), "the self-test must not be observed")

	h.Handle(selfTestContext(mark, readiness.NewSelfTestMark()), admissiontest.Request{Operation: admissionv1.Create}.Build(t))
	assert.Equal(t, before+1, testutil.ToFloat64(errorsCounted), "a token of another process marks nothing: the request counts")
}

func TestInstrumentedRecoversASelfTestPanicUncounted(t *testing.T) {
	h := instrumented{name: "test-self-test-panic", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		panic("broken")
	})}
	panics := metrics.AdmissionPanics.WithLabelValues("test-self-test-panic")
	before := testutil.ToFloat64(panics)
	var resp admission.Response
	mark := readiness.NewSelfTestMark()
	assert.NotPanics(t, func() {
		resp = h.Handle(selfTestContext(mark, mark), admissiontest.Request{Operation: admissionv1.Create}.Build(t))
	})
	if assert.NotNil(t, resp.Result) {
		assert.EqualValues(t, http.StatusInternalServerError, resp.Result.Code)
	}
	assert.Equal(t, before, testutil.ToFloat64(panics), "a self-test panic fails readiness, it is not counted as traffic")
}

func TestInstrumentedCountsAnUnknownOperationAsOther(t *testing.T) {
	h := instrumented{name: "test-operation", handler: handlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})}
	other := metrics.AdmissionRequests.WithLabelValues("test-operation", "other", "allowed")
	before := testutil.ToFloat64(other)
	h.Handle(context.Background(), admissiontest.Request{Operation: "HOSTILE-LABEL-VALUE"}.Build(t))
	assert.Equal(t, before+1, testutil.ToFloat64(other), "an operation the admission API does not define counts as other")
	assert.NotContains(t, operationLabels(t), "HOSTILE-LABEL-VALUE", "no series may carry an operation a client made up")
}

// operationLabels returns the operation label of every series of svcguard_admission_requests_total.
func operationLabels(t *testing.T) []string {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	metrics.AdmissionRequests.Collect(ch)
	close(ch)
	var out []string
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "operation" {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}
