// Package metrics defines the Prometheus metrics that every svcguard webhook
// shares and registers them with controller-runtime's registry, so that they
// are served on /metrics next to controller-runtime's own webhook metrics.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
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

var (
	// AdmissionRequests counts admission requests by webhook, operation and decision.
	AdmissionRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "svcguard_admission_requests_total",
		Help: "Admission requests answered, by webhook, operation (CREATE, UPDATE, ...) and decision (allowed, patched, denied, error).",
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

	// DegradedDecisions counts decisions a webhook made without a dependency
	// that readiness found failing (for the node-port guard: without synced
	// caches), which it may only do under failurePolicy Ignore.
	DegradedDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "svcguard_degraded_decisions_total",
		Help: "Admission decisions a webhook made with only what it could decide locally, because a dependency (its caches) was not ready.",
	}, []string{"webhook"})
)

func init() {
	crmetrics.Registry.MustRegister(AdmissionRequests, AdmissionDuration, AdmissionPanics, DegradedDecisions)
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

// MustRegister registers a webhook's own collectors with the same registry.
func MustRegister(cs ...prometheus.Collector) {
	crmetrics.Registry.MustRegister(cs...)
}
