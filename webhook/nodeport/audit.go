package nodeport

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/svcguard/svcguard/pkg/audit"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// Reasons are the stable labels of the broken rules, as Assessment.Reasons
// and svcguard_node_ports_incorrect name them.
// pin-conflict counts annotation pins that lose a conflict (resolvePins): a
// finding about the pin, which pins nothing, not about a nodePort.
var Reasons = []string{"out-of-range", "reserved", "pinned-elsewhere", "pin-mismatch", "host-port", PinConflict}

// PinConflict is the reason label of an annotation pin that loses a conflict.
const PinConflict = "pin-conflict"

// Reasons of the audit's warning Events.
const (
	// IncorrectReason: a nodePort is not correctly allocated.
	IncorrectReason = "NodePortNotCorrectlyAllocated"
	// PinConflictReason: an annotation pin loses a conflict and pins nothing.
	PinConflictReason = "NodePortPinConflict"
)

// Audit judges every Service's nodePorts by the guard's own rules
// (Guard.Assess), periodically and whenever a Service changes, and reports
// each one that is not correctly allocated: drift the webhook never saw
// (Services from before svcguard, or changed while it was down). It runs on
// the leader, on the caches that every replica keeps for the webhook.
type Audit struct {
	guard    *Guard
	caches   *Caches
	client   kubernetes.Interface
	recorder events.EventRecorder
	interval time.Duration
	log      logr.Logger

	// reported maps "namespace/name:port" to the problem last reported, so
	// that each problem gets one Event, and a new one when it changes.
	reported map[string]string
}

// NewAudit returns the audit of guard's rules over caches.
func NewAudit(guard *Guard, caches *Caches, client kubernetes.Interface, recorder events.EventRecorder, interval time.Duration, log logr.Logger) *Audit {
	return &Audit{guard: guard, caches: caches, client: client, recorder: recorder, interval: interval, log: log}
}

// Start runs passes until ctx (the leader's term) ends.
func (a *Audit) Start(ctx context.Context) error {
	defer metrics.NodePortsIncorrect.Reset()
	changed := make(chan struct{}, 1)
	signal := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	stop, err := a.caches.OnServiceChange(signal)
	if err != nil {
		return fmt.Errorf("node-port audit: watching Services: %w", err)
	}
	defer stop()
	if !cache.WaitForCacheSync(ctx.Done(), a.caches.Synced) {
		return nil
	}
	a.reported = map[string]string{}
	audit.Passes(ctx, a.interval, changed, a.pass)
	return nil
}

// Finding is one nodePort that is not correctly allocated, or (Pin set)
// one annotation pin that loses a conflict.
type Finding struct {
	Service  string // namespace/name
	Port     string // port label
	NodePort int32  // the port's nodePort; 0 for a port without one
	// Pin is the nodePort of a losing annotation pin; 0 for a finding on the
	// port's nodePort.
	Pin int32
	Assessment
}

// key names the finding's subject, so that each gets one Event.
func (f Finding) key() string {
	if f.Pin != 0 {
		return fmt.Sprintf("%s:%s pin %d", f.Service, f.Port, f.Pin)
	}
	return f.Service + ":" + f.Port
}

// problem is the finding in one line.
func (f Finding) problem() string {
	if f.Pin != 0 {
		return fmt.Sprintf("port %s annotation pin %d (%s) pins nothing: %s", f.Port, f.Pin, PinAnnotation, strings.Join(f.Broken, ", "))
	}
	return fmt.Sprintf("port %s nodePort %d is not correctly allocated: %s", f.Port, f.NodePort, strings.Join(f.Broken, ", "))
}

// Findings judges every cached Service's nodePorts by the guard's rules,
// and its annotation pins by the authority model.
func (a *Audit) Findings() []Finding {
	var out []Finding
	for _, obj := range a.caches.services.GetIndexer().List() {
		s := obj.(*slimService)
		svc := s.service()
		own := s.ownPins()
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				if as := a.guard.assess(svc, p, p.NodePort, own, a.caches); !as.Correct() {
					out = append(out, Finding{Service: s.String(), Port: portLabel(p), NodePort: p.NodePort, Assessment: as})
				}
			}
			ref := PortRef{Namespace: s.Namespace, Name: s.Name, Port: portKey(p)}
			if pin, ok := own[ref]; ok {
				if why, lost := a.guard.resolvePins(pin, svc, own, a.caches, PortRef{}).lost[ref]; lost {
					f := Finding{Service: s.String(), Port: portLabel(p), NodePort: p.NodePort, Pin: pin}
					f.fail(PinConflict, why)
					out = append(out, f)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].key() < out[j].key()
	})
	return out
}

func (a *Audit) pass(ctx context.Context) {
	findings := a.Findings()
	counts := map[string]int{}
	seen := map[string]bool{}
	for _, f := range findings {
		for _, r := range f.Reasons {
			counts[r]++
		}
		key, problem := f.key(), f.problem()
		seen[key] = true
		if a.reported[key] != problem && a.report(ctx, f, problem) {
			a.reported[key] = problem
		}
	}
	for key := range a.reported {
		if !seen[key] {
			delete(a.reported, key)
		}
	}
	for _, r := range Reasons {
		metrics.NodePortsIncorrect.WithLabelValues(r).Set(float64(counts[r]))
	}
}

// report writes a warning Event on the live Service and a log line.
func (a *Audit) report(ctx context.Context, f Finding, problem string) bool {
	ns, name, _ := strings.Cut(f.Service, "/")
	svc, err := a.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Error(err, "node-port audit cannot read the Service", "service", f.Service)
		}
		return false
	}
	if f.Pin != 0 {
		a.recorder.Eventf(svc, nil, corev1.EventTypeWarning, PinConflictReason, "Audit",
			"%s; svcguard never lets it make a nodePort incorrect: remove the pin, or ask a node-port admin to settle the conflict", problem)
		a.log.Info("annotation pin loses a conflict", "service", f.Service, "port", f.Port, "pin", f.Pin, "why", f.Broken)
		return true
	}
	a.recorder.Eventf(svc, nil, corev1.EventTypeWarning, IncorrectReason, "Audit",
		"%s; svcguard lets this nodePort be moved to a correct one (it denies moving correctly allocated nodePorts only)", problem)
	a.log.Info("nodePort not correctly allocated", "service", f.Service, "port", f.Port, "nodePort", f.NodePort, "broken", f.Broken)
	return true
}
