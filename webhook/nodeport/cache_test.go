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
	"github.com/svcguard/svcguard/pkg/slim"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

// indexerView is a View over plain indexers filled through the real
// transforms: what the informers hold, without an API server.
type indexerView struct {
	pods, services cache.Indexer
}

func newIndexerView() (*indexerView, *transforms) {
	return &indexerView{
		pods:     cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, podIndexers()),
		services: cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, serviceIndexers()),
	}, &transforms{nodePorts: Range{30000, 32767}}
}

func (v *indexerView) caches() *Caches {
	return &Caches{pods: fakeInformer{v.pods}, services: fakeInformer{v.services}}
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

func add(t testing.TB, idx cache.Indexer, transform cache.TransformFunc, obj any) {
	slim, err := transform(obj)
	require.NoError(t, err)
	require.NoError(t, idx.Add(slim))
}

func TestCachesKeepOnlyWhatTheRulesNeedAndIndexIt(t *testing.T) {
	v, tr := newIndexerView()
	add(t, v.pods, tr.pod, hostPortPod(1, 31000))
	add(t, v.pods, tr.pod, hostPortPod(2, 8080)) // a hostPort outside the range is not kept
	add(t, v.pods, tr.pod, hostPortPod(3, 0))
	pinned := fixtures.Service("b", "db", fixtures.Annotation(PinAnnotation, "pg=31500"), fixtures.Port("pg", 5432, 31500))
	add(t, v.services, tr.service, pinned)
	c := v.caches()

	assert.Equal(t, []string{"team-1/app-1-7f9c8d6b5-x00001"}, c.HostPortPods(31000, corev1.ProtocolTCP))
	assert.Empty(t, c.HostPortPods(31000, corev1.ProtocolUDP), "another protocol does not collide")
	assert.Empty(t, c.HostPortPods(8080, corev1.ProtocolTCP), "hostPorts outside the range are not cached")
	assert.Equal(t, []PortRef{{Namespace: "b", Name: "db", Port: "pg"}}, c.AnnotationPins(31500))
	assert.Equal(t, []PortRef{{Namespace: "b", Name: "db", Port: "pg"}}, c.Holders(31500), "the index knows who holds a nodePort")
	add(t, v.services, tr.service, fixtures.Service("c", "unnamed", fixtures.Port("", 8080, 31600)))
	assert.Equal(t, []PortRef{{Namespace: "c", Name: "unnamed", Port: "8080"}}, c.Holders(31600), "an unnamed port is named by its number")
	assert.Empty(t, c.Holders(31501))
	add(t, v.services, tr.service, fixtures.Service("d", "dangling", fixtures.Annotation(PinAnnotation, "metrics=31700,http=31701"), fixtures.Port("http", 80, 31000)))
	assert.Empty(t, c.AnnotationPins(31700), "a pin on a port the Service lacks pins nothing")
	assert.Equal(t, []PortRef{{Namespace: "d", Name: "dangling", Port: "http"}}, c.AnnotationPins(31701))

	// A pin on a Service that allocates no nodePorts reserves nothing: a
	// tenant's ClusterIP Service must not fence nodePorts off for free (it
	// is judged as a claim when the Service starts allocating them).
	add(t, v.services, tr.service, fixtures.Service("tenant", "squatter", fixtures.Type(corev1.ServiceTypeClusterIP),
		fixtures.Annotation(PinAnnotation, "http=31800"), fixtures.Port("http", 80, 0)))
	assert.Empty(t, c.AnnotationPins(31800), "a ClusterIP Service's pin is dormant")
	noAlloc := fixtures.Service("tenant", "lb", fixtures.Type(corev1.ServiceTypeLoadBalancer),
		fixtures.Annotation(PinAnnotation, "http=31801"), fixtures.Port("http", 80, 0))
	noAlloc.Spec.AllocateLoadBalancerNodePorts = new(false)
	add(t, v.services, tr.service, noAlloc)
	assert.Empty(t, c.AnnotationPins(31801), "a LoadBalancer Service that allocates no nodePorts pins nothing")
	add(t, v.services, tr.service, fixtures.Service("tenant", "lb2", fixtures.Type(corev1.ServiceTypeLoadBalancer),
		fixtures.Annotation(PinAnnotation, "http=31802"), fixtures.Port("http", 80, 31802)))
	assert.Equal(t, []PortRef{{Namespace: "tenant", Name: "lb2", Port: "http"}}, c.AnnotationPins(31802), "a LoadBalancer's nodePorts are pinned")

	kept, _, _ := v.pods.GetByKey("team-3/app-3-7f9c8d6b5-x00003")
	assert.Equal(t, &slimPod{Key: slim.Key{Namespace: "team-3", Name: "app-3-7f9c8d6b5-x00003"}}, kept, "a Pod keeps its key and nothing else")

	// The guard judges through the cache view exactly as through any View.
	v2 := testGuard().Judge(Review{New: fixtures.Service("x", "y", fixtures.Port("p", 1, 31500)), View: c})
	assert.Contains(t, v2.Denials[0], "31500 is pinned to b/db:pg")

	require.NoError(t, v.pods.Delete(kept))
	_, exists, _ := v.pods.GetByKey("team-3/app-3-7f9c8d6b5-x00003")
	assert.False(t, exists, "a deleted Pod is removed by its slim key")
}

// BenchmarkCacheMemory feeds 100k synthetic Pods (1% with a hostPort in the
// range) and 10k Services (1% pinned by annotation) through the real
// transforms and indexers, and reports the heap they hold.
func BenchmarkCacheMemory(b *testing.B) {
	const pods, services = 100_000, 10_000
	for i := 0; i < b.N; i++ {
		before := benchtest.HeapAfterGC()
		v, tr := newIndexerView()
		for p := 0; p < pods; p++ {
			hostPort := int32(0)
			if p%100 == 0 {
				hostPort = int32(30000 + p%2700)
			}
			add(b, v.pods, tr.pod, hostPortPod(p, hostPort))
		}
		podHeap := benchtest.HeapAfterGC() - before
		for s := 0; s < services; s++ {
			add(b, v.services, tr.service, syntheticService(s))
		}
		total := benchtest.HeapAfterGC() - before
		b.ReportMetric(float64(podHeap)/pods, "B/pod")
		b.ReportMetric(float64(total-podHeap)/services, "B/service")
		b.ReportMetric(float64(total)/(1<<20), "MiB-total")
		runtime.KeepAlive(v)
	}
}

// BenchmarkJudgeWithCaches measures one decision against caches of 100k
// Pods and 10k Services: it must not grow with the cluster.
func BenchmarkJudgeWithCaches(b *testing.B) {
	v, tr := newIndexerView()
	for p := 0; p < 100_000; p++ {
		add(b, v.pods, tr.pod, hostPortPod(p, int32(30000+p%2700)))
	}
	for s := 0; s < 10_000; s++ {
		add(b, v.services, tr.service, syntheticService(s))
	}
	g, c := testGuard(), v.caches()
	old, upd := gw(fixtures.Port("tcp", 443, 30445)), gw(fixtures.Port("tcp", 443, 30194))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Judge(Review{Old: old, New: upd, View: c})
	}
}

// BenchmarkHandlerWithCaches is one Service UPDATE through the handler
// (decode old and new, judge, respond) for Services with 1 and 10 ports,
// against caches of 100k Pods and 10k Services.
func BenchmarkHandlerWithCaches(b *testing.B) {
	v, tr := newIndexerView()
	for p := 0; p < 100_000; p++ {
		add(b, v.pods, tr.pod, hostPortPod(p, int32(30000+p%2700)))
	}
	for s := 0; s < 10_000; s++ {
		add(b, v.services, tr.service, syntheticService(s))
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
