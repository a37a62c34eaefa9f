package servicepath_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicepath"
)

const webhookName = "service-path-guard.svcguard.io"

// apiServerCount sums the API server's counter name for the guard's entry.
func apiServerCount(t *testing.T, name string) float64 {
	t.Helper()
	text, err := suite.Env.APIServerMetrics(context.Background())
	require.NoError(t, err)
	n, _ := testenv.SumSamples(t, text, name, "name", webhookName)
	return n
}

// guardCalls is how many times the API server has called the guard.
func guardCalls(t *testing.T) float64 {
	t.Helper()
	return apiServerCount(t, "apiserver_admission_webhook_request_total")
}

// createDenied creates svc until the guard's full answer (caches synced)
// comes, and returns the error the client saw.
func createDenied(t *testing.T, c kubernetes.Interface, svc *corev1.Service, want string) {
	t.Helper()
	var last error
	require.Eventually(t, func() bool {
		_, last = c.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last != nil && strings.Contains(last.Error(), want)
	}, 20*time.Second, 100*time.Millisecond, "expected a denial containing %q", want)

	_, err := c.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{})
	require.Error(t, err, "nothing is stored")
	assert.Contains(t, err.Error(), want)
}

// kubernetesClusterIP is the ClusterIP of default/kubernetes.
func kubernetesClusterIP(t *testing.T) string {
	t.Helper()
	var svc corev1.Service
	require.NoError(t, suite.Env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "kubernetes"}, &svc))
	return svc.Spec.ClusterIP
}

// apiServerEndpoint is the first address in the EndpointSlices of default/kubernetes.
func apiServerEndpoint(t *testing.T) string {
	t.Helper()
	var slices discoveryv1.EndpointSliceList
	require.Eventually(t, func() bool {
		require.NoError(t, suite.Env.Client.List(context.Background(), &slices, client.InNamespace("default"),
			client.MatchingLabels{discoveryv1.LabelServiceName: "kubernetes"}))
		return len(slices.Items) > 0 && len(slices.Items[0].Endpoints) > 0
	}, 20*time.Second, 100*time.Millisecond, "the API server writes its own EndpointSlice")
	return slices.Items[0].Endpoints[0].Addresses[0]
}

func loadBalancer(ns, name string, opts ...fixtures.ServiceOption) *corev1.Service {
	return fixtures.Service(ns, name, append([]fixtures.ServiceOption{fixtures.Type(corev1.ServiceTypeLoadBalancer),
		fixtures.Port("https", 443, 0)}, opts...)...)
}

func TestEnvtestALoadBalancerClaimingTheKubernetesClusterIPAsExternalIPIsDenied(t *testing.T) {
	c, _ := suite.Env.ClientWithWarnings(t)
	ns := suite.Env.Namespace(t, nil)
	ip := kubernetesClusterIP(t)
	svc := loadBalancer(ns, "hijack", fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.7", ip} }))
	createDenied(t, c, svc, `admission webhook "`+webhookName+`" denied the request: `+ns+`/hijack: spec.externalIPs[1] `+ip+
		` denied: it is an address of the API server (ClusterIP of default/kubernetes)`)

	t.Run("--service-host and --protected-cidrs are protected too", func(t *testing.T) {
		createDenied(t, c, loadBalancer(ns, "host", fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.LoadBalancerIP = serviceHost })),
			`spec.loadBalancerIP `+serviceHost+` denied: it is an address of the API server (--service-host)`)
		createDenied(t, c, loadBalancer(ns, "node", fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"198.51.100.20"} })),
			`spec.externalIPs[0] 198.51.100.20 denied: it lies in --protected-cidrs `+protectedCIDR)
	})
	t.Run("an address nobody protects is allowed", func(t *testing.T) {
		_, err := c.CoreV1().Services(ns).Create(context.Background(),
			loadBalancer(ns, "fine", fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"203.0.113.7"} })), metav1.CreateOptions{})
		require.NoError(t, err)
	})
}

func TestEnvtestAStatusUpdateSettingAnAPIServerEndpointAsIngressIPIsDenied(t *testing.T) {
	ctx := context.Background()
	c, _ := suite.Env.ClientWithWarnings(t)
	ns := suite.Env.Namespace(t, nil)
	endpoint := apiServerEndpoint(t)
	_, err := c.CoreV1().Services(ns).Create(ctx, loadBalancer(ns, "lb"), metav1.CreateOptions{})
	require.NoError(t, err)

	setIngress := func(ip string, dryRun bool) error {
		svc, err := c.CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
		require.NoError(t, err)
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)}}
		opts := metav1.UpdateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		_, err = c.CoreV1().Services(ns).UpdateStatus(ctx, svc, opts)
		return err
	}
	want := `admission webhook "` + webhookName + `" denied the request: ` + ns + `/lb: status.loadBalancer.ingress[0].ip ` + endpoint +
		` denied: it is an address of the API server (endpoint of default/kubernetes)`
	require.Eventually(t, func() bool {
		err := setIngress(endpoint, true)
		return err != nil && strings.Contains(err.Error(), want)
	}, 20*time.Second, 100*time.Millisecond, "expected a denial containing %q", want)
	err = setIngress(endpoint, false)
	require.Error(t, err)
	assert.Contains(t, err.Error(), want)

	require.NoError(t, setIngress("203.0.113.8", false), "a load balancer's own address is allowed")
	stored, err := c.CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "203.0.113.8", stored.Status.LoadBalancer.Ingress[0].IP)
}

