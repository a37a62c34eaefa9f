package servicepath

import (
	"testing"

	"github.com/stretchr/testify/assert"
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
	a := &Audit{caches: caches,
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
