package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
	"github.com/svcguard/svcguard/webhook/servicepath"
)

// The shipped installs (manifests/overlays/*), rendered with the kustomize Go
// API as `kubectl apply -k` renders them. test/integration/deploy applies them
// to a real API server; these tests read what they say.

// overlays lists every install the README names; bring-your-own-cert needs
// its certificate files, which overlayObjects adds.
var overlays = []string{"default", "remediation", "monitoring", "bring-your-own-cert", "webhook-only"}

// byoFiles are the files a user puts beside the bring-your-own-cert overlay.
func byoFiles(t *testing.T) map[string][]byte {
	t.Helper()
	ca := certtest.NewAuthority(t)
	certPEM, keyPEM := certtest.EncodePEM(t, ca.Issue(t, time.Now(), time.Hour, "svcguard.svcguard.svc", "svcguard.svcguard.svc.cluster.local"))
	return map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": ca.PEM}
}

func overlayObjects(t *testing.T, overlay string) []*unstructured.Unstructured {
	t.Helper()
	if overlay != "bring-your-own-cert" {
		return testenv.Rendered(t, overlay)
	}
	objs, err := testenv.Render("manifests/overlays/"+overlay, byoFiles(t))
	require.NoError(t, err)
	return objs
}

func find[T any, P interface {
	*T
	runtime.Object
}](t *testing.T, objs []*unstructured.Unstructured, kind, name string) P {
	t.Helper()
	into := P(new(T))
	require.NoError(t, testenv.Find(objs, kind, name, into))
	return into
}

// shippedSettings parses the Deployment's args of overlay, with config.yaml
// from its ConfigMap, with the binary's own flag set.
func shippedSettings(t *testing.T, overlay string) (*appsv1.Deployment, *options.Server, *servicehost.Options, *nodeport.Options) {
	t.Helper()
	return settingsFrom(t, overlay, overlayObjects(t, overlay))
}

// settingsOf is the service-host settings of settingsFrom.
func settingsOf(t *testing.T, overlay string, objs []*unstructured.Unstructured) *servicehost.Options {
	t.Helper()
	_, _, host, _ := settingsFrom(t, overlay, objs)
	return host
}

// settingsFrom parses the Deployment's args in objs (rendered from overlay)
// as the kubelet expands them, with config.yaml from its ConfigMap, with
// the binary's own flag set.
func settingsFrom(t *testing.T, overlay string, objs []*unstructured.Unstructured) (*appsv1.Deployment, *options.Server, *servicehost.Options, *nodeport.Options) {
	t.Helper()
	deploy := find[appsv1.Deployment](t, objs, "Deployment", "svcguard")
	configMaps, err := testenv.ConfigMapsOf(objs)
	require.NoError(t, err)
	config := filepath.Join(t.TempDir(), "config.yaml")
	for name, data := range configMaps {
		if strings.HasPrefix(name, "svcguard-config-") {
			require.NoError(t, os.WriteFile(config, []byte(data["config.yaml"]), 0o600))
		}
	}
	c := deploy.Spec.Template.Spec.Containers[0]
	env, err := testenv.ContainerEnv(c, deploy.Namespace, "svcguard-0", configMaps)
	require.NoError(t, err, "manifests/overlays/%s: the Deployment's env", overlay)
	args := testenv.ExpandArgs(c.Args, env)
	for i, a := range args {
		if strings.HasPrefix(a, "--config=") {
			args[i] = "--config=" + config
		}
	}
	srv, host, ports := options.NewServer(), servicehost.NewOptions(), nodeport.NewOptions()
	require.NoError(t, parse(args, &bytes.Buffer{}, srv, host, ports, servicepath.NewOptions()), "manifests/overlays/%s: the Deployment's args and config.yaml must be the binary's flags", overlay)
	return deploy, srv, host, ports
}

// TestManifestEveryOverlaysFlagsAndConfigAreTheBinarys proves every install
// runs the binary with flags it has and a config.yaml it accepts.
func TestManifestEveryOverlaysFlagsAndConfigAreTheBinarys(t *testing.T) {
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			_, srv, host, _ := shippedSettings(t, overlay)
			assert.True(t, srv.MetricsSecure, "metrics are served with authentication")
			assert.Equal(t, overlay == "remediation", host.RemediateMissedPods, "only the remediation overlay evicts")
		})
	}
}