// webPod is a Pod of Deployment version (created directly, as its
// ReplicaSet would), labelled app=web, with port names ports.
func webPod(ns, name, version string, ports ...string) *corev1.Pod {
	p := fixtures.Pod(ns, name, fixtures.Label("app", "web"), fixtures.Label("version", version), fixtures.Container("app", "nginx"))
	for i, port := range ports {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: port, ContainerPort: int32(8080 + i)})
	}
	return p
}

func namedTargetPortService(ns, name, target string) *corev1.Service {
	return fixtures.Service(ns, name, fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.ServiceFunc(func(s *corev1.Service) {
		s.Spec.Selector = map[string]string{"app": "web"}
		s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString(target)}}
	}))
}

func TestEnvtestANamedTargetPortSomeSelectedPodsLackWarnsTheClient(t *testing.T) {
	ctx := context.Background()
	c, warnings := suite.Env.ClientWithWarnings(t)
	ns := suite.Env.Namespace(t, nil)
	for _, p := range []*corev1.Pod{
		webPod(ns, "web-v1-7d9f-a", "v1", "http"), webPod(ns, "web-v1-7d9f-b", "v1", "http"), webPod(ns, "web-v1-7d9f-c", "v1", "http"),
		webPod(ns, "web-v2-5c4b-a", "v2"), webPod(ns, "web-v2-5c4b-b", "v2", "metrics"),
	} {
		require.NoError(t, suite.Env.Client.Create(ctx, p))
	}
	want := `svcguard: targetPort "http" is missing on 2 of 5 selected Pods (e.g. web-v2-5c4b-a): their EndpointSlices get no ports`
	svc := namedTargetPortService(ns, "web", "http")
	require.Eventually(t, func() bool {
		warnings.Take()
		_, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		require.NoError(t, err, "a targetPort name never denies")
		got := warnings.Take()
		return len(got) == 1 && got[0] == want
	}, 20*time.Second, 100*time.Millisecond, "the guard's Pod cache sees the 5 Pods")
	_, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{want}, warnings.Take(), "the client (kubectl prints these) gets the warning")

	t.Run("a Service whose Pods all have the name gets no warning", func(t *testing.T) {
		_, err := c.CoreV1().Services(ns).Create(ctx, namedTargetPortService(ns, "v1-only", "http"), metav1.CreateOptions{})
		require.NoError(t, err)
		// The v2 Pods are selected too; a Service selecting only v1 is the fix.
		warnings.Take()
		fixed := namedTargetPortService(ns, "fixed", "http")
		fixed.Spec.Selector["version"] = "v1"
		_, err = c.CoreV1().Services(ns).Create(ctx, fixed, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.Empty(t, warnings.Take())
	})
}

func TestEnvtestServicesThatClaimNothingNeverReachTheGuard(t *testing.T) {
	ctx := context.Background()
	ns := suite.Env.Namespace(t, nil)
	before := guardCalls(t)
	plain := fixtures.Service(ns, "plain", fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("http", 80, 0))
	require.NoError(t, suite.Env.Client.Create(ctx, plain))
	lb := loadBalancer(ns, "lb")
	require.NoError(t, suite.Env.Client.Create(ctx, lb))
	suite.Env.Edit(t, client.ObjectKey{Namespace: ns, Name: "plain"}, plain, func() { plain.Labels = map[string]string{"team": "a"} })
	lb.Status.Conditions = []metav1.Condition{{Type: "Provisioning", Status: metav1.ConditionTrue, Reason: "Waiting", LastTransitionTime: metav1.Now()}}
	require.NoError(t, suite.Env.Client.Status().Update(ctx, lb), "a status update without ingress IPs")
	assert.Equal(t, before, guardCalls(t), "the shipped matchConditions skip Services without addresses or targetPort names, and status updates without ingress IPs")

	named := namedTargetPortService(ns, "named", "http")
	require.NoError(t, suite.Env.Client.Create(ctx, named))
	assert.Equal(t, before+1, guardCalls(t), "a targetPort name is judged")

	// An expression that errs skips the webhook silently under failurePolicy Ignore: none may.
	assert.Zero(t, apiServerCount(t, "apiserver_admission_match_condition_evaluation_errors_total"),
		"the shipped matchConditions never fail to evaluate")
}

