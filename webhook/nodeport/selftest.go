package nodeport

import (
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/svcguard/svcguard/pkg/component"
)

// selfTestService is the Service of the readiness self-test: a NodePort
// Service claiming nodePort 30000, so the guard decodes it and runs its claim
// rules against the caches. Allowed or denied (the port may be reserved or
// pinned here), either answer is a judgement; only an error fails readiness.
const selfTestService = `{"apiVersion":"v1","kind":"Service","metadata":{"name":"svcguard-self-test","namespace":"svcguard-self-test"},` +
	`"spec":{"type":"NodePort","ports":[{"name":"self-test","port":80,"protocol":"TCP","nodePort":30000}]}}`

// SelfTestRequest is the Service CREATE that readiness sends through the
// guard's real handler every round (see component.Webhook.SelfTest).
func SelfTestRequest() admissionv1.AdmissionRequest {
	return component.CreateRequest("Service", "services", selfTestService)
}
