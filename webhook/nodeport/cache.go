package nodeport

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/pkg/slim"
)

// Index names.
const (
	// nodePortIndex keys a Service under every nodePort it holds or pins by
	// annotation: one index answers both "who holds N" and "who pins N".
	nodePortIndex = "nodePort"
	hostPortIndex = "hostPort"
)

// hostPorts is all the node-port guard keeps of a Pod: the hostPorts it
// uses inside the nodePort range. Almost every Pod has none, and keeps nil.
type hostPorts struct {
	ports []protoPort
}

// slimService is all the cache keeps of a Service: its name, its ports
// (name, protocol, number, nodePort) and the pins its annotation declares
// for ports it has (a pin naming a port the Service lacks pins nothing).
type slimService struct {
	slim.Key
	ports []slimPort
	pins  map[string]int32
}

// slimPort is what the rules read of a ServicePort: 40 bytes where a
// corev1.ServicePort takes 88.
type slimPort struct {
	name     string
	protocol corev1.Protocol
	port     int32
	nodePort int32
}

func (p slimPort) servicePort() corev1.ServicePort {
	return corev1.ServicePort{Name: p.name, Protocol: p.protocol, Port: p.port, NodePort: p.nodePort}
}

// service returns the Service the slim copy stands for: its key and ports.
func (s *slimService) service() *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}}
	svc.Spec.Ports = make([]corev1.ServicePort, len(s.ports))
	for i, p := range s.ports {
		svc.Spec.Ports[i] = p.servicePort()
	}
	return svc
}

