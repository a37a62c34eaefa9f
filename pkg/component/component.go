// Package component holds the descriptors that connect a webhook package to
// the server that serves it: what the server gives a webhook to build with
// (Dependencies), and what a webhook gives back (Webhook, plus a leader-only
// audit, together a Built). It is a leaf: it imports neither package server
// nor any webhook, so both depend on it and never on each other.
//
// Every webhook package has the same builder:
//
//	func Build(settings *Options, deps component.Dependencies) (component.Built, error)
//
// Options are settings only (flags and their validation); Build takes
// everything else as arguments, so nothing depends on the order of calls.
package component

import (
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/podwatch"
)

// Webhook is one admission endpoint that svcguard serves.
type Webhook struct {
	// Name labels the webhook's metrics and log lines ("service-host").
	Name string
	// Path is the URL path the webhook configuration points at ("/webhooks/service-host").
	Path string
	// Handler decides each request.
	Handler admission.Handler
	// Off marks a webhook whose settings turn it off: its handler admits
	// everything unchanged, and the server says so at start.
	Off bool
	// CachesSynced, when set, reports whether the informer caches that the
	// webhook's full decisions need are synced; readiness checks it under
	// the webhook's live failure policy.
	CachesSynced func() bool
	// SelfTest is a typical request the webhook must judge without error.
	// Readiness sends it through the listener and this webhook's real code
	// every round (see readiness.ServingCheck); it stays out of metrics.
	SelfTest admissionv1.AdmissionRequest
}

// Built is what a webhook package's Build returns.
type Built struct {
	// Webhook is served by every replica.
	Webhook Webhook
	// Audit runs only on the replica that leads; nil when the settings turn
	// it off.
	Audit manager.Runnable
	// Checks are more leader-only work beside the audit (the service-host
	// webhook's check of its policy twin).
	Checks []manager.Runnable
	// Notes are lines for /readyz?verbose that never affect readiness.
	Notes []func() string
}

// Dependencies are what the server gives a webhook package to build with.
type Dependencies struct {
	// Decoder decodes admission request objects with the server's API scheme.
	Decoder admission.Decoder
	// Client reaches the API server (informers, the audits' reads, evictions).
	Client kubernetes.Interface
	// Recorder writes Kubernetes Events as "svcguard".
	Recorder events.EventRecorder
	// AuditInterval is the time between passes of leader-only audits (--audit-interval).
	AuditInterval time.Duration
	// OwnNamespace is svcguard's namespace, empty outside a cluster.
	OwnNamespace string
	// Start runs r (informer caches, say) for as long as the server runs, on
	// every replica.
	Start func(r manager.Runnable) error
	// Pods is the replica's one watch of every Pod: a webhook that reads
	// Pods registers its part of it in Build (podwatch.Register), never an
	// informer of its own. The server runs it when any part is registered.
	Pods *podwatch.Watch
}

// CreateRequest is a CREATE of a core/v1 object of kind (its resource in the
// plural) named svcguard-self-test in namespace svcguard-self-test, as the
// API server would send it: what webhooks give as their SelfTest.
func CreateRequest(kind, resource, object string) admissionv1.AdmissionRequest {
	return admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: kind},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: resource},
		Namespace: "svcguard-self-test",
		Name:      "svcguard-self-test",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: []byte(object)},
	}
}
