package servicehost

import (
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// selfTestPod is the Pod of the readiness self-test: one container without
// the variables, so a working webhook answers with a patch, and every step
// of a real request runs (decode, rules, patch).
const selfTestPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"svcguard-self-test","namespace":"svcguard-self-test"},` +
	`"spec":{"containers":[{"name":"self-test","image":"self-test","env":[{"name":"SELF_TEST","value":"1"}]}]}}`

// SelfTestRequest is the Pod CREATE that readiness sends through this
// webhook's real handler every round (see component.Webhook.SelfTest).
func SelfTestRequest() admissionv1.AdmissionRequest {
	return admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "svcguard-self-test",
		Name:      "svcguard-self-test",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: []byte(selfTestPod)},
	}
}
