package servicehost

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"
)

// Handler answers the service-host webhook's admission requests: read the
// Pod (and, for kubectl debug, the Pod before), apply the Injection's rules,
// respond with the minimal JSON patch.
type Handler struct {
	// Injection says what to set.
	Injection Injection
	// Decoder decodes the Pod from the request.
	Decoder admission.Decoder
	// OnInjected is told how many containers a request injected; it is not
	// called for dry-run requests, which must have no side effects.
	OnInjected func(containers int)
}

// Handle implements admission.Handler. It reads the Pod with ReadPod (which
// refuses what the typed decoder refuses) and writes the JSON patch
// directly: one "add" per injected container, or one per variable where the
// container has env entries.
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

	pod, err := ReadPod(req.Object.Raw, h.Decoder)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("service-host webhook cannot decode the Pod in the request: %w", err))
	}
	if pod.OptedOut {
		return admission.Allowed(fmt.Sprintf("service-host: Pod opted out by label %s=%s", OptOutLabel, OptOutValue))
	}

	var patch []byte
	var injected int
	if debug {
		// The API server always sends the Pod before an UPDATE. Without it the
		// handler cannot tell the debug containers this request adds from the
		// ones that exist, and patching an existing one gets the request
		// refused; injecting nothing would let the new one in silently
		// without the variables. So a request without a readable old Pod is
		// refused like one without a readable Pod: loudly, and a real API
		// server never sends one.
		old, err := ReadPod(req.OldObject.Raw, h.Decoder)
		if err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf(
				"service-host webhook cannot decode the old Pod of a pods/ephemeralcontainers update, so it cannot tell the new ephemeral containers from the existing ones: %w", err))
		}
		patch, injected = h.Injection.NewEphemeralContainersPatch(pod, old)
	} else {
		patch, injected = h.Injection.PodPatch(pod)
	}
	if injected == 0 {
		return admission.Allowed("service-host: no container to inject (each sets the variables itself, or existed before)")
	}
	if h.OnInjected != nil && !ptr.Deref(req.DryRun, false) {
		h.OnInjected(injected)
	}
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &jsonPatch}}
}

// jsonPatch is the type of every patch the webhook answers with.
var jsonPatch = admissionv1.PatchTypeJSONPatch
