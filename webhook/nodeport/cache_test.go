package nodeport

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/benchtest"
	"github.com/svcguard/svcguard/pkg/podwatch"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

// indexerView is a View over a plain Pod watch and a plain Service indexer
// filled through the real transforms: what the informers hold, without an
// API server.
type indexerView struct {
	pods     *podwatch.Watch
	services cache.Indexer
	c        *Caches
	tr       *transforms
}

func newIndexerView(t testing.TB) *indexerView {
	v := &indexerView{
		pods:     podwatch.NewStore(),
		services: cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, serviceIndexers()),
		tr:       &transforms{nodePorts: Range{30000, 32767}},
	}
	c, err := newCaches(v.pods, fakeInformer{v.services}, v.tr.nodePorts)
	require.NoError(t, err)
	v.c = c
	return v
}

func (v *indexerView) caches() *Caches {
	return v.c
}

// addPod stores pod as the shared Pod watch would.
func (v *indexerView) addPod(t testing.TB, pod *corev1.Pod) {
	require.NoError(t, v.pods.Add(pod))
}

// addService stores svc as the Service informer would.
func (v *indexerView) addService(t testing.TB, svc *corev1.Service) {
	kept, err := v.tr.service(svc)
	require.NoError(t, err)
	require.NoError(t, v.services.Add(kept))
}

// fakeInformer gives Caches an indexer that is already synced.
type fakeInformer struct{ cache.Indexer }

func (f fakeInformer) GetIndexer() cache.Indexer { return f.Indexer }
func (f fakeInformer) HasSynced() bool           { return true }

// hostPortPod is fixtures.DeploymentPod(i) with a second container port
// bound on the node at hostPort, unless hostPort is 0.
func hostPortPod(i int, hostPort int32) *corev1.Pod {
	p := fixtures.DeploymentPod(i)
	if hostPort != 0 {
		fixtures.ContainerPort(9100, hostPort)(p)
	}
	return p
}

// syntheticService is the i-th of many Services: two ports, one with a
// nodePort, and 1% pinned by annotation.
func syntheticService(i int) *corev1.Service {
	nodePort := int32(30000 + i%2700)
	opts := []fixtures.ServiceOption{fixtures.Port("http", 80, nodePort), fixtures.Port("https", 443, 0)}
	if i%100 == 0 {
		opts = append(opts, fixtures.Annotation(PinAnnotation, fmt.Sprintf("http=%d", nodePort)))
	}
	return fixtures.Service(fmt.Sprintf("team-%d", i%200), fmt.Sprintf("svc-%d", i), opts...)
}

func TestCachesKeepOnlyWhatTheRulesNeedAndIndexIt(t *testing.T) {
	v := newIndexerView(t)
	v.addPod(t, hostPortPod(1, 31000))
	v.addPod(t, hostPortPod(2, 8080)) // a hostPort outside the range is not kept
	v.addPod(t, hostPortPod(3, 0))
	pinned := fixtures.Service("b", "db", fixtures.Annotation(PinAnnotation, "pg=31500"), fixtures.Port("pg", 5432, 31500))
	v.addService(t, pinned)
	c := v.caches()

	assert.Equal(t, []string{"team-1/app-1-7f9c8d6b5-x00001"}, c.HostPortPods(31000, corev1.ProtocolTCP))
	assert.Empty(t, c.HostPortPods(31000, corev1.ProtocolUDP), "another protocol does not collide")
	assert.Empty(t, c.HostPortPods(8080, corev1.ProtocolTCP), "hostPorts outside the range are not cached")
	assert.Equal(t, []PortRef{{Namespace: "b", Name: "db", Port: "pg"}}, c.AnnotationPins(31500))
	assert.Equal(t, []PortRef{{Namespace: "b", Name: "db", Port: "pg"}}, c.Holders(31500), "the index knows who holds a nodePort")
	v.addService(t, fixtures.Service("c", "unnamed", fixtures.Port("", 8080, 31600)))
	assert.Equal(t, []PortRef{{Namespace: "c", Name: "unnamed", Port: "8080"}}, c.Holders(31600), "an unnamed port is named by its number")
	assert.Empty(t, c.Holders(31501))
	v.addService(t, fixtures.Service("d", "dangling", fixtures.Annotation(PinAnnotation, "metrics=31700,http=31701"), fixtures.Port("http", 80, 31000)))
	assert.Empty(t, c.AnnotationPins(31700), "a pin on a port the Service lacks pins nothing")
	assert.Equal(t, []PortRef{{Namespace: "d", Name: "dangling", Port: "http"}}, c.AnnotationPins(31701))

	// A pin on a Service that allocates no nodePorts reserves nothing: a
	// tenant's ClusterIP Service must not fence nodePorts off for free (it
	// is judged as a claim when the Service starts allocating them).
	v.addService(t, fixtures.Service("tenant", "squatter", fixtures.Type(corev1.ServiceTypeClusterIP),
		fixtures.Annotation(PinAnnotation, "http=31800"), fixtures.Port("http", 80, 0)))
	assert.Empty(t, c.AnnotationPins(31800), "a ClusterIP Service's pin is dormant")
	noAlloc := fixtures.Service("tenant", "lb", fixtures.Type(corev1.ServiceTypeLoadBalancer),
		fixtures.Annotation(PinAnnotation, "http=31801"), fixtures.Port("http", 80, 0))
	noAlloc.Spec.AllocateLoadBalancerNodePorts = new(false)
	v.addService(t, noAlloc)
	assert.Empty(t, c.AnnotationPins(31801), "a LoadBalancer Service that allocates no nodePorts pins nothing")
	v.addService(t, fixtures.Service("tenant", "lb2", fixtures.Type(corev1.ServiceTypeLoadBalancer),
		fixtures.Annotation(PinAnnotation, "http=31802"), fixtures.Port("http", 80, 31802)))
	assert.Equal(t, []PortRef{{Namespace: "tenant", Name: "lb2", Port: "http"}}, c.AnnotationPins(31802), "a LoadBalancer's nodePorts are pinned")

	kept := v.tr.pod(hostPortPod(3, 0))
	assert.Nil(t, kept, "a Pod without hostPorts in the range keeps nothing")
	assert.Equal(t, &hostPorts{ports: []protoPort{{corev1.ProtocolTCP, 31000}}}, v.tr.pod(hostPortPod(1, 31000)), "a Pod keeps its hostPorts in the range and nothing else")

	// The guard judges through the cache view exactly as through any View.
	v2 := testGuard().Judge(Review{New: fixtures.Service("x", "y", fixtures.Port("p", 1, 31500)), View: c})
	assert.Contains(t, v2.Denials[0], "31500 is pinned to b/db:pg")

	require.NoError(t, v.pods.Delete(hostPortPod(1, 31000)))
	assert.Empty(t, c.HostPortPods(31000, corev1.ProtocolTCP), "a deleted Pod leaves the index")
}

