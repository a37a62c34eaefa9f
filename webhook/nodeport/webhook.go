package nodeport

import (
	"flag"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/server"
)

// Name labels this webhook's metrics and logs.
const Name = "node-port-guard"

// Path is where the ValidatingWebhookConfiguration points.
const Path = "/webhooks/node-port-guard"

var (
	reassignmentsDenied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "svcguard_node_port_reassignments_denied_total",
		Help: "Service changes denied because they would move a correctly allocated nodePort (dry runs excluded).",
	})
	pinsInDynamicBand = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_pins_in_dynamic_band",
		Help: "Pins from --pinned-node-ports that lie in the dynamic band of the nodePort range, where random allocation can take them first; move them to the static band.",
	})
)

func init() {
	metrics.MustRegister(reassignmentsDenied, pinsInDynamicBand)
}

// Options are the node-port guard's flags.
type Options struct {
	// NodePortRange is the API server's --service-node-port-range.
	NodePortRange string
	// ReservedNodePorts are ports and ranges the nodes use for something else.
	ReservedNodePorts options.List
	// PinnedNodePorts are NAMESPACE/NAME:PORT=NODEPORT pins.
	PinnedNodePorts options.List
	// NodePortAdmins are users (or group:NAME) who may force any change.
	NodePortAdmins options.List
	// RestrictPinAnnotation lets only NodePortAdmins add, change or remove
	// the pin annotation.
	RestrictPinAnnotation bool

	guard  Guard
	caches *Caches
}

// NewOptions returns the guard's options with their defaults.
func NewOptions() *Options {
	return &Options{NodePortRange: "30000-32767"}
}

// AddFlags implements options.Component.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodePortRange, "node-port-range", o.NodePortRange,
		"The API server's --service-node-port-range (FIRST-LAST); nodePorts outside it are not correctly allocated.")
	fs.Var(&o.ReservedNodePorts, "reserved-node-ports",
		"Ports and ranges (30100,30200-30210) that the nodes use for something else; no Service may claim them. Repeatable.")
	fs.Var(&o.PinnedNodePorts, "pinned-node-ports",
		"NAMESPACE/NAME:PORTNAME=NODEPORT: the only nodePort that port may have, and one no other port may claim. Repeatable.")
	fs.Var(&o.NodePortAdmins, "node-port-admins",
		"Users (or group:NAME) whose Service changes the node-port guard allows with a warning. Repeatable.")
	fs.BoolVar(&o.RestrictPinAnnotation, RestrictPinAnnotationFlag, o.RestrictPinAnnotation,
		"Let only --node-port-admins add, change or remove the "+PinAnnotation+" annotation; the node-port guard denies anyone else "+
			"(for multi-tenant clusters, where whoever may edit a Service is not trusted to pin nodePorts). Needs --node-port-admins. "+
			"Off: anyone who may edit a Service may pin its own ports to nodePorts that are free, in range, not reserved and not pinned.")
}

// RestrictPinAnnotationFlag is the flag that lets only node-port admins set pins by annotation.
const RestrictPinAnnotationFlag = "restrict-pin-annotation"

// Validate implements options.Component and builds the guard's settings.
func (o *Options) Validate() error {
	r, err := ParseRange(o.NodePortRange)
	if err != nil {
		return fmt.Errorf("--node-port-range=%q: %w", o.NodePortRange, err)
	}
	if o.RestrictPinAnnotation && len(o.NodePortAdmins) == 0 {
		return fmt.Errorf("--%s needs --node-port-admins: without one, nobody could add, change or remove the %s annotation "+
			"(name at least one user or group:NAME, e.g. group:system:masters)", RestrictPinAnnotationFlag, PinAnnotation)
	}
	g := Guard{Range: r, Admins: ParseAdmins(o.NodePortAdmins), RestrictPinAnnotation: o.RestrictPinAnnotation}
	for _, v := range o.ReservedNodePorts {
		rr, err := ParseRange(v)
		if err != nil {
			return fmt.Errorf("--reserved-node-ports=%q: %w", v, err)
		}
		g.Reserved = append(g.Reserved, rr)
	}
	for _, v := range o.PinnedNodePorts {
		ref, n, err := ParsePinFlag(v)
		if err != nil {
			return fmt.Errorf("--pinned-node-ports: %w", err)
		}
		if !r.Contains(n) {
			return fmt.Errorf("--pinned-node-ports=%q: %d is outside --node-port-range %s", v, n, r)
		}
		if g.Reserved.Contains(n) {
			return fmt.Errorf("--pinned-node-ports=%q: %d is also in --reserved-node-ports", v, n)
		}
		if prev, ok := g.Pins.Of(ref); ok {
			return fmt.Errorf("--pinned-node-ports: %s is pinned twice (%d and %d)", ref, prev, n)
		}
		g.Pins.Add(ref, n)
	}
	o.guard = g
	return nil
}

// DynamicBandPins returns the flag pins that lie above the static band.
func (o *Options) DynamicBandPins() map[PortRef]int32 {
	out := map[PortRef]int32{}
	for ref, n := range o.guard.Pins.All() {
		if n > o.guard.Range.StaticBandLast() {
			out[ref] = n
		}
	}
	return out
}

// Webhook builds the node-port guard for the server to serve, with the
// caches it runs on mgr.
func (o *Options) Webhook(mgr manager.Manager, decoder admission.Decoder) (server.Webhook, error) {
	logger := log.Log.WithName(Name)
	dynamic := o.DynamicBandPins()
	for ref, n := range dynamic {
		logger.Info("pin lies in the dynamic band of the nodePort range, where the API server allocates random nodePorts first; pin in the static band instead",
			"pin", ref.String(), "nodePort", n, "staticBand", Range{o.guard.Range.First, o.guard.Range.StaticBandLast()}.String())
	}
	pinsInDynamicBand.Set(float64(len(dynamic)))

	client, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return server.Webhook{}, fmt.Errorf("node-port guard: building a client: %w", err)
	}
	caches, err := NewCaches(client, o.guard.Range)
	if err != nil {
		return server.Webhook{}, err
	}
	if err := mgr.Add(caches); err != nil {
		return server.Webhook{}, fmt.Errorf("node-port guard: starting the caches: %w", err)
	}
	o.caches = caches
	guard := o.guard
	degraded := metrics.DegradedDecisions.WithLabelValues(Name)
	return server.Webhook{
		Name:     Name,
		Path:     Path,
		SelfTest: SelfTestRequest(),
		Handler: &Handler{
			Guard:      &guard,
			View:       caches,
			Decoder:    decoder,
			OnDenied:   reassignmentsDenied.Inc,
			OnDegraded: degraded.Inc,
		},
		CachesSynced: caches.Synced,
	}, nil
}

// Audit builds the leader-only nodePort audit on the caches that Webhook
// started; call Webhook first.
func (o *Options) Audit(a server.Auditing) (manager.Runnable, error) {
	if o.caches == nil {
		return nil, fmt.Errorf("node-port audit: the guard's caches are not set up (build the webhook first)")
	}
	guard := o.guard
	return NewAudit(&guard, o.caches, a.Client, a.Recorder, a.Interval, log.Log.WithName(Name+"-audit")), nil
}