// TestManifestGracePeriodCoversTheDrain proves the kubelet waits for the
// whole shutdown: drain, then in-flight requests.
func TestManifestGracePeriodCoversTheDrain(t *testing.T) {
	deploy, srv, _, _ := shippedSettings(t, testenv.DefaultOverlay)
	grace := time.Duration(*deploy.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.Greater(t, grace, srv.ShutdownDrain+srv.ShutdownTimeout,
		"terminationGracePeriodSeconds must exceed shutdown-drain + shutdown-timeout")
	assert.Equal(t, intstr.FromInt32(0), *deploy.Spec.Strategy.RollingUpdate.MaxUnavailable)
	assert.Equal(t, intstr.FromInt32(1), *deploy.Spec.Strategy.RollingUpdate.MaxSurge)
}

// TestManifestThreeReplicasSpreadAndTwoAlwaysAvailable proves the HA
// settings: 3 replicas, never two on a node while another can take one,
// spread over zones where possible, and a drain keeps 2.
func TestManifestThreeReplicasSpreadAndTwoAlwaysAvailable(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	deploy := find[appsv1.Deployment](t, objs, "Deployment", "svcguard")
	assert.Equal(t, int32(3), *deploy.Spec.Replicas)
	spread := map[string]corev1.UnsatisfiableConstraintAction{}
	for _, c := range deploy.Spec.Template.Spec.TopologySpreadConstraints {
		spread[c.TopologyKey] = c.WhenUnsatisfiable
		assert.Equal(t, deploy.Spec.Selector.MatchLabels, c.LabelSelector.MatchLabels, "spread counts svcguard's own Pods")
	}
	assert.Equal(t, map[string]corev1.UnsatisfiableConstraintAction{
		corev1.LabelHostname: corev1.DoNotSchedule, corev1.LabelTopologyZone: corev1.ScheduleAnyway,
	}, spread)
	for _, c := range deploy.Spec.Template.Spec.TopologySpreadConstraints {
		assert.Equal(t, corev1.NodeInclusionPolicyHonor, *c.NodeTaintsPolicy,
			"%s: cordoned and tainted nodes are no place for a replica, so they cannot hold one Pending and block drains", c.TopologyKey)
	}
	pdb := find[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "svcguard")
	assert.Equal(t, intstr.FromInt32(2), *pdb.Spec.MinAvailable)
	assert.Equal(t, policyv1.AlwaysAllow, *pdb.Spec.UnhealthyPodEvictionPolicy, "an unready replica never blocks a drain")
	assert.Equal(t, deploy.Spec.Selector.MatchLabels, pdb.Spec.Selector.MatchLabels)

	quota := find[corev1.ResourceQuota](t, objs, "ResourceQuota", "svcguard-critical-pods")
	require.Len(t, quota.Spec.ScopeSelector.MatchExpressions, 1)
	assert.Equal(t, []string{deploy.Spec.Template.Spec.PriorityClassName}, quota.Spec.ScopeSelector.MatchExpressions[0].Values,
		"a quota names the replicas' priority class, which some clusters admit outside kube-system only under one")
	pods := quota.Spec.Hard[corev1.ResourcePods]
	assert.GreaterOrEqual(t, pods.Value(), int64(*deploy.Spec.Replicas)+1, "room for every replica and a rollout's surge")

	container := deploy.Spec.Template.Spec.Containers[0]
	assert.Equal(t, ptrTo(true), container.SecurityContext.ReadOnlyRootFilesystem)
	assert.Equal(t, ptrTo(false), container.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, container.SecurityContext.Capabilities.Drop)
	assert.Equal(t, ptrTo(true), deploy.Spec.Template.Spec.SecurityContext.RunAsNonRoot)
	assert.True(t, container.Resources.Limits.Cpu().IsZero(), "no CPU limit: throttling adds admission latency")
	var memLimit string
	for _, e := range container.Env {
		if e.Name == "GOMEMLIMIT" {
			memLimit = e.Value
		}
	}
	soft, err := resource.ParseQuantity(strings.TrimSuffix(memLimit, "B")) // Go's MiB is Kubernetes' Mi
	require.NoError(t, err, "GOMEMLIMIT %q", memLimit)
	assert.Less(t, soft.Value(), container.Resources.Limits.Memory().Value(), "the Go runtime collects harder before the kernel kills")
}

func ptrTo[T any](v T) *T { return &v }

// TestManifestRBACGrantsReadinessItsConfigurations proves readiness may
// watch the configurations it is told to read, and that those are the
// shipped ones.
func TestManifestRBACGrantsReadinessItsConfigurations(t *testing.T) {
	_, srv, _, _ := shippedSettings(t, testenv.DefaultOverlay)
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "svcguard")
	vwc := find[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "svcguard")
	assert.Equal(t, mwc.Name, srv.MutatingWebhookConfiguration)
	assert.Equal(t, vwc.Name, srv.ValidatingWebhookConfiguration)

	role := testenv.ShippedClusterRole(t, testenv.DefaultOverlay, "svcguard")
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

// TestManifestWebhooksPointAtServedPathsWithShortTimeoutsAndSkipTheirNamespace
// proves each registered path is the one its webhook serves, the timeouts
// are the measured 2 s, failurePolicy is Ignore, and svcguard's own
// namespace is excluded from both.
func TestManifestWebhooksPointAtServedPathsWithShortTimeoutsAndSkipTheirNamespace(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	deploy := find[appsv1.Deployment](t, objs, "Deployment", "svcguard")
	mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "svcguard")
	vwc := find[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "svcguard")
	require.Len(t, mwc.Webhooks, 1)
	require.Len(t, vwc.Webhooks, 2)
	type entry struct {
		path     string
		cc       admissionregistrationv1.WebhookClientConfig
		timeout  *int32
		policy   *admissionregistrationv1.FailurePolicyType
		selector []string
	}
	excluded := func(ns *metav1.LabelSelector) []string {
		for _, e := range ns.MatchExpressions {
			if e.Key == corev1.LabelMetadataName && e.Operator == "NotIn" {
				return e.Values
			}
		}
		return nil
	}
	for _, e := range []entry{
		{servicehost.Path, mwc.Webhooks[0].ClientConfig, mwc.Webhooks[0].TimeoutSeconds, mwc.Webhooks[0].FailurePolicy, excluded(mwc.Webhooks[0].NamespaceSelector)},
		{nodeport.Path, vwc.Webhooks[0].ClientConfig, vwc.Webhooks[0].TimeoutSeconds, vwc.Webhooks[0].FailurePolicy, excluded(vwc.Webhooks[0].NamespaceSelector)},
		{servicepath.Path, vwc.Webhooks[1].ClientConfig, vwc.Webhooks[1].TimeoutSeconds, vwc.Webhooks[1].FailurePolicy, excluded(vwc.Webhooks[1].NamespaceSelector)},
	} {
		assert.Equal(t, e.path, *e.cc.Service.Path)
		assert.Equal(t, "svcguard", e.cc.Service.Name)
		assert.Equal(t, deploy.Namespace, e.cc.Service.Namespace)
		assert.Equal(t, int32(2), *e.timeout, "%s: timeoutSeconds", e.path)
		assert.Equal(t, admissionregistrationv1.Ignore, *e.policy, "%s: failurePolicy", e.path)
		assert.Equal(t, []string{deploy.Namespace}, e.selector, "%s: svcguard's own namespace is excluded", e.path)
	}
	require.Len(t, vwc.Webhooks[0].MatchConditions, 1, "the guard is called only for Services that have or had nodePorts or pins")
	require.Len(t, vwc.Webhooks[1].MatchConditions, 1, "the service-path guard is called only for Services that claim addresses or name targetPorts")
}

