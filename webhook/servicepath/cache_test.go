package servicepath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/podwatch"
)

// store is an informer's indexer that a test fills by hand.
type store struct {
	cache.Indexer
	unsynced bool
}

func (s *store) GetIndexer() cache.Indexer { return s.Indexer }
func (s *store) HasSynced() bool           { return !s.unsynced }

func newStore(indexers cache.Indexers, transform func(any) (any, error), objs ...any) *store {
	s := &store{Indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, indexers)}
	for _, o := range objs {
		if transform != nil {
			o, _ = transform(o)
		}
		if err := s.Add(o); err != nil {
			panic(err)
		}
	}
	return s
}

// testCaches are Caches over stores holding pods, the kubernetes Service
// and its EndpointSlices, with --service-host resolved to resolved.
func testCaches(pods []*corev1.Pod, apiObjects ...any) *Caches {
	var svcs, slices []any
	for _, o := range apiObjects {
		if _, ok := o.(*corev1.Service); ok {
			svcs = append(svcs, o)
		} else {
			slices = append(slices, o)
		}
	}
	w := podwatch.NewStore()
	part, err := podwatch.Register(w, Name, pathPodOf)
	if err != nil {
		panic(err)
	}
	for _, p := range pods {
		if err := w.Add(p); err != nil {
			panic(err)
		}
	}
	return &Caches{
		pods:       part,
		podsSynced: part.Synced,
		apiService: newStore(cache.Indexers{}, nil, svcs...),
		apiSlices:  newStore(cache.Indexers{}, nil, slices...),
		now:        time.Now,
		log:        logr.Discard(),
	}
}

func kubernetesService(ips ...string) *corev1.Service {
	s := fixtures.Service("default", "kubernetes", fixtures.Type(corev1.ServiceTypeClusterIP))
	s.Spec.ClusterIP, s.Spec.ClusterIPs = ips[0], ips
	return s
}

func apiSlice(name string, t discoveryv1.AddressType, addrs ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, AddressType: t,
		Endpoints: []discoveryv1.Endpoint{{Addresses: addrs}}}
}

func TestCachesKnowEveryAPIServerAddressAndWhereItCameFrom(t *testing.T) {
	c := testCaches(nil, kubernetesService("10.96.0.1", "fd00::1"),
		apiSlice("kubernetes", discoveryv1.AddressTypeIPv4, "172.18.0.2", "172.18.0.3"),
		apiSlice("kubernetes-v6", discoveryv1.AddressTypeIPv6, "fd01::2"))
	c.serviceHost = "api.example.com"
	c.resolve = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.10")}, nil
	}
	got, synced := c.APIServerAddresses()
	assert.False(t, synced, "not synced before --service-host was resolved once")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.resolveServiceHost(ctx); close(done) }()
	require.Eventually(t, func() bool { got, synced = c.APIServerAddresses(); return synced }, 5*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	assert.Equal(t, map[netip.Addr]string{
		netip.MustParseAddr("10.96.0.1"):  "ClusterIP of default/kubernetes",
		netip.MustParseAddr("fd00::1"):    "ClusterIP of default/kubernetes",
		netip.MustParseAddr("172.18.0.2"): "endpoint of default/kubernetes",
		netip.MustParseAddr("172.18.0.3"): "endpoint of default/kubernetes",
		netip.MustParseAddr("fd01::2"):    "endpoint of default/kubernetes",
		netip.MustParseAddr("192.0.2.10"): "--service-host api.example.com",
	}, got)
}

func TestCachesKeepTheLastResolvedAddressesWhenALookupFails(t *testing.T) {
	c := testCaches(nil)
	c.serviceHost = "api.example.com"
	c.resolved.Store(&[]netip.Addr{netip.MustParseAddr("192.0.2.10")})
	c.resolve = func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("no such host") }
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.resolveServiceHost(ctx) // one failed lookup, then the context ends
	got, _ := c.APIServerAddresses()
	assert.Contains(t, got, netip.MustParseAddr("192.0.2.10"))
}

func TestCachesKeepRoundRobinAddressesForResolveMemory(t *testing.T) {
	c := testCaches(nil)
	c.serviceHost = "api.example.com"
	now := time.Now()
	c.now = func() time.Time { return now }
	var answer string
	c.resolve = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr(answer)}, nil
	}
	seen := map[netip.Addr]time.Time{}
	protected := func() []string {
		got, _ := c.APIServerAddresses()
		var out []string
		for a := range got {
			out = append(out, a.String())
		}
		return out
	}

	answer = "192.0.2.1"
	c.resolveOnce(context.Background(), seen)
	now, answer = now.Add(ResolveInterval), "192.0.2.2"
	c.resolveOnce(context.Background(), seen)
	assert.ElementsMatch(t, []string{"192.0.2.1", "192.0.2.2"}, protected(), "an answer holding a subset does not unprotect the rest")

	now = now.Add(ResolveMemory)
	c.resolveOnce(context.Background(), seen)
	assert.ElementsMatch(t, []string{"192.0.2.2"}, protected(), "an address no answer held for ResolveMemory is let go")
}

