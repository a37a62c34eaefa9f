package servicepath

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"
)

// Handler answers the service-path guard's admission requests: decode the
// old and new Service, judge them with the Guard, respond.
type Handler struct {
	// Guard holds the rules' settings.
	Guard *Guard
	// View is the cluster as cached.
	View View
	// Decoder decodes the Services from the request.
	Decoder admission.Decoder
	// OnDegraded is told of each decision made before the caches synced;
	// not called for dry runs (readiness's self-test is one).
	OnDegraded func()
}

// Handle implements admission.Handler.
func (h *Handler) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Service" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf(
			"service-path guard received a %s %.63q, but only handles Services: check the rules of the ValidatingWebhookConfiguration",
			redact.Name(req.Kind.Kind), req.Resource.Resource))
	}
	status := req.SubResource == "status"
	judged := (req.SubResource == "" && (req.Operation == admissionv1.Create || req.Operation == admissionv1.Update)) ||
		(status && req.Operation == admissionv1.Update)
	if !judged {
		return admission.Allowed("service-path guard: nothing to judge")
	}

	review := Review{Status: status, View: h.View, New: &corev1.Service{}}
	if err := h.Decoder.DecodeRaw(req.Object, review.New); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("service-path guard cannot decode the Service in the request: %w", redact.Error(err)))
	}
	if req.Operation == admissionv1.Update {
		review.Old = &corev1.Service{}
		if err := h.Decoder.DecodeRaw(req.OldObject, review.Old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("service-path guard cannot decode the stored Service in the request: %w", redact.Error(err)))
		}
	}

	verdict := h.Guard.Judge(review)
	if verdict.Degraded && h.OnDegraded != nil && !ptr.Deref(req.DryRun, false) {
		h.OnDegraded()
	}
	if verdict.Allowed() {
		return admission.Allowed("").WithWarnings(verdict.Warnings...)
	}
	return admission.Denied(strings.Join(verdict.Denials, "; ")).WithWarnings(verdict.Warnings...)
}
