// Package metrics is the one place where svcguard's Prometheus metrics are
// defined: every row of the README's metrics table is a collector in this
// file. Register adds them to a registry explicitly (the server registers
// them with controller-runtime's, so /metrics serves them next to
// controller-runtime's own webhook metrics); the packages that update them
// import them from here.
package metrics

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
)

// Decision is the outcome of one admission request, as counted in
// svcguard_admission_requests_total.
type Decision string

// The decisions a webhook can reach.
const (
	// Allowed: admitted unchanged.
	Allowed Decision = "allowed"
	// Patched: admitted with a JSON patch.
	Patched Decision = "patched"
	// Denied: refused by a rule.
	Denied Decision = "denied"
	// Error: the request could not be judged (malformed, wrong kind, internal error).
	Error Decision = "error"
)

// Every webhook's requests (package server updates them).
var (
	// AdmissionRequests counts admission requests by webhook, operation and decision.
	AdmissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "svcguard_admission_requests_total",
		Help: "Admission requests answered, by webhook, operation (CREATE, UPDATE, DELETE, CONNECT, other) and decision (allowed, patched, denied, error).",
	}, []string{"webhook", "operation", "decision"})

	// AdmissionDuration observes how long each webhook takes to decide.
	AdmissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "svcguard_admission_duration_seconds",
		Help:    "Time a webhook took to decide one admission request, from decoded request to response.",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1},
	}, []string{"webhook"})

	// AdmissionPanics counts panics recovered into a 500 answer.
	AdmissionPanics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "svcguard_admission_panics_total",
		Help: "Panics in a webhook handler, recovered into an HTTP 500 answer; any increase is a bug to report.",
	}, []string{"webhook"})

	// AdmissionThrottled counts requests refused by the in-flight cap.
	AdmissionThrottled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "svcguard_admission_requests_throttled_total",
		Help: "Admission requests answered HTTP 429 at once because --max-in-flight-requests requests were already being answered.",
	})

	// DegradedDecisions counts decisions a webhook made without a dependency
	// that readiness found failing (for the node-port guard: without synced
	// caches), which it may only do under failurePolicy Ignore.
	DegradedDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "svcguard_degraded_decisions_total",
		Help: "Admission decisions a webhook made with only what it could decide locally, because a dependency (its caches) was not ready.",
	}, []string{"webhook"})
)

// Readiness and the Lease (packages readiness and leader update them).
var (
	// ReadinessCheck is the latest result of each readiness check.
	ReadinessCheck = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "svcguard_readiness_check",
		Help: "Latest result of each readiness check: 1 passing or skipped, 0 failing or not run yet (see /readyz?verbose for the reason).",
	}, []string{"check"})

	// Ready is 1 while the replica reports ready.
	Ready = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_ready",
		Help: "1 while this replica reports ready on /readyz, 0 otherwise (starting, a check holding readiness back, or draining on shutdown).",
	})

	// ServingCertificateExpiration is the NotAfter of the served certificate.
	ServingCertificateExpiration = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_serving_certificate_expiration_timestamp_seconds",
		Help: "NotAfter (unix seconds) of the certificate this replica serves to the API server, set by the tls readiness check; 0 until one is loaded.",
	})

	// CACertificateExpiration is the NotAfter of the CA the API server trusts
	// this replica through.
	CACertificateExpiration = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_ca_certificate_expiration_timestamp_seconds",
		Help: "NotAfter (unix seconds) of the CA certificate in the webhook configurations' caBundle that verifies the served certificate " +
			"(the earliest over the configurations), set by the ca-bundle readiness check; 0 while no caBundle verifies it.",
	})

	// Leader is 1 on the replica that holds the Lease.
	Leader = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_leader",
		Help: "1 while this replica holds the Lease and runs the leader-only audits, 0 otherwise.",
	})
)

// The service-host webhook and its audit (package webhook/servicehost).
var (
	// InjectedContainers counts containers that got the variables.
	InjectedContainers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "svcguard_injected_containers_total",
		Help: "Containers (of every kind) into which the service-host webhook injected KUBERNETES_SERVICE_HOST, dry runs excluded.",
	})

	// PodsMissingServiceHost is the missed-injection audit's count.
	PodsMissingServiceHost = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_pods_missing_service_host",
		Help: "Running Pods that should carry KUBERNETES_SERVICE_HOST but do not (admitted while no replica answered, or before svcguard); set by the leader's audit, 0 elsewhere.",
	})

	// InjectionPolicyActive is the leader's check of the policy twin.
	InjectionPolicyActive = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "svcguard_injection_policy_active",
		Help: "1 while the MutatingAdmissionPolicy twin named by --injection-policy exists, its binding does not narrow it, and it injects the values svcguard injects, 0 while not; " +
			"set by the leader only, and only when --injection-policy is set.",
	}, []string{"policy"})

	// MissedPodsEvicted counts remediation's evictions.
	MissedPodsEvicted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "svcguard_missed_pods_evicted_total",
		Help: "Missed Pods evicted by --remediate-missed-pods so that their controller re-creates them injected.",
	})
)

