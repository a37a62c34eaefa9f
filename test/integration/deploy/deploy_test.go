package deploy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// namespace is where the manifests install svcguard.
const namespace = "svcguard"

// installOnce applies the monitoring overlay (the default install plus the
// monitoring component, a superset of every other overlay's kinds) for real,
// once: the namespace must exist before dry runs of namespaced objects.
var installOnce sync.Once

func installed(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs := testenv.Rendered(t, "monitoring")
	var err error
	installOnce.Do(func() { err = testenv.Apply(context.Background(), env.Config, objs, false) })
	require.NoError(t, err, "applying manifests/overlays/monitoring")
	return objs
}

// TestEnvtestEveryOverlayIsAcceptedByTheRealSchemas proves each install
// renders and that the API server, with cert-manager's and
// prometheus-operator's CRDs, accepts every object under strict field
// validation (server-side apply, dry run).
func TestEnvtestEveryOverlayIsAcceptedByTheRealSchemas(t *testing.T) {
	installed(t)
	ca := certtest.NewAuthority(t)
	chain, key := certtest.EncodePEM(t, ca.Issue(t, time.Now(), time.Hour, "svcguard.svcguard.svc"))
	byo := map[string][]byte{"tls.crt": chain, "tls.key": key, "ca.crt": ca.PEM}
	for overlay, extra := range map[string]map[string][]byte{
		"default": nil, "remediation": nil, "monitoring": nil, "bring-your-own-cert": byo,
	} {
		t.Run(overlay, func(t *testing.T) {
			objs, err := testenv.Render("manifests/overlays/"+overlay, extra)
			require.NoError(t, err)
			require.NoError(t, testenv.Apply(context.Background(), env.Config, objs, true))
		})
	}
}

// TestEnvtestMonitoringObjectsAreWhatPrometheusOperatorReads proves the
// monitoring component with prometheus-operator's own types: the
// ServiceMonitor scrapes the Service's metrics port over verified HTTPS with
// a token, and the PrometheusRule's alerts each link a runbook.
func TestEnvtestMonitoringObjectsAreWhatPrometheusOperatorReads(t *testing.T) {
	objs := installed(t)
	var sm monitoringv1.ServiceMonitor
	require.NoError(t, testenv.Find(objs, "ServiceMonitor", "svcguard", &sm))
	var svc corev1.Service
	require.NoError(t, testenv.Find(objs, "Service", "svcguard", &svc))
	require.Len(t, sm.Spec.Endpoints, 1)
	ep := sm.Spec.Endpoints[0]
	assert.Equal(t, "metrics", ep.Port)
	require.NotEmpty(t, sm.Spec.Selector.MatchLabels)
	for k, v := range sm.Spec.Selector.MatchLabels {
		assert.Equal(t, v, svc.Labels[k], "the ServiceMonitor selects svcguard's Service by its label %s", k)
	}
	require.NotNil(t, ep.Scheme)
	assert.Equal(t, "https", strings.ToLower(ep.Scheme.String()))
	require.NotNil(t, ep.TLSConfig, "the scrape verifies svcguard's certificate")
	assert.False(t, ptrValue(ep.TLSConfig.InsecureSkipVerify), "the scrape verifies svcguard's certificate")
	assert.Equal(t, "svcguard."+namespace+".svc", ptrValue(ep.TLSConfig.ServerName))

	var rule monitoringv1.PrometheusRule
	var ruleName string
	for _, o := range objs {
		if o.GetKind() == "PrometheusRule" {
			ruleName = o.GetName()
		}
	}
	require.NoError(t, testenv.Find(objs, "PrometheusRule", ruleName, &rule))
	runbooks, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "runbooks.md"))
	require.NoError(t, err)
	alerts := 0
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			url := r.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(url, "#")
			require.True(t, ok, "alert %s links a runbook section, got %q", r.Alert, url)
			assert.Contains(t, strings.ToLower(string(runbooks)), "## "+strings.ToLower(r.Alert), "docs/runbooks.md has a section for %s (#%s)", r.Alert, anchor)
		}
	}
	assert.GreaterOrEqual(t, alerts, 8, "the alerts the issue lists")
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	return root
}

