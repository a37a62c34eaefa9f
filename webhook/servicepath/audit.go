package servicepath

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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

// Reasons of the audit's warning Events.
const (
	// MissingNamedPortReason: selected Pods lack the Service's targetPort
	// name, or its EndpointSlices list endpoints without ports.
	MissingNamedPortReason = "NamedTargetPortMissing"
	// ProtectedAddressReason: the Service claims a protected address (made
	// before svcguard, while no replica answered, or before the address was
	// protected).
	ProtectedAddressReason = "ProtectedAddressClaimed"
)

// maxNote bounds an Event's note: events.k8s.io/v1 refuses notes over 1 KiB.
const maxNote = 1000

// serviceIndex keys an EndpointSlice by "namespace/service".
const serviceIndex = "service"

// slimService is what the audit keeps of a Service: its key, its address
// claims (spec and status), and for one with a selector and targetPort
// names, what MissingNamedPorts reads.
type slimService struct {
	slim.Key
	claims   []Claim
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
	if claims := append(Claims(svc, false), Claims(svc, true)...); len(claims) > 0 {
		out.claims = claims
	}
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

// Audit reports every Service that claims a protected address (by the
// guard's own rules), and every Service whose targetPort names some selected
// Pods lack or that has EndpointSlices listing endpoints without ports: one
// Warning Event per Service and problem, and the gauges
// svcguard_services_claiming_protected_addresses and
// svcguard_services_missing_named_port. It runs on the leader, with its own
// Service and EndpointSlice informers for the term, and the caches that
// every replica keeps for the webhook.
type Audit struct {
	guard    *Guard
	caches   *Caches
	client   kubernetes.Interface
	recorder events.EventRecorder
	interval time.Duration
	log      logr.Logger

	services, slices indexed
	informers        []cache.SharedIndexInformer
	// reported holds the keys (Finding.key) of the problems reported this
	// term, so that each gets one Event, and a changed one a new Event.
	reported map[string]bool
}

// NewAudit returns the audit over caches; the informers it adds are built
// here and run only while it runs.
func NewAudit(guard *Guard, caches *Caches, client kubernetes.Interface, recorder events.EventRecorder, interval time.Duration, log logr.Logger) *Audit {
	services := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "services", metav1.NamespaceAll, fields.Everything()),
		&corev1.Service{}, 0, cache.Indexers{})
	slices := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.DiscoveryV1().RESTClient(), "endpointslices", metav1.NamespaceAll, fields.Everything()),
		&discoveryv1.EndpointSlice{}, 0, sliceIndexers())
	// Neither informer has started, so neither SetTransform can fail.
	_ = services.SetTransform(serviceTransform)
	_ = slices.SetTransform(sliceTransform)
	return &Audit{guard: guard, caches: caches, client: client, recorder: recorder, interval: interval, log: log,
		services: services, slices: slices, informers: []cache.SharedIndexInformer{services, slices}}
}