// TestManifestFailClosedComponentFlipsOnlyTheGuard proves the one-line
// overlay change makes the node-port guard strict and leaves injection and
// the service-path guard (whose calls are mostly warnings) fail-open.
func TestManifestFailClosedComponentFlipsOnlyTheGuard(t *testing.T) {
	objs, err := testenv.Render("manifests/overlays/strict", map[string][]byte{"kustomization.yaml": []byte(
		"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../base]\n" +
			"components: [../../components/cert-manager, ../../components/fail-closed]\n")})
	require.NoError(t, err)
	mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "svcguard")
	vwc := find[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "svcguard")
	assert.Equal(t, admissionregistrationv1.Fail, *vwc.Webhooks[0].FailurePolicy)
	assert.Equal(t, admissionregistrationv1.Ignore, *vwc.Webhooks[1].FailurePolicy)
	assert.Equal(t, admissionregistrationv1.Ignore, *mwc.Webhooks[0].FailurePolicy)
}

// TestManifestCAChainKeepsTheBundleStableAcrossServingRenewals proves the
// certificate chain: self-signed Issuer -> CA Certificate -> CA Issuer ->
// serving Certificate, and caBundle injected from the CA, not the serving
// certificate, so that its renewals never change what the API server trusts.
func TestManifestCAChainKeepsTheBundleStableAcrossServingRenewals(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	deploy := find[appsv1.Deployment](t, objs, "Deployment", "svcguard")
	ns := deploy.Namespace
	ca := find[cmapi.Certificate](t, objs, "Certificate", "svcguard-ca")
	serving := find[cmapi.Certificate](t, objs, "Certificate", "svcguard-serving-cert")
	caIssuer := find[cmapi.Issuer](t, objs, "Issuer", serving.Spec.IssuerRef.Name)
	selfSigned := find[cmapi.Issuer](t, objs, "Issuer", ca.Spec.IssuerRef.Name)

	assert.True(t, ca.Spec.IsCA)
	assert.NotNil(t, selfSigned.Spec.SelfSigned, "the CA is self-signed")
	require.NotNil(t, caIssuer.Spec.CA, "the serving certificate comes from a CA Issuer")
	assert.Equal(t, ca.Spec.SecretName, caIssuer.Spec.CA.SecretName, "the CA Issuer signs with the CA Certificate's key")
	assert.False(t, serving.Spec.IsCA)
	for _, c := range []*cmapi.Certificate{ca, serving} {
		assert.Equal(t, ns, c.Namespace)
		require.NotNil(t, c.Spec.RenewBefore, "%s renews before expiry", c.Name)
		assert.Less(t, 2*c.Spec.RenewBefore.Duration, c.Spec.Duration.Duration+c.Spec.RenewBefore.Duration)
	}
	assert.Greater(t, ca.Spec.RenewBefore.Duration, serving.Spec.Duration.Duration,
		"a serving certificate signed just before the CA renews is itself renewed before the old CA expires")
	assert.ElementsMatch(t, []string{"svcguard." + ns + ".svc", "svcguard." + ns + ".svc.cluster.local"}, serving.Spec.DNSNames)

	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		var u *unstructured.Unstructured
		for _, o := range objs {
			if o.GetKind() == kind {
				u = o
			}
		}
		require.NotNil(t, u, kind)
		assert.Equal(t, ns+"/"+ca.Name, u.GetAnnotations()["cert-manager.io/inject-ca-from"], "%s trusts the CA", kind)
	}
	var secret string
	for _, v := range deploy.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	assert.Equal(t, serving.Spec.SecretName, secret, "the replicas serve the serving certificate")
}

