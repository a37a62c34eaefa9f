package servicepath

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/svcguard/svcguard/pkg/audit"
	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/slim"
)

// MissingNamedPortReason is the reason of the audit's warning Events.
const MissingNamedPortReason = "NamedTargetPortMissing"

// serviceIndex keys an EndpointSlice by "namespace/service".
const serviceIndex = "service"

// slimService is what the audit keeps of a Service: its key, and for one
// with a selector and targetPort names, what MissingNamedPorts reads.
type slimService struct {
	slim.Key
	selector map[string]string
	ports    []NamedPort
}

// service returns the Service the slim copy stands for.
func (s *slimService) service() *corev1.Service {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}}
	svc.Spec.Selector = s.selector
	for _, p := range s.ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Protocol: p.Protocol, TargetPort: intstr.FromString(p.Name)})
	}
	return svc
}

func serviceTransform(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	out := &slimService{Key: slim.Key{Namespace: svc.Namespace, Name: svc.Name}}
	if len(svc.Spec.Selector) > 0 && svc.Spec.Type != corev1.ServiceTypeExternalName {
		if out.ports = NamedTargetPorts(svc); len(out.ports) > 0 {
			out.selector = svc.Spec.Selector
		}
	}
	return out, nil
}

// slimSlice is what the audit keeps of an EndpointSlice: the Service it
// belongs to, and whether it lists endpoints without any port, which is
// what a targetPort name some Pods lack gives them.
type slimSlice struct {
	slim.Key
	service string
	noPorts bool
}

func sliceTransform(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	return &slimSlice{
		Key:     slim.Key{Namespace: s.Namespace, Name: s.Name},
		service: s.Labels[discoveryv1.LabelServiceName],
		noPorts: len(s.Ports) == 0 && len(s.Endpoints) > 0,
	}, nil
}

func sliceIndexers() cache.Indexers {
	return cache.Indexers{serviceIndex: func(obj any) ([]string, error) {
		s, ok := obj.(*slimSlice)
		if !ok || s.service == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.service}, nil
	}}
}

// Audit reports every Service whose targetPort names some selected Pods
// lack, or that has EndpointSlices listing endpoints without ports: one
// Warning Event per Service and problem, and the gauge
// svcguard_services_missing_named_port. It runs on the leader, with its
// own Service and EndpointSlice informers for the term, and the Pod cache
// that every replica keeps for the webhook.
type Audit struct {
	caches   *Caches
	client   kubernetes.Interface
	recorder events.EventRecorder
	interval time.Duration
	log      logr.Logger

	services, slices indexed
	informers        []cache.SharedIndexInformer
	// reported maps "namespace/name" to the problem last reported.
	reported map[string]string
}

// NewAudit returns the audit over caches; the informers it adds are built
// here and run only while it runs.
func NewAudit(caches *Caches, client kubernetes.Interface, recorder events.EventRecorder, interval time.Duration, log logr.Logger) *Audit {
	services := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "services", metav1.NamespaceAll, fields.Everything()),
		&corev1.Service{}, 0, cache.Indexers{})
	slices := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.DiscoveryV1().RESTClient(), "endpointslices", metav1.NamespaceAll, fields.Everything()),
		&discoveryv1.EndpointSlice{}, 0, sliceIndexers())
	// Neither informer has started, so neither SetTransform can fail.
	_ = services.SetTransform(serviceTransform)
	_ = slices.SetTransform(sliceTransform)
	return &Audit{caches: caches, client: client, recorder: recorder, interval: interval, log: log,
		services: services, slices: slices, informers: []cache.SharedIndexInformer{services, slices}}
}

// Start runs passes until ctx (the leader's term) ends: every interval,
// and a second after a Service or EndpointSlice changes.
func (a *Audit) Start(ctx context.Context) error {
	defer metrics.ServicesMissingNamedPort.Set(0)
	changed := make(chan struct{}, 1)
	signal := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: signal, UpdateFunc: func(_, o any) { signal(o) }, DeleteFunc: signal}
	for _, inf := range a.informers {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("service-path audit: %w", err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range a.informers {
		wg.Go(func() { inf.Run(ctx.Done()) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), a.services.HasSynced, a.slices.HasSynced, a.caches.pods.HasSynced) {
		return nil
	}
	a.reported = map[string]string{}
	audit.Passes(ctx, a.interval, changed, a.pass)
	return nil
}

// Finding is one Service whose selected Pods lack a targetPort name, or
// whose EndpointSlices list endpoints without ports.
type Finding struct {
	// Service is "namespace/name".
	Service string
	// Missing are its targetPort names that some selected Pods lack.
	Missing []Missing
	// SlicesWithoutPorts counts its EndpointSlices that list endpoints but no port.
	SlicesWithoutPorts int
}

// Problem is the finding in one line, as its Event says it.
func (f Finding) Problem() string {
	var parts []string
	for _, m := range f.Missing {
		parts = append(parts, fmt.Sprintf("targetPort %q is missing on %d of %d selected Pods (e.g. %s)", m.Port.Name, m.Lacking, m.Selected, m.Example))
	}
	if f.SlicesWithoutPorts > 0 {
		parts = append(parts, fmt.Sprintf("%d of its EndpointSlices list endpoints without ports", f.SlicesWithoutPorts))
	}
	return strings.Join(parts, "; ")
}

// Findings judges every cached Service with a selector and a targetPort name.
func (a *Audit) Findings() []Finding {
	var out []Finding
	for _, obj := range a.services.GetIndexer().List() {
		s, ok := obj.(*slimService)
		if !ok || len(s.ports) == 0 {
			continue
		}
		f := Finding{Service: s.String()}
		for _, m := range MissingNamedPorts(s.service(), a.caches) {
			if m.Synced {
				f.Missing = append(f.Missing, m)
			}
		}
		slices, _ := a.slices.GetIndexer().ByIndex(serviceIndex, s.String())
		for _, obj := range slices {
			if sl, ok := obj.(*slimSlice); ok && sl.noPorts {
				f.SlicesWithoutPorts++
			}
		}
		if len(f.Missing) > 0 || f.SlicesWithoutPorts > 0 {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

func (a *Audit) pass(ctx context.Context) {
	findings := a.Findings()
	seen := map[string]bool{}
	for _, f := range findings {
		seen[f.Service] = true
		if problem := f.Problem(); a.reported[f.Service] != problem && a.report(ctx, f, problem) {
			a.reported[f.Service] = problem
		}
	}
	for key := range a.reported {
		if !seen[key] {
			delete(a.reported, key)
		}
	}
	metrics.ServicesMissingNamedPort.Set(float64(len(findings)))
}

// report writes a Warning Event on the live Service and a log line.
func (a *Audit) report(ctx context.Context, f Finding, problem string) bool {
	ns, name, _ := strings.Cut(f.Service, "/")
	svc, err := a.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Error(err, "service-path audit cannot read the Service", "service", f.Service)
		}
		return false
	}
	a.recorder.Eventf(svc, nil, corev1.EventTypeWarning, MissingNamedPortReason, "Audit",
		"%s: proxies get no port for those Pods and may dial port 0; name the port in every selected Pod, or use a port number", problem)
	a.log.Info("Service selects Pods that lack its targetPort name", "service", f.Service, "problem", problem)
	return true
}