func TestEnvtestAuditReportsServicesWhosePodsLackTheirTargetPortName(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := suite.Env.Namespace(t, nil)
	for _, p := range []*corev1.Pod{webPod(ns, "web-v1-a", "v1", "http"), webPod(ns, "web-v2-a", "v2")} {
		require.NoError(t, suite.Env.Client.Create(ctx, p))
	}
	require.NoError(t, suite.Env.Client.Create(ctx, namedTargetPortService(ns, "web", "http")))
	// An EndpointSlice as the controller writes it for the v2 Pod: an endpoint, no ports. (envtest runs no
	// controller manager; the e2e suite has one.)
	api := namedTargetPortService(ns, "api", "http")
	api.Spec.Selector = map[string]string{"app": "api"}
	require.NoError(t, suite.Env.Client.Create(ctx, api))
	require.NoError(t, suite.Env.Client.Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "api-x", Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.9"}}},
	}))

	// A Service that claims the kubernetes ClusterIP, stored where the guard is never called (svcguard's own
	// namespace), as one from before svcguard would be.
	if err := suite.Env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "svcguard"}}); err != nil {
		require.True(t, apierrors.IsAlreadyExists(err), "%v", err)
	}
	legacy := loadBalancer("svcguard", "legacy", fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{kubernetesClusterIP(t)} }))
	require.NoError(t, suite.Env.Client.Create(ctx, legacy))
	t.Cleanup(func() { _ = suite.Env.Client.Delete(context.Background(), legacy) })

	// The audit runs as the Deployment does: with exactly the RBAC the manifests ship.
	cfg := suite.Env.ShippedRBACConfig(t, "svcguard-service-path-audit", testenv.DefaultOverlay, "svcguard")
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	pods := podwatch.New(cs)
	caches, err := servicepath.NewCaches(cs, pods, serviceHost, logr.Discard())
	require.NoError(t, err)
	go func() { _ = pods.Start(ctx) }()
	go func() { _ = caches.Start(ctx) }()
	guard, err := servicepath.NewOptions().Guard()
	require.NoError(t, err)
	audit := servicepath.NewAudit(&guard, caches, cs, testenv.Recorder(t, ctx, cfg), time.Hour, logr.Discard())
	go func() { _ = audit.Start(ctx) }()

	var events []string
	require.Eventually(t, func() bool {
		events = nil
		for _, name := range []string{"web", "api"} {
			for _, e := range suite.Env.Events(t, ns, name, servicepath.MissingNamedPortReason) {
				events = append(events, name+": "+e.Note)
			}
		}
		return len(events) == 2
	}, 20*time.Second, 100*time.Millisecond, "one %s Event on each Service", servicepath.MissingNamedPortReason)
	assert.ElementsMatch(t, []string{
		`web: targetPort "http" is missing on 1 of 2 selected Pods (e.g. web-v2-a): proxies get no port for those Pods and may dial port 0; ` +
			`name the port in every selected Pod, or use a port number`,
		`api: 1 of its EndpointSlices list endpoints without ports: proxies get no port for those Pods and may dial port 0; ` +
			`name the port in every selected Pod, or use a port number`,
	}, events)
	assert.Equal(t, float64(2), testenv.GaugeValue(t, "svcguard_services_missing_named_port"))

	var claims []eventsv1.Event
	require.Eventually(t, func() bool {
		claims = suite.Env.Events(t, "svcguard", "legacy", servicepath.ProtectedAddressReason)
		return len(claims) == 1
	}, 20*time.Second, 100*time.Millisecond, "one %s Event on the Service that claims the ClusterIP", servicepath.ProtectedAddressReason)
	assert.Contains(t, claims[0].Note, "spec.externalIPs[0] "+kubernetesClusterIP(t)+": it is an address of the API server (ClusterIP of default/kubernetes)")
	assert.Equal(t, float64(1), testenv.GaugeValue(t, "svcguard_services_claiming_protected_addresses"))
	require.NoError(t, suite.Env.Client.Delete(ctx, legacy))
	require.Eventually(t, func() bool {
		return testenv.GaugeValue(t, "svcguard_services_claiming_protected_addresses") == 0
	}, 20*time.Second, 100*time.Millisecond, "a removed claim leaves the gauge")

	// The Pod first: the audit passes on Service changes (and every interval), not on Pod changes.
	require.NoError(t, suite.Env.Client.Delete(ctx, webPod(ns, "web-v2-a", "v2")))
	require.NoError(t, suite.Env.Client.Delete(ctx, api))
	require.Eventually(t, func() bool {
		return testenv.GaugeValue(t, "svcguard_services_missing_named_port") == 0
	}, 20*time.Second, 100*time.Millisecond, "fixed Services leave the gauge")
}
