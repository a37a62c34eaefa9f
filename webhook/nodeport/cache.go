package nodeport

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/svcguard/svcguard/pkg/slim"
)

// Index names.
const (
	pinIndex      = "pinnedNodePort"
	hostPortIndex = "hostPort"
)

// slimPod is all the cache keeps of a Pod: its name and the hostPorts it
// uses inside the nodePort range (none for almost every Pod).
type slimPod struct {
	slim.Key
	hostPorts []protoPort
}

// slimService is all the cache keeps of a Service: its name and ports, and
// the pins its annotation declares.
type slimService struct {
	slim.Key
	ports []corev1.ServicePort
	pins  map[string]int32
}

type protoPort struct {
	protocol corev1.Protocol
	port     int32
}

func (p protoPort) key() string {
	return string(p.protocol) + "/" + strconv.Itoa(int(p.port))
}

// transforms turn API objects into what the cache keeps.
type transforms struct {
	nodePorts Range
	names     slim.Interner
}

// pod keeps a Pod's key and its hostPorts inside the nodePort range.
func (t *transforms) pod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a cache.DeletedFinalStateUnknown tombstone carries its last slim state
	}
	out := &slimPod{Key: slim.Key{Namespace: t.names.Intern(pod.Namespace), Name: pod.Name}}
	add := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.HostPort != 0 && t.nodePorts.Contains(p.HostPort) {
					proto := p.Protocol
					if proto == "" {
						proto = corev1.ProtocolTCP
					}
					out.hostPorts = append(out.hostPorts, protoPort{proto, p.HostPort})
				}
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	return out, nil
}

// service keeps a Service's key, ports and annotation pins.
func (t *transforms) service(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &slimService{Key: slim.Key{Namespace: t.names.Intern(svc.Namespace), Name: svc.Name}}
	for _, p := range svc.Spec.Ports {
		out.ports = append(out.ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, NodePort: p.NodePort})
	}
	if value, ok := svc.Annotations[PinAnnotation]; ok {
		// A malformed annotation pins nothing here; the webhook denies it on the
		// Service's next change and the audit reports it.
		out.pins, _ = ParsePinAnnotation(value)
	}
	return out, nil
}

func podIndexers() cache.Indexers {
	return cache.Indexers{hostPortIndex: func(obj any) ([]string, error) {
		pod, ok := obj.(*slimPod)
		if !ok {
			return nil, nil
		}
		keys := make([]string, 0, len(pod.hostPorts))
		for _, p := range pod.hostPorts {
			keys = append(keys, p.key())
		}
		return keys, nil
	}}
}

func serviceIndexers() cache.Indexers {
	return cache.Indexers{pinIndex: func(obj any) ([]string, error) {
		svc, ok := obj.(*slimService)
		if !ok {
			return nil, nil
		}
		keys := make([]string, 0, len(svc.pins))
		for _, n := range svc.pins {
			keys = append(keys, strconv.Itoa(int(n)))
		}
		return keys, nil
	}}
}

// Caches are the informers that feed rules 3 and 5: every Service's pins
// and every Pod's hostPorts in the range, indexed so that one decision costs
// O(ports), never a scan of the cluster. They implement View.
type Caches struct {
	pods, services indexed
	informers      []cache.SharedIndexInformer
}

// indexed is what a decision reads of an informer.
type indexed interface {
	GetIndexer() cache.Indexer
	HasSynced() bool
}

// NewCaches builds the informers on client; Start runs them.
func NewCaches(client kubernetes.Interface, nodePorts Range) (*Caches, error) {
	t := &transforms{nodePorts: nodePorts}
	pods := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, fields.Everything()),
		&corev1.Pod{}, 0, podIndexers())
	services := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "services", metav1.NamespaceAll, fields.Everything()),
		&corev1.Service{}, 0, serviceIndexers())
	if err := pods.SetTransform(t.pod); err != nil {
		return nil, fmt.Errorf("pod cache: %w", err)
	}
	if err := services.SetTransform(t.service); err != nil {
		return nil, fmt.Errorf("service cache: %w", err)
	}
	return &Caches{pods: pods, services: services, informers: []cache.SharedIndexInformer{pods, services}}, nil
}

// Start runs the informers until ctx ends. Every replica runs them: the
// webhook needs them whether or not the replica leads.
func (c *Caches) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, inf := range c.informers {
		wg.Go(func() { inf.Run(ctx.Done()) })
	}
	wg.Wait()
	return nil
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable:
// the caches run on every replica.
func (c *Caches) NeedLeaderElection() bool {
	return false
}

// OnServiceChange calls f after every Service event; stop ends that.
func (c *Caches) OnServiceChange(f func()) (stop func(), err error) {
	inf, ok := c.services.(cache.SharedIndexInformer)
	if !ok {
		return nil, fmt.Errorf("the Service cache is not an informer (%T)", c.services)
	}
	reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { f() },
		UpdateFunc: func(any, any) { f() },
		DeleteFunc: func(any) { f() },
	})
	if err != nil {
		return nil, err
	}
	return func() { _ = inf.RemoveEventHandler(reg) }, nil
}

// Synced implements View.
func (c *Caches) Synced() bool {
	return c.pods.HasSynced() && c.services.HasSynced()
}

// AnnotationPins implements View.
func (c *Caches) AnnotationPins(nodePort int32) []PortRef {
	objs, _ := c.services.GetIndexer().ByIndex(pinIndex, strconv.Itoa(int(nodePort)))
	var refs []PortRef
	for _, obj := range objs {
		svc := obj.(*slimService)
		for port, n := range svc.pins {
			if n == nodePort {
				refs = append(refs, PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: port})
			}
		}
	}
	return refs
}

// HostPortPods implements View.
func (c *Caches) HostPortPods(nodePort int32, protocol corev1.Protocol) []string {
	objs, _ := c.pods.GetIndexer().ByIndex(hostPortIndex, protoPort{protocol, nodePort}.key())
	names := make([]string, 0, len(objs))
	for _, obj := range objs {
		pod := obj.(*slimPod)
		names = append(names, pod.Key.String())
	}
	return names
}
