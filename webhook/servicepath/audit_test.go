package servicepath

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

func endpointSlice(ns, name, service string, ports int, endpoints int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: service}}}
	for range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{})
	}
	for range endpoints {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0.1"}})
	}
	return s
}

func TestAuditFindsServicesWhosePodsLackTheirTargetPortNameOrWhoseSlicesHaveNoPorts(t *testing.T) {
	podWith := func(ns, name, app string, port string) *corev1.Pod {
		p := fixtures.Pod(ns, name, fixtures.Label("app", app), fixtures.Container("app", "nginx"))
		if port != "" {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: port, ContainerPort: 8080}}
		}
		return p
	}
	caches := testCaches([]*corev1.Pod{
		podWith("shop", "web-v1-a", "web", "http"), podWith("shop", "web-v2-a", "web", ""),
		podWith("shop", "api-a", "api", "http"),
	})
	services := []any{
		fixtures.Service("shop", "web", fixtures.Type(corev1.ServiceTypeClusterIP), selector("web"), namedPort("web", "http", "")),
		fixtures.Service("shop", "api", fixtures.Type(corev1.ServiceTypeClusterIP), selector("api"), namedPort("api", "http", "")),
		fixtures.Service("shop", "numeric", fixtures.Type(corev1.ServiceTypeClusterIP), selector("web"), fixtures.Port("web", 80, 0)),
		fixtures.Service("shop", "headless", fixtures.Type(corev1.ServiceTypeClusterIP), selector("web")),
	}
	slices := []any{
		endpointSlice("shop", "web-1", "web", 1, 1), endpointSlice("shop", "web-2", "web", 0, 1),
		endpointSlice("shop", "api-1", "api", 0, 1),           // the controller's view can lag or differ: reported too
		endpointSlice("shop", "headless-1", "headless", 0, 2), // no targetPort name: ports null is its normal state
		endpointSlice("shop", "api-empty", "api", 0, 0),
	}
	a := &Audit{guard: &Guard{}, caches: caches,
		services: newStore(cache.Indexers{}, serviceTransform, services...),
		slices:   newStore(sliceIndexers(), sliceTransform, slices...)}

	got := a.Findings()
	assert.Equal(t, []Finding{
		{Service: "shop/api", SlicesWithoutPorts: 1},
		{Service: "shop/web", Missing: []Missing{{Port: httpTCP, Lacking: 1, Selected: 2, Example: "web-v2-a", Synced: true}}, SlicesWithoutPorts: 1},
	}, got)
	assert.Equal(t, `targetPort "http" is missing on 1 of 2 selected Pods (e.g. web-v2-a); 1 of its EndpointSlices list endpoints without ports`,
		got[1].Problem())
}

func TestAuditFindsServicesThatClaimProtectedAddresses(t *testing.T) {
	caches := testCaches(nil, kubernetesService("10.96.0.1"))
	caches.resolved.Store(&[]netip.Addr{})
	lb := fixtures.Service("shop", "lb", fixtures.Type(corev1.ServiceTypeLoadBalancer), fixtures.ServiceFunc(func(s *corev1.Service) {
		s.Spec.ExternalIPs = []string{"203.0.113.1", "10.96.0.1"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.5"}}
	}))
	fine := fixtures.Service("shop", "fine", fixtures.Type(corev1.ServiceTypeLoadBalancer), fixtures.ServiceFunc(func(s *corev1.Service) {
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.2"}}
	}))
	a := &Audit{guard: &Guard{Protected: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, caches: caches,
		services: newStore(cache.Indexers{}, serviceTransform, lb, fine),
		slices:   newStore(sliceIndexers(), sliceTransform)}
	got := a.Findings()
	require.Len(t, got, 1)
	assert.Equal(t, "shop/lb", got[0].Service)
	assert.Equal(t, []string{
		"spec.externalIPs[1] 10.96.0.1: it is an address of the API server (ClusterIP of default/kubernetes); node proxies would capture the cluster's traffic to the API server",
		"status.loadBalancer.ingress[0].ip 10.0.0.5: it lies in --protected-cidrs 10.0.0.0/24 (node and control-plane addresses); node proxies would capture traffic meant for them",
	}, got[0].Claims)
	assert.Empty(t, got[0].Problem(), "no targetPort problem")
}

func TestAuditEventKeysIgnoreCountsAndNotesStayUnderTheEventLimit(t *testing.T) {
	f := Finding{Service: "a/b", Missing: []Missing{{Port: httpTCP, Lacking: 1, Selected: 2, Example: "x", Synced: true}}}
	scaled := f
	scaled.Missing = []Missing{{Port: httpTCP, Lacking: 7, Selected: 9, Example: "y", Synced: true}}
	assert.Equal(t, f.key(MissingNamedPortReason), scaled.key(MissingNamedPortReason), "scaling the Service makes no new Event")
	other := f
	other.Missing = []Missing{{Port: NamedPort{Name: "grpc", Protocol: corev1.ProtocolTCP}, Lacking: 1, Selected: 2, Synced: true}}
	assert.NotEqual(t, f.key(MissingNamedPortReason), other.key(MissingNamedPortReason), "another missing name is another problem")

	long := cutNote(strings.Repeat("é", 2000))
	assert.LessOrEqual(t, len(long), maxNote)
	assert.True(t, utf8.ValidString(long))
}