// shippedBinary runs the binary as the Deployment runs it: its args (bind
// addresses, the config file and the certificate directory pointed at this
// machine, every flag name kept), config.yaml from the ConfigMap, the
// ServiceAccount svcguard with exactly the RBAC the manifests bind to it,
// POD_NAMESPACE, and metrics secured.
func shippedBinary(t *testing.T, objs []*unstructured.Unstructured, extra ...string) *testenv.Process {
	t.Helper()
	var deploy appsv1.Deployment
	require.NoError(t, testenv.Find(objs, "Deployment", "svcguard", &deploy))
	config := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(config, []byte(testenv.ShippedConfig(t, "monitoring")), 0o600))
	sa := env.ServiceAccountConfig(t, namespace, deploy.Spec.Template.Spec.ServiceAccountName)

	// The args as the kubelet expands them: $(VAR) from the env, which reads the ConfigMap's keys.
	configMaps, err := testenv.ConfigMapsOf(objs)
	require.NoError(t, err)
	c := deploy.Spec.Template.Spec.Containers[0]
	resolved, err := testenv.ContainerEnv(c, namespace, "svcguard-0", configMaps)
	require.NoError(t, err)
	var args []string
	for _, a := range testenv.ExpandArgs(c.Args, resolved) {
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--config":
			a = name + "=" + config
		case "--cert-dir", "--webhook-bind-address", "--health-probe-bind-address", "--metrics-bind-address":
			continue // StartBinary points them at this machine
		}
		args = append(args, a)
	}
	args = append(args, "--kubeconfig="+testenv.WriteKubeconfig(t, sa), "--metrics-secure=true")
	args = append(args, extra...)
	t.Setenv("POD_NAMESPACE", namespace)
	proc, err := env.StartBinary(context.Background(), binary, nil, args...)
	require.NoError(t, err)
	t.Cleanup(func() {
		proc.Kill() // the drain is the e2e suite's to prove; here it would only cost its 15 s
		if t.Failed() {
			t.Logf("svcguard's output:\n%s", proc.Output())
		}
	})
	return proc
}

// scrape reads the process's /metrics over HTTPS with token (empty: none),
// trusting the environment's CA.
func scrape(t *testing.T, proc *testenv.Process, token string) (int, string) {
	t.Helper()
	return scrapeTrusting(t, proc, token, env.CAData, "")
}

// scrapeTrusting scrapes trusting the PEM roots for serverName (empty: the
// address dialled), as Prometheus does with the ServiceMonitor's tlsConfig.
func scrapeTrusting(t *testing.T, proc *testenv.Process, token string, rootsPEM []byte, serverName string) (int, string) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootsPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
	req, err := http.NewRequest(http.MethodGet, strings.Replace(proc.MetricsURL, "http://", "https://", 1)+"/metrics", nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// TestEnvtestTheBinaryRunsAsTheDeploymentWithTheShippedRBAC proves the
// binary accepts the Deployment's flags and config, becomes ready and
// leader, runs both audits as the ServiceAccount with only the shipped
// RBAC (a missing verb shows as a forbidden request), serves every path the
// webhook configurations name, and serves /metrics over HTTPS only to a
// token allowed get on /metrics: the Prometheus account the monitoring
// component binds.
func TestEnvtestTheBinaryRunsAsTheDeploymentWithTheShippedRBAC(t *testing.T) {
	objs := installed(t)
	// A Pod admitted while no replica answered: the installed configurations
	// point at the Service, which has no endpoints here, and fail open. The
	// missed-injection audit needs Pods, Namespaces (opt-outs) and Events. It
	// is there before the replica starts, so that the audit's first pass finds
	// it, not one a minute (the shipped audit-interval) later.
	ctx := context.Background()
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "deploy-rbac"}}))
	missed := fixtures.Pod("deploy-rbac", "missed", fixtures.Container("app", "registry.example/app:1"))
	require.NoError(t, env.Client.Create(ctx, missed))
	proc := shippedBinary(t, objs, "--service-host=192.0.2.10")

	var binding rbacv1.ClusterRoleBinding
	require.NoError(t, testenv.Find(objs, "ClusterRoleBinding", "svcguard-metrics-reader", &binding))
	require.Len(t, binding.Subjects, 1)
	prometheus := env.ServiceAccountConfig(t, binding.Subjects[0].Namespace, binding.Subjects[0].Name)
	stranger := env.ServiceAccountConfig(t, "default", "not-a-scraper")

	var text string
	require.Eventually(t, func() bool {
		code, body := scrape(t, proc, prometheus.BearerToken)
		text = body
		leader, _ := testenv.SumSamples(t, body, "svcguard_leader")
		missing, _ := testenv.SumSamples(t, body, "svcguard_pods_missing_service_host")
		return code == http.StatusOK && leader == 1 && missing == 1
	}, 60*time.Second, 250*time.Millisecond, "the Prometheus account reads /metrics, and the replica leads and finds the missed Pod; last answer:\n%.2000s", text)
	require.Eventually(t, func() bool { return len(env.Events(t, missed.Namespace, missed.Name, servicehost.MissedReason)) == 1 },
		20*time.Second, 100*time.Millisecond, "the audit reports the missed Pod with an Event")
	code, _ := scrape(t, proc, "")
	assert.Equal(t, http.StatusUnauthorized, code, "no token, no metrics")
	code, _ = scrape(t, proc, stranger.BearerToken)
	assert.Equal(t, http.StatusForbidden, code, "a token without get on /metrics reads nothing")

	// Every path the configurations name is served by a webhook that judges
	// a request as the API server would send it.
	requests := map[string]admissionv1.AdmissionRequest{
		"pods":     component.CreateRequest("Pod", "pods", mustJSON(t, fixtures.Pod("deploy-test", "p", fixtures.Container("app", "registry.example/app:1")))),
		"services": component.CreateRequest("Service", "services", mustJSON(t, fixtures.Service("deploy-test", "s"))),
	}
	for _, hook := range webhookEntries(t, objs) {
		req, ok := requests[hook.resource]
		require.True(t, ok, "a request for %s", hook.resource)
		req.UID = k8stypes.UID("deploy-test-" + hook.name)
		answer, err := readiness.PostReview(context.Background(), env.WebhookClient(), "https://"+env.WebhookBindAddress+hook.path, &req, nil)
		require.NoError(t, err, "webhook %s: path %s must be served", hook.name, hook.path)
		assert.True(t, answer.Response.Allowed, "webhook %s allows a plain %s: %+v", hook.name, hook.resource, answer.Response.Result)
	}

	output := proc.Output()
	assert.NotContains(t, strings.ToLower(output), "forbidden", "the shipped RBAC grants every request svcguard makes")
}

