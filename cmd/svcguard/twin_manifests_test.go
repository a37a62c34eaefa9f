package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
	"github.com/svcguard/svcguard/webhook/servicepath"
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
	assert.Nil(t, policy.Spec.ParamKind, "the twin carries its values as literals: params go stale in kube-apiserver v1.37 (test/integration/policy)")
	require.Len(t, hook.MatchConditions, 1, "the webhook is called only when a container lacks the variables")
}

// TestManifestPolicyTwinInjectsWhatTheDeploymentInjects proves one
// configuration: with injection.env edited as the README says, every install
// renders the twin with the values the Deployment passes as --service-host
// and --service-port, so that the leader's own check (JudgeTwin) finds the
// twin active; and the Deployment tells the leader which twin to check.
func TestManifestPolicyTwinInjectsWhatTheDeploymentInjects(t *testing.T) {
	for _, env := range []struct{ file, host, port string }{
		{"service-host=10.0.0.1\nservice-port=6443\n", "10.0.0.1", "6443"},
		{"# a comment\nservice-host=api.example.com\nservice-port=\n", "api.example.com", ""},
	} {
		for _, overlay := range overlays {
			t.Run(overlay+"/"+env.host, func(t *testing.T) {
				extra := byoFiles(t)
				if overlay != "bring-your-own-cert" {
					extra = map[string][]byte{}
				}
				extra["../../base/injection.env"] = []byte(env.file)
				objs, err := testenv.Render("manifests/overlays/"+overlay, extra)
				require.NoError(t, err)
				host := settingsOf(t, overlay, objs)
				assert.Equal(t, env.host, host.ServiceHost, "--service-host from injection.env")
				assert.Equal(t, env.port, host.ServicePort, "--service-port from injection.env")

				var twin servicehost.TwinObjects
				for _, u := range objs {
					switch u.GetKind() {
					case "MutatingAdmissionPolicy":
						twin.Policy = find[admissionregistrationv1.MutatingAdmissionPolicy](t, objs, u.GetKind(), u.GetName())
					case "MutatingAdmissionPolicyBinding":
						twin.Binding = find[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, objs, u.GetKind(), u.GetName())
					}
				}
				if overlay == "webhook-only" {
					assert.Nil(t, twin.Policy, "webhook-only installs no twin")
					assert.Empty(t, host.InjectionPolicy, "webhook-only expects no twin")
					return
				}
				assert.Equal(t, testenv.PolicyTwinName, host.InjectionPolicy, "the leader checks the twin the overlay installs")
				state := servicehost.JudgeTwin(host.InjectionPolicy, twin, servicehost.Injection{Host: host.ServiceHost, Port: host.ServicePort})
				assert.True(t, state.Active, "the leader would find the shipped twin inactive: %s", state.Reason)
			})
		}
	}
}

// TestManifestSvcguardOnlyReadsItsTwin proves the RBAC of components/policy:
// get on the twin's two objects, by name, nothing else, and no write on any
// admission policy anywhere.
func TestManifestSvcguardOnlyReadsItsTwin(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	reader := find[rbacv1.ClusterRole](t, objs, "ClusterRole", "svcguard-injection-policy-reader")
	assert.Equal(t, []rbacv1.PolicyRule{{
		APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingadmissionpolicies", "mutatingadmissionpolicybindings"},
		ResourceNames: []string{testenv.PolicyTwinName}, Verbs: []string{"get"},
	}}, reader.Rules)
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

// TestConfigYAMLOfTheOldLayoutIsRefused proves the upgrade path: a
// config.yaml that still sets service-host (where it lived before the twin)
// would lose to the Deployment's --service-host=$(...) and turn the
// injection off without a word, so the binary refuses it and says where
// the value belongs.
func TestConfigYAMLOfTheOldLayoutIsRefused(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(config, []byte(testenv.ShippedConfig(t, testenv.DefaultOverlay)+"service-host: \"10.0.0.1\"\n"), 0o600))
	err := parse([]string{"--config=" + config, "--service-host="}, &bytes.Buffer{},
		options.NewServer(), servicehost.NewOptions(), nodeport.NewOptions(), servicepath.NewOptions())
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"service-host" cannot be set in the config file: it is a key of its own in svcguard's ConfigMap, written from manifests/base/injection.env`)
}

// TestManifestInjectionEnvValuesStayDataInThePolicy renders injection.env
// values that would be CEL syntax in a plain quoted literal (a quote, a
// backslash escape): kustomize writes them into the twin's raw triple-quoted
// literals, which keep them as characters of the value (that the twin's
// `valid` then refuses, as svcguard refuses the flag), and the leader reads
// back exactly what was written.
func TestManifestInjectionEnvValuesStayDataInThePolicy(t *testing.T) {
	for _, v := range []struct{ host, port string }{{`a'+'b`, `\x31`}, {`10.0.0.1\u0020`, `6443'`}} {
		objs, err := testenv.Render("manifests/overlays/default", map[string][]byte{
			"../../base/injection.env": []byte("service-host=" + v.host + "\nservice-port=" + v.port + "\n")})
		require.NoError(t, err)
		twin := servicehost.TwinObjects{
			Policy:  find[admissionregistrationv1.MutatingAdmissionPolicy](t, objs, "MutatingAdmissionPolicy", testenv.PolicyTwinName),
			Binding: find[admissionregistrationv1.MutatingAdmissionPolicyBinding](t, objs, "MutatingAdmissionPolicyBinding", testenv.PolicyTwinName),
		}
		state := servicehost.JudgeTwin(testenv.PolicyTwinName, twin, servicehost.Injection{Host: v.host, Port: v.port})
		if strings.HasSuffix(v.port, "'") {
			// r'''6443'''' is not one literal: the API server refuses the policy, loudly, and the leader says so.
			assert.False(t, state.Active)
			assert.Contains(t, state.Reason, "has no variable servicePort holding a raw string literal")
			continue
		}
		assert.True(t, state.Active, "host %q port %q must come back from the policy as written: %s", v.host, v.port, state.Reason)
		assert.Error(t, (&servicehost.Options{ServiceHost: v.host, ServicePort: v.port, RemediationRate: 1}).Validate(),
			"svcguard refuses host %q port %q, as the twin's `valid` does", v.host, v.port)
	}
}
