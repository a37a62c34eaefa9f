package servicehost

import (
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/svcguard/svcguard/pkg/component"
)

// selfTestPod is the Pod of the readiness self-test: one container without
// the variables, so a working webhook answers with a patch, and every step
// of a real request runs (decode, rules, patch).
const selfTestPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"svcguard-self-test","namespace":"svcguard-self-test"},` +
	`"spec":{"containers":[{"name":"self-test","image":"self-test","env":[{"name":"SELF_TEST","value":"1"}]}]}}`

// SelfTestRequest is the Pod CREATE that readiness sends through this
// webhook's real handler every round (see component.Webhook.SelfTest).
func SelfTestRequest() admissionv1.AdmissionRequest {
	return component.CreateRequest("Pod", "pods", selfTestPod)
}
