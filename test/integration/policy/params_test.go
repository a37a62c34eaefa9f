package policy_test

import (
	"context"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

// TestEnvtestConfigMapParamsGoStaleOnceTheirLastBindingIsGone proves why
// the policy twin carries its values as literals rather than reading them
// from a ConfigMap through paramKind: kube-apiserver v1.37 stops its
// informer of a params kind when no binding uses it any more, and never
// starts it again. A binding deleted and created again (an uninstall and a
// reinstall, a binding removed for a while) then evaluates with the
// ConfigMap as it was when the last binding went, for good: here a value
// changed in between is still not seen after 10 s (it is seen within a
// second while a binding exists). When this test starts failing, the API
// server was fixed and params would be safe.
func TestEnvtestConfigMapParamsGoStaleOnceTheirLastBindingIsGone(t *testing.T) {
	te := suite.Env
	ctx := context.Background()
	ns := te.Namespace(t, nil)
	params := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "params"}, Data: map[string]string{"value": "first"}}
	policy := &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "stale-params"},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			ParamKind: &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"},
			MatchConstraints: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}},
			},
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeApplyConfiguration,
				ApplyConfiguration: &admissionregistrationv1.ApplyConfiguration{
					Expression: `Object{metadata: Object.metadata{annotations: {"param": string(params.data["value"])}}}`,
				},
			}},
		},
	}
	newBinding := func() *admissionregistrationv1.MutatingAdmissionPolicyBinding {
		return &admissionregistrationv1.MutatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "stale-params"},
			Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
				ParamRef: &admissionregistrationv1.ParamRef{Name: params.Name, Namespace: ns, ParameterNotFoundAction: ptr.To(admissionregistrationv1.DenyAction)}},
		}
	}
	for _, obj := range []client.Object{params, policy, newBinding()} {
		if err := te.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = te.Client.Delete(context.Background(), newBinding())
		_ = te.Client.Delete(context.Background(), policy)
	})
	annotation := func() string {
		pod := fixtures.Pod(ns, "probe", fixtures.Container("app", "app"))
		if err := te.Client.Create(ctx, pod, client.DryRunAll); err != nil {
			return "error: " + err.Error()
		}
		return pod.Annotations["param"]
	}
	waitFor := func(want string, within time.Duration) string {
		deadline := time.Now().Add(within)
		got := annotation()
		for got != want && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			got = annotation()
		}
		return got
	}
	if got := waitFor("first", 30*time.Second); got != "first" {
		t.Fatalf("the policy never applied its params: annotation %q", got)
	}
	te.Edit(t, client.ObjectKeyFromObject(params), params, func() { params.Data["value"] = "second" })
	if got := waitFor("second", 10*time.Second); got != "second" {
		t.Fatalf("while bound, a change of the params should be seen within seconds; annotation %q", got)
	}

	if err := te.Client.Delete(ctx, newBinding()); err != nil {
		t.Fatal(err)
	}
	if got := waitFor("", 30*time.Second); got != "" {
		t.Fatalf("the binding's deletion never took effect: annotation %q", got)
	}
	te.Edit(t, client.ObjectKeyFromObject(params), params, func() { params.Data["value"] = "third" })
	if err := te.Client.Create(ctx, newBinding()); err != nil {
		t.Fatal(err)
	}
	if got := waitFor("third", 10*time.Second); got != "second" {
		t.Fatalf("expected the re-created binding to evaluate the stale params (annotation \"second\") as kube-apiserver v1.37 does; got %q: "+
			"if it is \"third\", the API server now restarts its params informer, and paramKind would be safe for the twin", got)
	}
}
