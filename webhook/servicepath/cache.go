package servicepath

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/svcguard/svcguard/pkg/podwatch"
)

// The API server's own Service and the label of its EndpointSlices.
const (
	apiServerNamespace = metav1.NamespaceDefault
	apiServerService   = "kubernetes"
)

// ResolveInterval is how often the caches resolve --service-host again when
// it is a DNS name, so that a moved API server address is protected within it.
const ResolveInterval = 30 * time.Second

// ResolveMemory is how long an address --service-host resolved to stays
// protected after the last answer that held it: DNS that answers with a
// subset of its addresses each time (round robin) must not unprotect the
// others between lookups.
const ResolveMemory = 10 * time.Minute

// pathPod is all the guard keeps of a running Pod (its part of the shared
// Pod watch; the name is the Record's): its labels (for selectors) and the
// named ports EndpointSlices resolve. Each is packed into one string (a map
// of three labels costs about 400 bytes, its packed form about 60) and made
// unique: the Pods of a ReplicaSet share one copy, and a copy no Pod holds
// any more is collected. An ended Pod, which no EndpointSlice lists, and a
// Pod over MaxLabelBytes or MaxPortNameBytes keep nothing.
type pathPod struct {
	labels unique.Handle[packedLabels]
	ports  unique.Handle[PortNames]
}

// sharedLabels are a pathPod's labels as labels.Labels. Being one pointer,
// it converts to the interface without allocating.
type sharedLabels struct{ h unique.Handle[packedLabels] }

// Get implements labels.Labels.
func (l sharedLabels) Get(key string) string { return l.h.Value().Get(key) }

// Has implements labels.Labels.
func (l sharedLabels) Has(key string) bool { return l.h.Value().Has(key) }

// Lookup implements labels.Labels.
func (l sharedLabels) Lookup(key string) (string, bool) { return l.h.Value().Lookup(key) }

// packedLabels are labels as "key\x00value\x00" pairs, sorted by key; label
// keys and values cannot hold a NUL byte. It implements labels.Labels.
type packedLabels string

func packLabels(m map[string]string) packedLabels {
	keys := make([]string, 0, len(m))
	size := 0
	for k, v := range m {
		keys = append(keys, k)
		size += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(size)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	return packedLabels(b.String())
}

// Get implements labels.Labels.
func (l packedLabels) Get(key string) string {
	v, _ := l.Lookup(key)
	return v
}

// Has implements labels.Labels.
func (l packedLabels) Has(key string) bool {
	_, ok := l.Lookup(key)
	return ok
}

// Lookup implements labels.Labels.
func (l packedLabels) Lookup(key string) (string, bool) {
	rest := string(l)
	for len(rest) > len(key) {
		end := strings.IndexByte(rest, 0)
		valueEnd := end + 1 + strings.IndexByte(rest[end+1:], 0)
		if rest[:end] == key {
			return rest[end+1 : valueEnd], true
		}
		rest = rest[valueEnd+1:]
	}
	return "", false
}

// MaxPortNameBytes bounds the named ports the Pod cache keeps of one Pod,
// for the same reason as MaxLabelBytes: a Pod over it is left out of
// targetPort counts (about 60 named ports).
const MaxPortNameBytes = 1024

// MaxLabelBytes bounds the labels the Pod cache keeps of one Pod (keys and
// values). Every replica caches every Pod's labels, so without a bound a
// tenant allowed many Pods with hundreds of KiB of labels each could grow
// every replica's memory until it is OOM-killed, taking injection down for
// everyone. A Pod over the bound is left out of targetPort counts.
const MaxLabelBytes = 2048

// pathPodOf keeps what pathPod holds; nil for an ended or oversized Pod.
func pathPodOf(pod *corev1.Pod) *pathPod {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	size := 0
	for k, v := range pod.Labels {
		size += len(k) + len(v)
	}
	if size > MaxLabelBytes {
		return nil
	}
	var ports []NamedPort
	add := func(c corev1.Container) {
		for _, p := range c.Ports {
			if p.Name != "" {
				ports = append(ports, NamedPort{Name: p.Name, Protocol: Protocol(p.Protocol)})
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		add(c)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c) // a native sidecar's ports count, as the EndpointSlice controller counts them
		}
	}
	names := PortNamesOf(ports...)
	if len(names) > MaxPortNameBytes {
		return nil
	}
	return &pathPod{labels: unique.Make(packLabels(pod.Labels)), ports: unique.Make(names)}
}

// Caches are what every replica keeps for the guard's decisions: every
// Pod's labels and named ports (indexed by namespace), the kubernetes
// Service, its EndpointSlices, and the addresses --service-host resolves to.
// They implement View.
type Caches struct {
	pods                  podwatch.Part[pathPod]
	podsSynced            func() bool
	apiService, apiSlices indexed
	informers             []cache.SharedIndexInformer

	serviceHost string
	resolve     func(ctx context.Context, host string) ([]netip.Addr, error)
	now         func() time.Time
	resolved    atomic.Pointer[[]netip.Addr]
	log         logr.Logger
}

// NewCaches registers the guard's part of pods, the replica's shared Pod
// watch, and builds the other caches on client; Start runs them (the server
// runs pods). serviceHost is --service-host (an IP or a DNS name; empty:
// none).
func NewCaches(client kubernetes.Interface, pods *podwatch.Watch, serviceHost string, log logr.Logger) (*Caches, error) {
	part, err := podwatch.Register(pods, Name, pathPodOf)
	if err != nil {
		return nil, err
	}
	c := &Caches{
		pods:       part,
		podsSynced: part.Synced,
		apiService: cache.NewSharedIndexInformer(
			cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "services", apiServerNamespace,
				fields.OneTermEqualSelector("metadata.name", apiServerService)),
			&corev1.Service{}, 0, cache.Indexers{}),
		apiSlices: cache.NewSharedIndexInformer(
			cache.NewFilteredListWatchFromClient(client.DiscoveryV1().RESTClient(), "endpointslices", apiServerNamespace,
				func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelServiceName + "=" + apiServerService }),
			&discoveryv1.EndpointSlice{}, 0, cache.Indexers{}),
		serviceHost: serviceHost,
		resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		now: time.Now,
		log: log,
	}
	c.informers = []cache.SharedIndexInformer{c.apiService.(cache.SharedIndexInformer), c.apiSlices.(cache.SharedIndexInformer)}
	return c, nil
}

