package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// TestManifestPolicyTwinDecidesForTheSamePodsAsTheWebhook proves the twin
// and the webhook match the same requests: Pod CREATE and
// pods/ephemeralcontainers UPDATE, with the same namespace and object
// selectors (the opt-out label, svcguard's own namespace).
func TestManifestPolicyTwinDecidesForTheSamePodsAsTheWebhook(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	policy := find[admissionregistrationv1.MutatingAdmissionPolicy](t, objs, "MutatingAdmissionPolicy", testenv.PolicyTwinName)
	mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "svcguard")
	require.Len(t, mwc.Webhooks, 1)
	hook := mwc.Webhooks[0]
	c := policy.Spec.MatchConstraints
	assert.Equal(t, hook.NamespaceSelector, c.NamespaceSelector, "the twin's namespaceSelector must be the webhook's")
	assert.Equal(t, hook.ObjectSelector, c.ObjectSelector, "the twin's objectSelector must be the webhook's")
	require.Len(t, c.ResourceRules, len(hook.Rules))
	for i, r := range hook.Rules {
		assert.Equal(t, r.Operations, c.ResourceRules[i].Operations)
		assert.Equal(t, r.Resources, c.ResourceRules[i].Resources)
	}
	assert.Equal(t, admissionregistrationv1.Ignore, *policy.Spec.FailurePolicy, "a twin that cannot run never blocks a deploy")
	assert.Equal(t, admissionregistrationv1.IfNeededReinvocationPolicy, policy.Spec.ReinvocationPolicy,
		"the twin runs again after a webhook adds a container")
	assert.Equal(t, &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}, policy.Spec.ParamKind)
	require.Len(t, hook.MatchConditions, 1, "the webhook is called only when a container lacks the variables")
}

// TestManifestPolicyTwinReadsWhatTheDeploymentInjects proves one
// configuration: the ConfigMap the binding names and the keys the
// Deployment's --service-host and --service-port come from are written from
// the same file, and the Deployment tells the leader which twin to check.
func TestManifestPolicyTwinReadsWhatTheDeploymentInjects(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objs := overlayObjects(t, overlay)
			deploy, _, host, _ := shippedSettings(t, overlay)
			var params *corev1.ConfigMap
			for _, u := range objs {
				if u.GetKind() == "ConfigMap" && u.GetName() == testenv.PolicyTwinParams {
					params = find[corev1.ConfigMap](t, objs, "ConfigMap", u.GetName())
				}
			}
			require.NotNil(t, params, "every install carries the ConfigMap %s", testenv.PolicyTwinParams)
			assert.Equal(t, map[string]string{servicehost.HostKey: host.ServiceHost, servicehost.PortKey: host.ServicePort}, params.Data,
				"the twin's params must be what the Deployment injects")

			var bindings []*admissionregistrationv1.MutatingAdmissionPolicyBinding
			for _, u := range objs {
				if u.GetKind() == "MutatingAdmissionPolicyBinding" {
					bindings = append(bindings, find[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, objs, u.GetKind(), u.GetName()))
				}
			}
			if overlay == "webhook-only" {
				assert.Empty(t, bindings, "webhook-only installs no twin")
				assert.Empty(t, host.InjectionPolicy, "webhook-only expects no twin")
				return
			}
			require.Len(t, bindings, 1)
			b := bindings[0]
			assert.Equal(t, testenv.PolicyTwinName, b.Spec.PolicyName)
			assert.Equal(t, &admissionregistrationv1.ParamRef{Name: params.Name, Namespace: deploy.Namespace,
				ParameterNotFoundAction: ptrTo(admissionregistrationv1.AllowAction)}, b.Spec.ParamRef)
			assert.Equal(t, testenv.PolicyTwinName, host.InjectionPolicy, "the leader checks the twin the overlay installs")
		})
	}
}

// TestManifestSvcguardOnlyReadsItsTwin proves the RBAC of components/policy:
// get on the twin's two objects and its ConfigMap, by name, nothing else,
// and no write on any admission policy anywhere.
func TestManifestSvcguardOnlyReadsItsTwin(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	reader := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "svcguard-injection-policy-reader")
	assert.Equal(t, []rbacv1.PolicyRule{{
		APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings"},
		ResourceNames: []string{testenv.PolicyTwinName}, Verbs: []string{"get"},
	}}, reader.Rules)
	params := find[rbacv1.Role](t, objs, "Role", "svcguard-injection-policy-params")
	assert.Equal(t, "svcguard", params.Namespace)
	assert.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
		ResourceNames: []string{testenv.PolicyTwinParams}, Verbs: []string{"get"}}}, params.Rules)
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		var role rbacv1.ClusterRole
		require.NoError(t, testenv.Find(objs, u.GetKind(), u.GetName(), &role))
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			for _, res := range []string{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings", "mutatingwebhookconfigurations"} {
				assert.False(t, grants(&role, "admissionregistration.k8s.io", res, verb), "%s %s grants %s on %s", u.GetKind(), u.GetName(), verb, res)
			}
		}
	}
}