// The node-port guard and its audit (package webhook/nodeport).
var (
	// NodePortReassignmentsDenied counts denied moves of correct nodePorts.
	NodePortReassignmentsDenied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "svcguard_node_port_reassignments_denied_total",
		Help: "Service changes denied because they would move a correctly allocated nodePort (dry runs excluded).",
	})

	// PinsInDynamicBand counts flag pins where random allocation can take them first.
	PinsInDynamicBand = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_pins_in_dynamic_band",
		Help: "Pins from --pinned-node-ports that lie in the dynamic band of the nodePort range, where random allocation can take them first; move them to the static band.",
	})

	// NodePortsIncorrect is the nodePort audit's count, by broken rule.
	NodePortsIncorrect = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "svcguard_node_ports_incorrect",
		Help: "nodePorts that are not correctly allocated, by broken rule (out-of-range, reserved, pinned-elsewhere, pin-mismatch, host-port), " +
			"and annotation pins that lose a conflict with a flag pin or another annotation pin and pin nothing (pin-conflict); set by the leader's audit, 0 elsewhere.",
	}, []string{"reason"})
)

// The service-path guard's audit (package webhook/servicepath).
var (
	// ServicesMissingNamedPort is the service-path audit's count.
	ServicesMissingNamedPort = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_services_missing_named_port",
		Help: "Services whose targetPort name some selected Pods lack, or whose EndpointSlices list endpoints without ports " +
			"(proxies get no port for those Pods); set by the leader's audit, 0 elsewhere.",
	})

	// ServicesClaimingProtectedAddresses is the service-path audit's count of claims.
	ServicesClaimingProtectedAddresses = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "svcguard_services_claiming_protected_addresses",
		Help: "Services that claim an address of the API server or of --protected-cidrs (or an externalIP outside --allowed-external-ip-cidrs) " +
			"as an externalIP, loadBalancerIP or load balancer ingress IP; set by the leader's audit, 0 elsewhere.",
	})
)

// all lists every collector above, in the README's order.
var all = []prometheus.Collector{
	AdmissionRequests, AdmissionDuration, AdmissionPanics, AdmissionThrottled, InjectedContainers,
	NodePortReassignmentsDenied, PinsInDynamicBand, Ready, ReadinessCheck, Leader,
	ServingCertificateExpiration, CACertificateExpiration,
	PodsMissingServiceHost, InjectionPolicyActive, MissedPodsEvicted, NodePortsIncorrect, DegradedDecisions, ServicesMissingNamedPort,
	ServicesClaimingProtectedAddresses,
}

// Register adds every svcguard collector to r. Registering the same
// collectors again is not an error, since a test process builds several
// servers on one registry.
func Register(r prometheus.Registerer) error {
	for _, c := range all {
		if err := r.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) && already.ExistingCollector == c {
				continue
			}
			return err
		}
	}
	return nil
}

// DecisionOf classifies an admission response; patched tells whether it
// carries a JSON patch. A refusal with HTTP code 403 (or none) is a denial by
// a rule; any other code means the request could not be judged. The request
// counter and readiness's self-test judge answers by this one rule.
func DecisionOf(r *admissionv1.AdmissionResponse, patched bool) Decision {
	switch {
	case r.Allowed && patched:
		return Patched
	case r.Allowed:
		return Allowed
	case r.Result == nil || r.Result.Code == 0 || r.Result.Code == http.StatusForbidden:
		return Denied
	default:
		return Error
	}
}

// ObserveAdmission records one answered request. The operation comes from
// the request body, which anyone who reaches the listener can write, so only
// the four operations the admission API defines become label values; any
// other is counted as "other", keeping the series bounded.
func ObserveAdmission(webhook string, operation admissionv1.Operation, decision Decision, took time.Duration) {
	AdmissionRequests.WithLabelValues(webhook, OperationLabel(operation), string(decision)).Inc()
	AdmissionDuration.WithLabelValues(webhook).Observe(took.Seconds())
}

// OperationLabel is the label value of operation: itself for CREATE, UPDATE,
// DELETE and CONNECT, "other" for anything else.
func OperationLabel(operation admissionv1.Operation) string {
	switch operation {
	case admissionv1.Create, admissionv1.Update, admissionv1.Delete, admissionv1.Connect:
		return string(operation)
	default:
		return "other"
	}
}
