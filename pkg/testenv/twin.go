package testenv

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// PolicyTwinName is the name of the MutatingAdmissionPolicy and its
// binding in manifests/components/policy.
const PolicyTwinName = "svcguard-service-host"

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
// ServiceAccount, svcguard's Namespace), with the policy injecting host and
// port, as kustomize writes them from injection.env: what the suites and the
// demo apply (Apply) to install the twin beside the webhook. The binding
// comes last, so that a suite can apply all but it.
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
		case kind == "MutatingAdmissionPolicy":
			if err := setStringVariables(u, map[string]string{"serviceHost": host, "servicePort": port}); err != nil {
				return nil, err
			}
			objs = append(objs, u)
		case kind == "Namespace", kind == "ServiceAccount",
			(kind == "ClusterRole" || kind == "ClusterRoleBinding") && name == "svcguard-injection-policy-reader":
			objs = append(objs, u)
		}
	}
	if len(objs) != 5 || len(binding) != 1 {
		return nil, fmt.Errorf("manifests/overlays/%s: expected the policy twin's 6 objects (components/policy), found %d", DefaultOverlay, len(objs)+len(binding))
	}
	return append(objs, binding...), nil
}

// setStringVariables sets the policy's variables named in values to those
// values as raw triple-quoted CEL string literals, as the component's
// replacements do.
func setStringVariables(policy *unstructured.Unstructured, values map[string]string) error {
	variables, _, err := unstructured.NestedSlice(policy.Object, "spec", "variables")
	if err != nil {
		return err
	}
	set := 0
	for _, v := range variables {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		if value, ok := values[fmt.Sprint(m["name"])]; ok {
			m["expression"] = "r'''" + value + "'''"
			set++
		}
	}
	if set != len(values) {
		return fmt.Errorf("MutatingAdmissionPolicy %s: expected the variables %v, found %d of them", policy.GetName(), slices.Sorted(maps.Keys(values)), set)
	}
	return unstructured.SetNestedSlice(policy.Object, variables, "spec", "variables")
}