// TestManifestBringYourOwnCertInstallsTheFilesWithoutCertManager proves the
// overlay for clusters without cert-manager: the files become the serving
// Secret and both caBundles, and nothing of cert-manager is left.
func TestManifestBringYourOwnCertInstallsTheFilesWithoutCertManager(t *testing.T) {
	files := byoFiles(t)
	objs, err := testenv.Render("manifests/overlays/bring-your-own-cert", files)
	require.NoError(t, err)
	deploy := find[appsv1.Deployment](t, objs, "Deployment", "svcguard")
	var secretName string
	for _, v := range deploy.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretName = v.Secret.SecretName
		}
	}
	require.Equal(t, "svcguard-serving-cert", secretName, "the Deployment mounts the generated Secret by its fixed name")
	secret := find[corev1.Secret](t, objs, "Secret", secretName)
	assert.Equal(t, corev1.SecretTypeTLS, secret.Type)
	assert.Equal(t, deploy.Namespace, secret.Namespace)
	for _, key := range []string{"tls.crt", "tls.key", "ca.crt"} {
		assert.Equal(t, files[key], secret.Data[key], key)
	}
	mwc := find[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "svcguard")
	vwc := find[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "svcguard")
	assert.Equal(t, files["ca.crt"], mwc.Webhooks[0].ClientConfig.CABundle)
	assert.Equal(t, files["ca.crt"], vwc.Webhooks[0].ClientConfig.CABundle)
	for _, o := range objs {
		assert.NotContains(t, o.GetAPIVersion(), "cert-manager.io", "%s %s needs cert-manager", o.GetKind(), o.GetName())
		assert.NotContains(t, o.GetAnnotations(), "cert-manager.io/inject-ca-from")
	}
}