// ownPins returns the Service's annotation pins as refs.
func (s *slimService) ownPins() map[PortRef]int32 {
	out := make(map[PortRef]int32, len(s.pins))
	for port, n := range s.pins {
		out[PortRef{Namespace: s.Namespace, Name: s.Name, Port: port}] = n
	}
	return out
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

// pod keeps a Pod's hostPorts inside the nodePort range; nil for none.
func (t *transforms) pod(pod *corev1.Pod) *hostPorts {
	var out *hostPorts
	add := func(cs []corev1.Container) {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.HostPort != 0 && t.nodePorts.Contains(p.HostPort) {
					if out == nil {
						out = &hostPorts{}
					}
					out.ports = append(out.ports, protoPort{protocol(p.Protocol), p.HostPort})
				}
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	return out
}

// protocol returns the shared constant for a protocol (TCP when empty), so
// that the cache holds no copy of the decoded string.
func protocol(p corev1.Protocol) corev1.Protocol {
	switch p {
	case "", corev1.ProtocolTCP:
		return corev1.ProtocolTCP
	case corev1.ProtocolUDP:
		return corev1.ProtocolUDP
	case corev1.ProtocolSCTP:
		return corev1.ProtocolSCTP
	}
	return p
}

// service keeps a Service's key, ports and the annotation pins of ports it has.
func (t *transforms) service(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &slimService{Key: slim.Key{Namespace: t.names.Intern(svc.Namespace), Name: svc.Name}}
	if len(svc.Spec.Ports) > 0 {
		out.ports = make([]slimPort, len(svc.Spec.Ports))
		for i, p := range svc.Spec.Ports {
			out.ports[i] = slimPort{name: p.Name, protocol: protocol(p.Protocol), port: p.Port, nodePort: p.NodePort}
		}
	}
	if value, ok := svc.Annotations[PinAnnotation]; ok && holdsNodePorts(svc) {
		// A malformed annotation pins nothing here (the webhook denies it on the
		// Service's next change), nor does a pin on a port the Service lacks
		// (the webhook denies it when it is set, or when its port is removed),
		// nor a pin on a Service without nodePorts: it would fence nodePorts off
		// for free (the webhook judges it when the Service starts allocating).
		pins, _ := ParsePinAnnotation(value)
		for port, n := range pins {
			if hasPort(svc, port) {
				if out.pins == nil {
					out.pins = make(map[string]int32, len(pins))
				}
				out.pins[port] = n
			}
		}
	}
	return out, nil
}

// hostPortKeys are the index keys of a Pod's hostPorts.
func hostPortKeys(h *hostPorts) []string {
	keys := make([]string, 0, len(h.ports))
	for _, p := range h.ports {
		keys = append(keys, p.key())
	}
	return keys
}

func serviceIndexers() cache.Indexers {
	return cache.Indexers{nodePortIndex: func(obj any) ([]string, error) {
		svc, ok := obj.(*slimService)
		if !ok {
			return nil, nil
		}
		var keys []string
		add := func(n int32) {
			k := strconv.Itoa(int(n))
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		for _, p := range svc.ports {
			if p.nodePort != 0 {
				add(p.nodePort)
			}
		}
		for _, n := range svc.pins {
			add(n)
		}
		return keys, nil
	}}
}

// Caches are the informers that feed rules 3 and 5 and the pin claims:
// every Service's pins and held nodePorts, and every Pod's hostPorts in the
// range, indexed so that one decision costs
// O(ports), never a scan of the cluster. They implement View.
type Caches struct {
	pods     podwatch.Part[hostPorts]
	services indexed // the Service informer, or a plain store in tests
}

// indexed is what a decision reads of an informer.
type indexed interface {
	GetIndexer() cache.Indexer
	HasSynced() bool
}

// NewCaches builds the Service informer on client and registers the
// guard's part of pods, the replica's shared Pod watch; Start runs the
// Service informer (the server runs pods).
func NewCaches(client kubernetes.Interface, pods *podwatch.Watch, nodePorts Range) (*Caches, error) {
	services := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "services", metav1.NamespaceAll, fields.Everything()),
		&corev1.Service{}, 0, serviceIndexers())
	return newCaches(pods, services, nodePorts)
}

// newCaches registers the guard's part of pods and reads Services from services.
func newCaches(pods *podwatch.Watch, services indexed, nodePorts Range) (*Caches, error) {
	t := &transforms{nodePorts: nodePorts}
	part, err := podwatch.Register(pods, Name, t.pod)
	if err != nil {
		return nil, err
	}
	if err := part.Index(hostPortIndex, hostPortKeys); err != nil {
		return nil, fmt.Errorf("node-port guard: pod cache: %w", err)
	}
	if inf, ok := services.(cache.SharedIndexInformer); ok {
		if err := inf.SetTransform(t.service); err != nil {
			return nil, fmt.Errorf("node-port guard: service cache: %w", err)
		}
	}
	return &Caches{pods: part, services: services}, nil
}

// Start runs the Service informer until ctx ends. Every replica runs it:
// the webhook needs it whether or not the replica leads.
func (c *Caches) Start(ctx context.Context) error {
	if inf, ok := c.services.(cache.SharedIndexInformer); ok {
		inf.RunWithContext(ctx)
	}
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
	return c.pods.Synced() && c.services.HasSynced()
}

// AnnotationPins implements View.
func (c *Caches) AnnotationPins(nodePort int32) []PortRef {
	var refs []PortRef
	for _, svc := range c.servicesAt(nodePort) {
		for port, n := range svc.pins {
			if n == nodePort {
				refs = append(refs, PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: port})
			}
		}
	}
	return refs
}

// Holders implements View.
func (c *Caches) Holders(nodePort int32) []PortRef {
	var refs []PortRef
	for _, svc := range c.servicesAt(nodePort) {
		for _, p := range svc.ports {
			if p.nodePort == nodePort {
				refs = append(refs, PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: portKey(p.servicePort())})
			}
		}
	}
	return refs
}

// servicesAt returns the Services that hold or pin nodePort.
func (c *Caches) servicesAt(nodePort int32) []*slimService {
	objs, _ := c.services.GetIndexer().ByIndex(nodePortIndex, strconv.Itoa(int(nodePort)))
	out := make([]*slimService, 0, len(objs))
	for _, obj := range objs {
		if svc, ok := obj.(*slimService); ok {
			out = append(out, svc)
		}
	}
	return out
}

// HostPortPods implements View.
func (c *Caches) HostPortPods(nodePort int32, protocol corev1.Protocol) []string {
	var names []string
	// The index is the guard's own, so ByIndex cannot fail.
	_ = c.pods.ByIndex(hostPortIndex, protoPort{protocol, nodePort}.key(), func(r *podwatch.Record, _ *hostPorts) {
		names = append(names, r.Key())
	})
	return names
}
