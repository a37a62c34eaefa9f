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
// default overlay renders them (PolicyTwinObjects), or fails t.
func PolicyTwin(t testing.TB, host, port string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := PolicyTwinObjects(host, port)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// PolicyTwinObjects returns the objects of manifests/components/policy as
// the default overlay renders them (the policy, its binding, their RBAC and
// ServiceAccount, svcguard's Namespace), with its params ConfigMap holding
// host and port as injection.env would: what the suites and the demo apply
// (Apply) to install the twin beside the webhook. The binding comes last,
// so that a suite can apply all but it.
func PolicyTwinObjects(host, port string) ([]*unstructured.Unstructured, error) {
	rendered, err := renderedOverlay(DefaultOverlay)
	if err != nil {
		return nil, err
	}
	var objs, binding []*unstructured.Unstructured
	for _, u := range rendered {
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
				return nil, err
			}
			objs = append(objs, u)
		}
	}
	if len(objs) != 8 || len(binding) != 1 {
		return nil, fmt.Errorf("manifests/overlays/%s: expected the policy twin's 9 objects (components/policy and ConfigMap %s), found %d",
			DefaultOverlay, PolicyTwinParams, len(objs)+len(binding))
	}
	return append(objs, binding...), nil
}