// TestManifestNetworkPolicyOpensOnlyTheWebhookAndMetricsPorts proves the
// Pods accept the API server's calls on the webhook port and scrapes on the
// metrics port, from the monitoring namespace only.
func TestManifestNetworkPolicyOpensOnlyTheWebhookAndMetricsPorts(t *testing.T) {
	objs := testenv.Rendered(t, testenv.DefaultOverlay)
	deploy := find[appsv1.Deployment](t, objs, "Deployment", "svcguard")
	policy := find[networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "svcguard")
	assert.Equal(t, deploy.Spec.Selector.MatchLabels, policy.Spec.PodSelector.MatchLabels)
	assert.Equal(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, policy.Spec.PolicyTypes)
	require.Len(t, policy.Spec.Ingress, 2)
	ports := map[string]bool{}
	for _, p := range deploy.Spec.Template.Spec.Containers[0].Ports {
		ports[p.Name] = true
	}
	assert.Equal(t, "webhook", policy.Spec.Ingress[0].Ports[0].Port.StrVal)
	assert.Empty(t, policy.Spec.Ingress[0].From, "the API server's address cannot be selected; the port is open")
	assert.Equal(t, "metrics", policy.Spec.Ingress[1].Ports[0].Port.StrVal)
	require.Len(t, policy.Spec.Ingress[1].From, 1)
	assert.Equal(t, map[string]string{corev1.LabelMetadataName: "monitoring"}, policy.Spec.Ingress[1].From[0].NamespaceSelector.MatchLabels)
	for _, rule := range policy.Spec.Ingress {
		assert.True(t, ports[rule.Ports[0].Port.StrVal], "port %s is a container port", rule.Ports[0].Port.StrVal)
	}
}

func grants(role *rbacv1.ClusterRole, group, resource, verb string) bool {
	for _, r := range role.Rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

// TestManifestEvictionIsGrantedOnlyWithRemediation proves the default
// install cannot evict, and the remediation overlay both grants it and turns
// it on; both may check the scraper's token for secure metrics.
func TestManifestEvictionIsGrantedOnlyWithRemediation(t *testing.T) {
	base := testenv.ShippedClusterRole(t, testenv.DefaultOverlay, "svcguard")
	assert.False(t, grants(base, "", "pods/eviction", "create"), "the default install must not evict")
	for _, need := range []struct{ group, resource, verb string }{
		{"", "namespaces", "watch"}, {"events.k8s.io", "events", "create"},
		{"authentication.k8s.io", "tokenreviews", "create"}, {"authorization.k8s.io", "subjectaccessreviews", "create"},
	} {
		assert.True(t, grants(base, need.group, need.resource, need.verb), "svcguard needs %s %s", need.verb, need.resource)
	}
	for _, o := range testenv.Rendered(t, testenv.DefaultOverlay) {
		assert.NotEqual(t, "svcguard-remediation", o.GetName(), "%s belongs to the remediation overlay only", o.GetKind())
	}
	assert.True(t, grants(testenv.ShippedClusterRole(t, "remediation", "svcguard-remediation"), "", "pods/eviction", "create"))
}
