package nodeport

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
)

// TestSelfTestRequestIsJudgedByTheRealHandler proves that readiness's
// self-test reaches the guard's rules: decoded and judged, no error.
func TestSelfTestRequestIsJudgedByTheRealHandler(t *testing.T) {
	for _, view := range []fakeView{{}, {unsynced: true}} {
		h := &Handler{Guard: testGuard(), View: view, Decoder: admissiontest.Decoder}
		resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: SelfTestRequest()})
		assert.True(t, resp.Allowed, "a claim of 30000, free in the test guard, is allowed; result: %+v", resp.Result)
	}
}