func TestCachesTakeAnIPServiceHostAsIs(t *testing.T) {
	c := testCaches(nil)
	c.serviceHost = "192.0.2.10"
	c.resolveServiceHost(context.Background())
	got, synced := c.APIServerAddresses()
	assert.True(t, synced)
	assert.Equal(t, "--service-host", got[netip.MustParseAddr("192.0.2.10")])
}

func TestCachesSelectPodsOfTheNamespaceThatRunWithTheirNamedPorts(t *testing.T) {
	web := func(name string, opts ...fixtures.PodOption) *corev1.Pod {
		return fixtures.Pod("shop", name, append([]fixtures.PodOption{fixtures.Label("app", "web"), fixtures.Container("app", "nginx")}, opts...)...)
	}
	named := func(name string, protocol corev1.Protocol) fixtures.PodFunc {
		return func(p *corev1.Pod) {
			c := &p.Spec.Containers[0]
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: name, ContainerPort: 8080, Protocol: protocol})
		}
	}
	sidecarPort := fixtures.PodFunc(func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{
			{Name: "init", Ports: []corev1.ContainerPort{{Name: "init-port", ContainerPort: 1}}},
			{Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways), Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}},
		}
	})
	done := fixtures.PodFunc(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })
	c := testCaches([]*corev1.Pod{
		web("a", named("http", "")), web("b", named("dns", corev1.ProtocolUDP), sidecarPort), web("ended", done),
		fixtures.Pod("shop", "db", fixtures.Label("app", "db")), fixtures.Pod("other", "web-elsewhere", fixtures.Label("app", "web")),
	})
	var got []Pod
	assert.True(t, c.SelectedPods("shop", labels.SelectorFromSet(map[string]string{"app": "web"}), func(p Pod) { got = append(got, p) }))
	assert.ElementsMatch(t, []Pod{
		{Name: "a", Ports: PortNamesOf(NamedPort{Name: "http", Protocol: corev1.ProtocolTCP})},
		{Name: "b", Ports: PortNamesOf(NamedPort{Name: "dns", Protocol: corev1.ProtocolUDP}, NamedPort{Name: "proxy", Protocol: corev1.ProtocolTCP})},
	}, got, "ended Pods, other namespaces and plain init containers' ports are left out; native sidecars' ports count")

	huge := web("huge", named("http", ""))
	huge.Labels["padding"] = strings.Repeat("x", MaxLabelBytes)
	got = nil
	c = testCaches([]*corev1.Pod{huge})
	assert.True(t, c.SelectedPods("shop", labels.Everything(), func(p Pod) { got = append(got, p) }))
	assert.Empty(t, got, "a Pod whose labels exceed MaxLabelBytes is not kept, so no tenant can grow every replica's cache at will")
	assert.Nil(t, pathPodOf(huge), "nothing of it is kept")

	manyPorts := web("many-ports")
	for i := range 200 {
		manyPorts.Spec.Containers[0].Ports = append(manyPorts.Spec.Containers[0].Ports, corev1.ContainerPort{Name: fmt.Sprintf("port-%d", i), ContainerPort: int32(1000 + i)})
	}
	got = nil
	c = testCaches([]*corev1.Pod{manyPorts})
	assert.True(t, c.SelectedPods("shop", labels.Everything(), func(p Pod) { got = append(got, p) }))
	assert.Empty(t, got, "a Pod whose named ports exceed MaxPortNameBytes is not kept either")

	c.podsSynced = func() bool { return false }
	assert.False(t, c.SelectedPods("shop", labels.Everything(), func(Pod) { t.Fatal("called before the cache synced") }))
}

// syntheticPod is Pod i of a cluster of Deployments of 100 Pods each (ten
// Deployments to a namespace): labels app, pod-template-hash and team,
// decoded afresh as a watch decodes them, and one named port.
func syntheticPod(i int) *corev1.Pod {
	app := fmt.Sprintf("app-%d", i/100)
	p := fixtures.Pod(fmt.Sprintf("team-%d", i/1000), fmt.Sprintf("%s-7f9c8d6b5-x%05d", app, i),
		fixtures.Label("app", app), fixtures.Label("pod-template-hash", fmt.Sprintf("%x", 0x7f9c8d6b5+i/100)),
		fixtures.Label("team", fmt.Sprintf("team-%d", i/1000)), fixtures.Container("app", "registry.example/app:1"))
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: fmt.Sprintf("http-%d", i%2), ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
	return p
}

// BenchmarkJudgeTargetPortWithCaches measures one decision on a Service
// with a targetPort name that selects 100 Pods, against a cache of 100k
// Pods: it reads one namespace (1,000 Pods), never the cluster.
func BenchmarkJudgeTargetPortWithCaches(b *testing.B) {
	pods := make([]*corev1.Pod, 100_000)
	for p := range pods {
		pods[p] = syntheticPod(p)
	}
	c := testCaches(pods)
	svc := fixtures.Service("team-42", "app-4242", fixtures.Type(corev1.ServiceTypeClusterIP),
		fixtures.ServiceFunc(func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "app-420"} }),
		namedPort("http", "http-0", ""))
	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if v := (&Guard{}).Judge(Review{New: svc, View: c}); len(v.Warnings) != 1 {
			b.Fatalf("want the warning for the 50 Pods without http-0, got %q", v.Warnings)
		}
	}
}
