package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// TestManifestDeploymentArgsAndConfigAreValidSettings proves the shipped
// Deployment's args and config.yaml parse as svcguard's flags.
func TestManifestDeploymentArgsAndConfigAreValidSettings(t *testing.T) {
	shippedSettings(t) // fails the test when they do not parse
}

// shippedSettings parses the shipped Deployment's args, with extra ones
// appended (as an overlay adds them), and config.yaml.
func shippedSettings(t *testing.T, extra ...string) (*appsv1.Deployment, *options.Server, *servicehost.Options) {
	t.Helper()
	var deploy appsv1.Deployment
	testenv.ReadManifest(t, "deployment.yaml", &deploy)
	args := append(append([]string{}, deploy.Spec.Template.Spec.Containers[0].Args...), extra...)
	for i, a := range args {
		if strings.HasPrefix(a, "--config=") {
			args[i] = "--config=" + testenv.ManifestPath(t, "config.yaml")
		}
	}
	srv, host := options.NewServer(), servicehost.NewOptions()
	require.NoError(t, options.Parse("svcguard", args, &bytes.Buffer{}, srv, host, nodeport.NewOptions()))
	return &deploy, srv, host
}

// TestManifestGracePeriodCoversTheDrain proves the kubelet waits for the
// whole shutdown: drain, then in-flight requests.
func TestManifestGracePeriodCoversTheDrain(t *testing.T) {
	deploy, srv, _ := shippedSettings(t)
	grace := time.Duration(*deploy.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.Greater(t, grace, srv.ShutdownDrain+srv.ShutdownTimeout,
		"terminationGracePeriodSeconds must exceed shutdown-drain + shutdown-timeout")
	assert.Equal(t, intstr.FromInt32(0), *deploy.Spec.Strategy.RollingUpdate.MaxUnavailable)
	assert.Equal(t, intstr.FromInt32(1), *deploy.Spec.Strategy.RollingUpdate.MaxSurge)
}

// TestManifestRBACGrantsReadinessItsConfigurations proves readiness may
// watch the configurations it is told to read, and that those are the
// shipped ones.
func TestManifestRBACGrantsReadinessItsConfigurations(t *testing.T) {
	_, srv, _ := shippedSettings(t)
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	testenv.ReadManifest(t, "webhook/mutating.yaml", &mwc)
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	testenv.ReadManifest(t, "webhook/validating.yaml", &vwc)
	assert.Equal(t, mwc.Name, srv.MutatingWebhookConfiguration)
	assert.Equal(t, vwc.Name, srv.ValidatingWebhookConfiguration)

	role := testenv.ShippedClusterRole(t, "rbac.yaml")
	granted := map[string][]string{}
	for _, rule := range role.Rules {
		if slices.Contains(rule.APIGroups, "admissionregistration.k8s.io") {
			for _, r := range rule.Resources {
				granted[r] = rule.ResourceNames
				assert.ElementsMatch(t, []string{"get", "list", "watch"}, rule.Verbs)
			}
		}
	}
	assert.Equal(t, []string{mwc.Name}, granted["mutatingwebhookconfigurations"])
	assert.Equal(t, []string{vwc.Name}, granted["validatingwebhookconfigurations"])
}

// TestManifestWebhookPointsAtTheServedPath proves the registered path is the
// one the webhook serves.
func TestManifestWebhookPointsAtTheServedPath(t *testing.T) {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	testenv.ReadManifest(t, "webhook/mutating.yaml", &mwc)
	require.Len(t, mwc.Webhooks, 1)
	assert.Equal(t, servicehost.Path, *mwc.Webhooks[0].ClientConfig.Service.Path)
}

// TestManifestNodePortGuardPointsAtTheServedPath proves the validating
// webhook's registered path is the one the guard serves.
func TestManifestNodePortGuardPointsAtTheServedPath(t *testing.T) {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	testenv.ReadManifest(t, "webhook/validating.yaml", &vwc)
	require.Len(t, vwc.Webhooks, 1)
	assert.Equal(t, nodeport.Path, *vwc.Webhooks[0].ClientConfig.Service.Path)
}

func grants(role *rbacv1.ClusterRole, resource, verb string) bool {
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// TestManifestEvictionIsGrantedOnlyWithRemediation proves the base install
// cannot evict, and the remediation overlay both grants it and turns it on.
func TestManifestEvictionIsGrantedOnlyWithRemediation(t *testing.T) {
	assert.False(t, grants(testenv.ShippedClusterRole(t, "rbac.yaml"), "pods/eviction", "create"), "the base install must not evict")
	for _, need := range []struct{ resource, verb string }{{"namespaces", "watch"}, {"events", "create"}} {
		assert.True(t, grants(testenv.ShippedClusterRole(t, "rbac.yaml"), need.resource, need.verb), "the audits need %s %s", need.verb, need.resource)
	}
	assert.True(t, grants(testenv.ShippedClusterRole(t, "remediation/rbac.yaml"), "pods/eviction", "create"))

	var overlay struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Patches    []struct {
			Target map[string]string `json:"target"`
			Patch  string            `json:"patch"`
		} `json:"patches"`
	}
	testenv.ReadManifest(t, "remediation/kustomization.yaml", &overlay)
	assert.Equal(t, []string{"../", "rbac.yaml"}, overlay.Resources)
	require.Len(t, overlay.Patches, 1)
	var ops []struct{ Op, Path, Value string }
	require.NoError(t, yaml.Unmarshal([]byte(overlay.Patches[0].Patch), &ops))
	require.Len(t, ops, 1)
	_, _, base := shippedSettings(t)
	assert.False(t, base.RemediateMissedPods, "the base install does not remediate")
	_, _, host := shippedSettings(t, ops[0].Value)
	assert.True(t, host.RemediateMissedPods, "the overlay's patch turns remediation on")
}
