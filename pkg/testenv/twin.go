package testenv

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// PolicyTwinName is the name of the MutatingAdmissionPolicy and its
// binding in manifests/components/policy.
const PolicyTwinName = "svcguard-service-host"

// PolicyTwinParams is the ConfigMap the twin's binding names.
const PolicyTwinParams = "svcguard-injection"

// PolicyTwin returns the objects of manifests/components/policy as the
// default overlay renders them (the policy, its binding, their RBAC and
// ServiceAccount, svcguard's Namespace), with its params ConfigMap holding
// host and port as injection.env would: what the suites apply to install the
// twin beside the webhook, with Apply. The binding comes last, so that a
// suite can apply all but it.
func PolicyTwin(t testing.TB, host, port string) []*unstructured.Unstructured {
	t.Helper()
	var objs, binding []*unstructured.Unstructured
	for _, u := range Rendered(t, DefaultOverlay) {
		kind, name := u.GetKind(), u.GetName()
		switch {
		case kind == "MutatingAdmissionPolicyBinding":
			binding = append(binding, u)
		case kind == "MutatingAdmissionPolicy", kind == "Namespace", kind == "ServiceAccount",
			(kind == "ClusterRole" || kind == "ClusterRoleBinding") && name == "svcguard-injection-policy-reader",
			(kind == "Role" || kind == "RoleBinding") && name == "svcguard-injection-policy-params":
			objs = append(objs, u)
		case kind == "ConfigMap" && name == PolicyTwinParams:
			data := map[string]string{"service-host": host, "service-port": port}
			if err := unstructured.SetNestedStringMap(u.Object, data, "data"); err != nil {
				t.Fatal(err)
			}
			objs = append(objs, u)
		}
	}
	if len(objs) != 8 || len(binding) != 1 {
		t.Fatalf("manifests/overlays/%s: %s", DefaultOverlay, fmt.Sprintf(
			"expected the policy twin's 9 objects (components/policy and ConfigMap %s), found %d", PolicyTwinParams, len(objs)+len(binding)))
	}
	return append(objs, binding...)
}