// Start runs the informers, and resolves --service-host every
// ResolveInterval, until ctx ends. Every replica runs them.
func (c *Caches) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, inf := range c.informers {
		wg.Go(func() { inf.Run(ctx.Done()) })
	}
	wg.Go(func() { c.resolveServiceHost(ctx) })
	wg.Wait()
	return nil
}

func (c *Caches) resolveServiceHost(ctx context.Context) {
	if c.serviceHost == "" {
		c.resolved.Store(&[]netip.Addr{})
		return
	}
	if a, ok := ParseAddress(c.serviceHost); ok {
		c.resolved.Store(&[]netip.Addr{a})
		return
	}
	ticker := time.NewTicker(ResolveInterval)
	defer ticker.Stop()
	seen := map[netip.Addr]time.Time{}
	for {
		c.resolveOnce(ctx, seen)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// indexed is what a decision reads of an informer, so that tests can hand
// the caches plain stores.
type indexed interface {
	GetIndexer() cache.Indexer
	HasSynced() bool
}

// resolveOnce looks --service-host up and protects every address an answer
// held within ResolveMemory (seen remembers when each was last answered).
func (c *Caches) resolveOnce(ctx context.Context, seen map[netip.Addr]time.Time) {
	lookup, cancel := context.WithTimeout(ctx, 10*time.Second)
	addrs, err := c.resolve(lookup, c.serviceHost)
	cancel()
	if err != nil {
		// The last addresses stay protected; until one lookup succeeds, decisions count as degraded.
		c.log.Error(err, "cannot resolve --service-host; its last addresses stay protected", "serviceHost", c.serviceHost)
		return
	}
	now := c.now()
	for _, a := range addrs {
		seen[a.Unmap()] = now
	}
	current := make([]netip.Addr, 0, len(seen))
	for a, at := range seen {
		if now.Sub(at) > ResolveMemory {
			delete(seen, a)
		} else {
			current = append(current, a)
		}
	}
	c.resolved.Store(&current)
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable:
// the caches run on every replica.
func (c *Caches) NeedLeaderElection() bool {
	return false
}

// Synced tells whether every informer holds the whole cluster.
func (c *Caches) Synced() bool {
	return c.podsSynced() && c.apiService.HasSynced() && c.apiSlices.HasSynced()
}

// APIServerAddresses implements View.
func (c *Caches) APIServerAddresses() (map[netip.Addr]string, bool) {
	out := map[netip.Addr]string{}
	resolved := c.resolved.Load()
	if resolved != nil {
		reason := "--service-host " + c.serviceHost
		if _, ok := ParseAddress(c.serviceHost); ok {
			reason = "--service-host"
		}
		for _, a := range *resolved {
			out[a] = reason
		}
	}
	for _, obj := range c.apiSlices.GetIndexer().List() {
		slice, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || slice.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for _, e := range slice.Endpoints {
			for _, s := range e.Addresses {
				if a, ok := ParseAddress(s); ok {
					out[a] = "endpoint of default/kubernetes"
				}
			}
		}
	}
	for _, obj := range c.apiService.GetIndexer().List() {
		svc, ok := obj.(*corev1.Service)
		if !ok {
			continue
		}
		for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, ok := ParseAddress(s); ok {
				out[a] = "ClusterIP of default/kubernetes"
			}
		}
	}
	return out, resolved != nil && c.apiService.HasSynced() && c.apiSlices.HasSynced()
}

// SelectedPods implements View.
func (c *Caches) SelectedPods(namespace string, selector labels.Selector, f func(Pod)) bool {
	if !c.podsSynced() {
		return false
	}
	c.pods.InNamespace(namespace, func(r *podwatch.Record, p *pathPod) {
		if selector.Matches(sharedLabels{p.labels}) {
			f(Pod{Name: r.Name(), Ports: p.ports.Value()})
		}
	})
	return true
}