// BenchmarkServiceCacheMemory feeds 10k Services (1% pinned by annotation)
// through the real transform and indexer, and reports the heap they hold.
// (What the guard keeps of Pods is in cmd/svcguard's BenchmarkLeaderPodMemory,
// with every part of the shared Pod watch.)
func BenchmarkServiceCacheMemory(b *testing.B) {
	const services = 10_000
	for b.Loop() {
		before := benchtest.HeapAfterGC()
		v := newIndexerView(b)
		for s := 0; s < services; s++ {
			v.addService(b, syntheticService(s))
		}
		held := benchtest.HeapAfterGC() - before
		b.ReportMetric(float64(held)/services, "B/service")
		runtime.KeepAlive(v)
	}
}

// BenchmarkJudgeWithCaches measures one decision against caches of 100k
// Pods and 10k Services: it must not grow with the cluster.
func BenchmarkJudgeWithCaches(b *testing.B) {
	v := newIndexerView(b)
	for p := 0; p < 100_000; p++ {
		v.addPod(b, hostPortPod(p, int32(30000+p%2700)))
	}
	for s := 0; s < 10_000; s++ {
		v.addService(b, syntheticService(s))
	}
	g, c := testGuard(), v.caches()
	old := gw(fixtures.Port("tcp", 443, 30445))
	for _, tc := range []struct {
		name string
		upd  *corev1.Service
	}{
		// The common case: a change that keeps every nodePort (a label, a selector).
		{"nodePorts-kept", gw(fixtures.Port("tcp", 443, 30445), fixtures.Label("rev", "2"))},
		// The incident: a pinned nodePort moved, denied with its reasons.
		{"pinned-move-denied", gw(fixtures.Port("tcp", 443, 30194))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				g.Judge(Review{Old: old, New: tc.upd, View: c})
			}
		})
	}
}

// BenchmarkHandlerWithCaches is one Service UPDATE through the handler
// (decode old and new, judge, respond) for Services with 1 and 10 ports,
// against caches of 100k Pods and 10k Services.
func BenchmarkHandlerWithCaches(b *testing.B) {
	v := newIndexerView(b)
	for p := 0; p < 100_000; p++ {
		v.addPod(b, hostPortPod(p, int32(30000+p%2700)))
	}
	for s := 0; s < 10_000; s++ {
		v.addService(b, syntheticService(s))
	}
	h := &Handler{Guard: testGuard(), View: v.caches(), Decoder: admissiontest.Decoder}
	for _, ports := range []int{1, 10} {
		var opts []fixtures.ServiceOption
		for i := range ports {
			opts = append(opts, fixtures.Port(fmt.Sprintf("p%d", i), int32(8000+i), int32(31000+i)))
		}
		old := fixtures.Service("team-1", "web", opts...)
		upd := old.DeepCopy()
		upd.Labels = map[string]string{"rev": "2"}
		req := serviceRequest(admissionv1.Update, old, upd).Build(b)
		b.Run(fmt.Sprintf("ports=%d", ports), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if resp := h.Handle(context.Background(), req); !resp.Allowed {
					b.Fatal(admissiontest.Message(resp))
				}
			}
		})
	}
}

// TestJudgingAChangeThatKeepsEveryNodePortAllocatesNothing: the common
// Service change (a label, a selector) is judged without a single
// allocation once the request is decoded; only a denial or a warning builds
// its message.
func TestJudgingAChangeThatKeepsEveryNodePortAllocatesNothing(t *testing.T) {
	v := newIndexerView(t)
	for p := range 1000 {
		v.addPod(t, hostPortPod(p, int32(30000+p%2700)))
	}
	for s := range 100 {
		v.addService(t, syntheticService(s))
	}
	g, c := testGuard(), v.caches()
	old, upd := gw(fixtures.Port("tcp", 443, 30445)), gw(fixtures.Port("tcp", 443, 30445), fixtures.Label("rev", "2"))
	require.Empty(t, g.Judge(Review{Old: old, New: upd, View: c}).Denials)
	allocs := testing.AllocsPerRun(100, func() { g.Judge(Review{Old: old, New: upd, View: c}) })
	assert.Zero(t, allocs, "allocations per judgement of a change that keeps every nodePort")
}
