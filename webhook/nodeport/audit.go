package nodeport

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/svcguard/svcguard/pkg/leader"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// Reasons are the stable labels of the broken rules, as Assessment.Reasons
// and svcguard_node_ports_incorrect name them.
var Reasons = []string{"out-of-range", "reserved", "pinned-elsewhere", "pin-mismatch", "host-port"}

var nodePortsIncorrect = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "svcguard_node_ports_incorrect",
	Help: "nodePorts that are not correctly allocated, by broken rule (out-of-range, reserved, pinned-elsewhere, pin-mismatch, host-port); set by the leader's audit, 0 elsewhere.",
}, []string{"reason"})

func init() {
	metrics.MustRegister(nodePortsIncorrect)
}

// IncorrectReason is the reason of the audit's warning Events.
const IncorrectReason = "NodePortNotCorrectlyAllocated"

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
	defer nodePortsIncorrect.Reset()
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
	leader.Passes(ctx, a.interval, changed, a.pass)
	return nil
}

// Finding is one nodePort that is not correctly allocated.
type Finding struct {
	Service  string // namespace/name
	Port     string // port label
	NodePort int32
	Assessment
}

// Findings judges every cached Service's nodePorts by the guard's rules.
func (a *Audit) Findings() []Finding {
	var out []Finding
	for _, obj := range a.caches.services.GetIndexer().List() {
		s := obj.(*slimService)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name}}
		own := make(map[PortRef]int32, len(s.pins))
		for port, n := range s.pins {
			own[PortRef{Namespace: s.Namespace, Name: s.Name, Port: port}] = n
		}
		for _, p := range s.ports {
			if p.NodePort == 0 {
				continue
			}
			if as := a.guard.assess(svc, p, p.NodePort, own, a.caches); !as.Correct() {
				out = append(out, Finding{Service: s.Key.String(), Port: portLabel(p), NodePort: p.NodePort, Assessment: as})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Service+out[i].Port < out[j].Service+out[j].Port
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
		key := f.Service + ":" + f.Port
		problem := fmt.Sprintf("port %s nodePort %d is not correctly allocated: %s", f.Port, f.NodePort, strings.Join(f.Broken, ", "))
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
		nodePortsIncorrect.WithLabelValues(r).Set(float64(counts[r]))
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
	a.recorder.Eventf(svc, nil, corev1.EventTypeWarning, IncorrectReason, "Audit",
		"%s; svcguard lets this nodePort be moved to a correct one (it denies moving correctly allocated nodePorts only)", problem)
	a.log.Info("nodePort not correctly allocated", "service", f.Service, "port", f.Port, "nodePort", f.NodePort, "broken", f.Broken)
	return true
}
