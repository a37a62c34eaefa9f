package servicepath

import (
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// Name labels this webhook's metrics and logs.
const Name = "service-path-guard"

// Path is where the ValidatingWebhookConfiguration points.
const Path = "/webhooks/service-path-guard"

// Build assembles the service-path guard from validated settings, the
// address Pods reach the API server at (--service-host, protected like the
// API server's other addresses), and the server's dependencies: the caches
// (started on every replica), the admission handler, and the leader-only
// audit of named targetPorts on the same rules.
func Build(o *Options, serviceHost string, deps component.Dependencies) (component.Built, error) {
	guard, err := o.Guard()
	if err != nil {
		return component.Built{}, err
	}
	caches, err := NewCaches(deps.Client, deps.Pods, serviceHost, log.Log.WithName(Name))
	if err != nil {
		return component.Built{}, err
	}
	if err := deps.Start(caches); err != nil {
		return component.Built{}, fmt.Errorf("service-path guard: cannot start its caches: %w", err)
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
				OnDegraded: metrics.DegradedDecisions.WithLabelValues(Name).Inc,
			},
			CachesSynced: caches.Synced,
		},
		Audit: NewAudit(&guard, caches, deps.Client, deps.Recorder, deps.AuditInterval, log.Log.WithName(Name+"-audit")),
	}, nil
}

// selfTestService is the Service of the readiness self-test: it claims an
// externalIP from TEST-NET-1 and has a named targetPort, so the guard
// decodes it and reads both caches. Allowed or denied (the address may be
// protected here), either answer is a judgement; only an error fails
// readiness.
const selfTestService = `{"apiVersion":"v1","kind":"Service","metadata":{"name":"svcguard-self-test","namespace":"svcguard-self-test"},` +
	`"spec":{"type":"ClusterIP","selector":{"app":"svcguard-self-test"},"externalIPs":["192.0.2.1"],` +
	`"ports":[{"name":"self-test","port":80,"protocol":"TCP","targetPort":"self-test"}]}}`

// SelfTestRequest is the Service CREATE that readiness sends through the
// guard's real handler every round (see component.Webhook.SelfTest).
func SelfTestRequest() admissionv1.AdmissionRequest {
	return component.CreateRequest("Service", "services", selfTestService)
}