// Start runs passes until ctx (the leader's term) ends: every interval,
// and a second after a Service changes. EndpointSlices change with every
// Pod that comes and goes, so their changes wait for the interval.
func (a *Audit) Start(ctx context.Context) error {
	defer metrics.ServicesMissingNamedPort.Set(0)
	defer metrics.ServicesClaimingProtectedAddresses.Set(0)
	changed := make(chan struct{}, 1)
	signal := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{AddFunc: signal, UpdateFunc: func(_, o any) { signal(o) }, DeleteFunc: signal}
	if _, err := a.informers[0].AddEventHandler(handler); err != nil {
		return fmt.Errorf("service-path audit: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, inf := range a.informers {
		wg.Go(func() { inf.Run(ctx.Done()) })
	}
	if !cache.WaitForCacheSync(ctx.Done(), a.services.HasSynced, a.slices.HasSynced, a.caches.Synced) {
		return nil
	}
	a.reported = map[string]bool{}
	audit.Passes(ctx, a.interval, changed, a.pass)
	return nil
}

// Finding is one Service that claims protected addresses, or whose
// selected Pods lack a targetPort name, or whose EndpointSlices list
// endpoints without ports.
type Finding struct {
	// Service is "namespace/name".
	Service string
	// Claims are its claims of protected addresses, each as "FIELD ADDRESS: why".
	Claims []string
	// Missing are its targetPort names that some selected Pods lack.
	Missing []Missing
	// SlicesWithoutPorts counts its EndpointSlices that list endpoints but no port.
	SlicesWithoutPorts int
}

// Problem is the targetPort part of the finding in one line, as its Event
// says it ("" when there is none).
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

// key names what the finding is about without its counts, so that a
// Service that scales gets no new Event, and one whose problem changes does.
func (f Finding) key(kind string) string {
	parts := []string{f.Service, kind}
	if kind == ProtectedAddressReason {
		parts = append(parts, f.Claims...)
	} else {
		for _, m := range f.Missing {
			parts = append(parts, m.Port.Name+"/"+string(m.Port.Protocol))
		}
		parts = append(parts, fmt.Sprint(f.SlicesWithoutPorts > 0))
	}
	return strings.Join(parts, "|")
}

// Findings judges every cached Service.
func (a *Audit) Findings() []Finding {
	var out []Finding
	apiServer, _ := a.caches.APIServerAddresses()
	for _, obj := range a.services.GetIndexer().List() {
		s, ok := obj.(*slimService)
		if !ok {
			continue
		}
		f := Finding{Service: s.String()}
		for _, c := range s.claims {
			if addr, ok := ParseAddress(c.Value); ok {
				if p := a.guard.Problem(c, addr, apiServer); p.Long != "" {
					f.Claims = append(f.Claims, c.Field+" "+c.Value+": "+p.Long)
				}
			}
		}
		if len(s.ports) > 0 {
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
		}
		if len(f.Claims) > 0 || len(f.Missing) > 0 || f.SlicesWithoutPorts > 0 {
			out = append(out, f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

func (a *Audit) pass(ctx context.Context) {
	findings := a.Findings()
	seen := map[string]bool{}
	claiming, missing := 0, 0
	for _, f := range findings {
		if len(f.Claims) > 0 {
			claiming++
			key := f.key(ProtectedAddressReason)
			seen[key] = true
			if !a.reported[key] && a.report(ctx, f.Service, ProtectedAddressReason,
				strings.Join(f.Claims, "; ")+"; remove it: svcguard denies adding such an address, and lets it be removed") {
				a.reported[key] = true
			}
		}
		if problem := f.Problem(); problem != "" {
			missing++
			key := f.key(MissingNamedPortReason)
			seen[key] = true
			if !a.reported[key] && a.report(ctx, f.Service, MissingNamedPortReason,
				problem+": proxies get no port for those Pods and may dial port 0; name the port in every selected Pod, or use a port number") {
				a.reported[key] = true
			}
		}
	}
	for key := range a.reported {
		if !seen[key] {
			delete(a.reported, key)
		}
	}
	metrics.ServicesMissingNamedPort.Set(float64(missing))
	metrics.ServicesClaimingProtectedAddresses.Set(float64(claiming))
}

// report writes a Warning Event with reason and note (cut to maxNote) on
// the live Service, and a log line.
func (a *Audit) report(ctx context.Context, service, reason, note string) bool {
	ns, name, _ := strings.Cut(service, "/")
	svc, err := a.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Error(err, "service-path audit cannot read the Service", "service", service)
		}
		return false
	}
	a.recorder.Eventf(svc, nil, corev1.EventTypeWarning, reason, "Audit", "%s", cutNote(note))
	a.log.Info("Service reported", "service", service, "reason", reason, "note", note)
	return true
}

// cutNote cuts note to maxNote bytes, never inside a character.
func cutNote(note string) string {
	if len(note) <= maxNote {
		return note
	}
	cut := maxNote - 3
	for cut > 0 && !utf8.RuneStart(note[cut]) {
		cut--
	}
	return note[:cut] + "..."
}
