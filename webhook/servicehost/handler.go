package servicehost

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"
)

// Handler answers the service-host webhook's admission requests: decode the
// Pod (and, for kubectl debug, the Pod before), apply the Injection, respond
// with the minimal JSON patch.
type Handler struct {
	// Injection says what to set.
	Injection Injection
	// Decoder decodes the Pod from the request.
	Decoder admission.Decoder
	// OnInjected is told how many containers a request injected; it is not
	// called for dry-run requests, which must have no side effects.
	OnInjected func(containers int)
}

// Handle implements admission.Handler.
func (h *Handler) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf(
			"service-host webhook received a %s %.63q, but only handles Pods: check the rules of the MutatingWebhookConfiguration",
			redact.Name(req.Kind.Kind), req.Resource.Resource))
	}
	create := req.Operation == admissionv1.Create && req.SubResource == ""
	debug := req.Operation == admissionv1.Update && req.SubResource == "ephemeralcontainers"
	if !create && !debug {
		return admission.Allowed(fmt.Sprintf("service-host: nothing to do on %s of pods/%s", req.Operation, req.SubResource))
	}

	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("service-host webhook cannot decode the Pod in the request: %w", redact.Error(err)))
	}
	if OptedOut(pod.Labels) {
		return admission.Allowed(fmt.Sprintf("service-host: Pod opted out by label %s=%s", OptOutLabel, OptOutValue))
	}

	apply := h.Injection.ApplyToPod
	if debug {
		// The API server always sends the Pod before an UPDATE. Without it the
		// handler cannot tell the debug containers this request adds from the
		// ones that exist, and patching an existing one gets the request
		// refused; injecting nothing would let the new one in silently
		// without the variables. So a request without a readable old Pod is
		// refused like one without a readable Pod: loudly, and a real API
		// server never sends one.
		old := &corev1.Pod{}
		if err := h.Decoder.DecodeRaw(req.OldObject, old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf(
				"service-host webhook cannot decode the old Pod of a pods/ephemeralcontainers update, so it cannot tell the new ephemeral containers from the existing ones: %w", redact.Error(err)))
		}
		apply = func(p *corev1.Pod) int { return h.Injection.ApplyToNewEphemeralContainers(p, old) }
	}

	original, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("service-host webhook cannot encode the Pod: %w", err))
	}
	injected := apply(pod)
	if injected == 0 {
		return admission.Allowed("service-host: no container to inject (each sets the variables itself, or existed before)")
	}
	mutated, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("service-host webhook cannot encode the Pod: %w", err))
	}
	if h.OnInjected != nil && !ptr.Deref(req.DryRun, false) {
		h.OnInjected(injected)
	}
	// Diffing the typed Pod before and after (not the raw request against the
	// result) keeps the patch to the env entries added: a typed round trip
	// would otherwise add defaults such as "resources": {} to the patch.
	return admission.PatchResponseFromRaw(original, mutated)
}