func mustJSON(t *testing.T, obj client.Object) string {
	t.Helper()
	data, err := json.Marshal(obj)
	require.NoError(t, err)
	return string(data)
}

// hook is one webhook entry of the rendered configurations.
type hook struct{ name, path, resource string }

func webhookEntries(t *testing.T, objs []*unstructured.Unstructured) []hook {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, testenv.Find(objs, "MutatingWebhookConfiguration", "svcguard", &mwc))
	require.NoError(t, testenv.Find(objs, "ValidatingWebhookConfiguration", "svcguard", &vwc))
	var hooks []hook
	for _, w := range mwc.Webhooks {
		hooks = append(hooks, hook{w.Name, *w.ClientConfig.Service.Path, w.Rules[0].Resources[0]})
	}
	for _, w := range vwc.Webhooks {
		hooks = append(hooks, hook{w.Name, *w.ClientConfig.Service.Path, w.Rules[0].Resources[0]})
	}
	require.Len(t, hooks, 3, "service-host, node-port-guard, service-path-guard")
	return hooks
}

// TestEnvtestTheAPIServerCallsTheGuardOnlyForServicesWithNodePortsOutsideItsNamespace
// proves the shipped selectors and matchConditions with the API server
// evaluating them: ClusterIP Services and svcguard's own namespace never
// reach the guard, Services with nodePorts or pins do, and Pods in
// svcguard's namespace are not injected.
func TestEnvtestTheAPIServerCallsTheGuardOnlyForServicesWithNodePortsOutsideItsNamespace(t *testing.T) {
	objs := installed(t)
	shippedBinary(t, objs, "--service-host=192.0.2.10")
	ctx := context.Background()

	// Point the installed configurations at this process, as the Service and
	// cainjector do in a cluster.
	pointHere := func(cc *admissionregistrationv1.WebhookClientConfig) {
		url := "https://" + env.WebhookBindAddress + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &url, nil, env.CAData
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "svcguard"}, &mwc))
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "svcguard"}, &vwc))
	for i := range mwc.Webhooks {
		pointHere(&mwc.Webhooks[i].ClientConfig)
	}
	for i := range vwc.Webhooks {
		pointHere(&vwc.Webhooks[i].ClientConfig)
	}
	require.NoError(t, env.Client.Update(ctx, &mwc))
	require.NoError(t, env.Client.Update(ctx, &vwc))
	t.Cleanup(func() { restoreWebhookConfigurations(t) })

	// Counted where the API server counts its calls, before it answers the
	// client: svcguard's own counter may lag its answer.
	guardCalls := func() float64 {
		text, err := env.APIServerMetrics(ctx)
		require.NoError(t, err)
		n, _ := testenv.SumSamples(t, text, "apiserver_admission_webhook_request_total", "name", vwc.Webhooks[0].Name)
		return n
	}
	require.NoError(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "deploy-test"}}))
	// The configurations reach the API server's webhook cache within a moment:
	// wait for the first Service the guard must see.
	before := guardCalls()
	i := 0
	require.Eventually(t, func() bool {
		i++
		svc := fixtures.Service("deploy-test", fmt.Sprintf("warm-up-%d", i), fixtures.Type(corev1.ServiceTypeNodePort), fixtures.Port("http", 80, 0))
		require.NoError(t, env.Client.Create(ctx, svc))
		return guardCalls() > before
	}, 30*time.Second, 200*time.Millisecond, "the API server calls the guard for a NodePort Service")

	// calledFor proves whether one write reached the guard.
	calledFor := func(name string, write func() error, called bool) {
		t.Helper()
		before := guardCalls()
		require.NoError(t, write(), name)
		assert.Equal(t, called, guardCalls() > before, "%s: called the guard", name)
	}
	create := func(svc *corev1.Service) func() error { return func() error { return env.Client.Create(ctx, svc) } }
	// change updates Service deploy-test/name, judged by the object before and after.
	change := func(name string, edit func(*corev1.Service)) func() error {
		return func() error {
			var svc corev1.Service
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "deploy-test", Name: name}, &svc); err != nil {
				return err
			}
			edit(&svc)
			return env.Client.Update(ctx, &svc)
		}
	}
	clusterIP, nodePort, http := fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Type(corev1.ServiceTypeNodePort), fixtures.Port("http", 80, 0)
	calledFor("a ClusterIP Service", create(fixtures.Service("deploy-test", "cluster-ip", clusterIP, http)), false)
	calledFor("a NodePort Service", create(fixtures.Service("deploy-test", "node-port", nodePort, http)), true)
	calledFor("a LoadBalancer Service", create(fixtures.Service("deploy-test", "load-balancer", fixtures.Type(corev1.ServiceTypeLoadBalancer), http)), true)
	calledFor("a ClusterIP Service with a pin annotation", create(fixtures.Service("deploy-test", "pinned", clusterIP, http,
		fixtures.Annotation("svcguard.io/pinned-node-ports", "http=30001"))), true)
	calledFor("a NodePort Service in svcguard's namespace", create(fixtures.Service(namespace, "own", nodePort, http)), false)
	calledFor("a NodePort Service becoming ClusterIP (it had nodePorts)", change("node-port", func(s *corev1.Service) {
		s.Spec.Type, s.Spec.Ports[0].NodePort = corev1.ServiceTypeClusterIP, 0
	}), true)
	calledFor("a relabelled ClusterIP Service (it never had nodePorts)", change("cluster-ip", func(s *corev1.Service) {
		s.Labels = map[string]string{"team": "a"}
	}), false)

	pod := fixtures.Pod(namespace, "own-pod", fixtures.Container("app", "registry.example/app:1"))
	require.NoError(t, env.Client.Create(ctx, pod))
	assert.NotContains(t, fixtures.Envs(pod)["app"], corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "192.0.2.10"}, "svcguard's own Pods are never injected")
	other := fixtures.Pod("deploy-test", "pod", fixtures.Container("app", "registry.example/app:1"))
	require.NoError(t, env.Client.Create(ctx, other))
	assert.Contains(t, fixtures.Envs(other)["app"], corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: "192.0.2.10"}, "Pods elsewhere are injected")
}

// restoreWebhookConfigurations puts the configurations back as the install
// applies them, for the next test: re-created, as a test changed them with
// another field manager.
func restoreWebhookConfigurations(t *testing.T) {
	ctx := context.Background()
	var configs []*unstructured.Unstructured
	for _, o := range testenv.Rendered(t, "monitoring") {
		if strings.HasSuffix(o.GetKind(), "WebhookConfiguration") {
			configs = append(configs, o)
			assert.NoError(t, client.IgnoreNotFound(env.Client.Delete(ctx, o.DeepCopy())))
		}
	}
	assert.NoError(t, testenv.Apply(ctx, env.Config, configs, false))
}
