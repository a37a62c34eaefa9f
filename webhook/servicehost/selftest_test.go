package servicehost

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
)

// TestSelfTestRequestIsPatchedByTheRealHandler proves that readiness's
// self-test exercises decode, rules and patch: a working handler patches it.
func TestSelfTestRequestIsPatchedByTheRealHandler(t *testing.T) {
	h := &Handler{Injection: Injection{Host: testHost, Port: testPort}, Decoder: admissiontest.Decoder}
	resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: SelfTestRequest()})
	assert.True(t, resp.Allowed, "result: %+v", resp.Result)
	assert.NotEmpty(t, admissiontest.Operations(t, resp), "the variables are added to the self-test Pod's only container")
}
