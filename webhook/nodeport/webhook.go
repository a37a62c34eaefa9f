package nodeport

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// Name labels this webhook's metrics and logs.
const Name = "node-port-guard"

// Path is where the ValidatingWebhookConfiguration points.
const Path = "/webhooks/node-port-guard"

// Build assembles the node-port guard from validated settings and the
// server's dependencies: the caches that feed rules 3 and 5 (started on every
// replica), the admission handler, and the leader-only nodePort audit on the
// same caches and rules.
func Build(o *Options, deps component.Dependencies) (component.Built, error) {
	guard, err := o.Guard()
	if err != nil {
		return component.Built{}, err
	}
	logger := log.Log.WithName(Name)
	dynamic := guard.DynamicBandPins()
	for ref, n := range dynamic {
		logger.Info("pin lies in the dynamic band of the nodePort range, where the API server allocates random nodePorts first; pin in the static band instead",
			"pin", ref.String(), "nodePort", n, "staticBand", Range{guard.Range.First, guard.Range.StaticBandLast()}.String())
	}
	metrics.PinsInDynamicBand.Set(float64(len(dynamic)))

	caches, err := NewCaches(deps.Client, deps.Pods, guard.Range)
	if err != nil {
		return component.Built{}, err
	}
	if err := deps.Start(caches); err != nil {
		return component.Built{}, fmt.Errorf("node-port guard: cannot start its caches: %w", err)
	}
	return component.Built{
		Webhook: component.Webhook{
			Name:     Name,
			Path:     Path,
			SelfTest: SelfTestRequest(),
			Handler: &Handler{
				Guard:      &guard,
				View:       caches,
				Decoder:    deps.Decoder,
				OnDenied:   metrics.NodePortReassignmentsDenied.Inc,
				OnDegraded: metrics.DegradedDecisions.WithLabelValues(Name).Inc,
			},
			CachesSynced: caches.Synced,
		},
		Audit: NewAudit(&guard, caches, deps.Client, deps.Recorder, deps.AuditInterval, log.Log.WithName(Name+"-audit")),
	}, nil
}
