package servicehost

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"
)

// The typed path, the service-host webhook's answer before the fast path
// (patch.go): decode the whole Pod, apply the rules to the typed Pod, encode
// it before and after and diff the two. It stays here only as the oracle of
// the differential tests (patch_test.go).

// typedHandler is the typed path's admission handler.
type typedHandler Handler

// Handle implements admission.Handler.
func (h *typedHandler) Handle(_ context.Context, req admission.Request) admission.Response {
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

// ApplyToPod sets the variables in every container, init container (native
// sidecars included) and ephemeral container of pod that sets neither
// itself, and returns how many containers it changed. It is the rule of a
// Pod CREATE, where every container is new.
func (in Injection) ApplyToPod(pod *corev1.Pod) int {
	changed := 0
	for i := range pod.Spec.InitContainers {
		changed += in.applyToEnv(&pod.Spec.InitContainers[i].Env)
	}
	for i := range pod.Spec.Containers {
		changed += in.applyToEnv(&pod.Spec.Containers[i].Env)
	}
	for i := range pod.Spec.EphemeralContainers {
		changed += in.applyToEnv(&pod.Spec.EphemeralContainers[i].Env)
	}
	return changed
}

// ApplyToNewEphemeralContainers sets the variables in the ephemeral
// containers of pod that old, the Pod before a pods/ephemeralcontainers
// update (kubectl debug), does not have, matched by name, and returns how
// many it changed. That subresource may change nothing else: the API server
// refuses an update that touches any other container, and any ephemeral
// container that already exists ("existing ephemeral containers "dbg0" may
// not be changed"). An existing one may lack the variables (it was added
// while no replica answered, under failurePolicy Ignore); it is left so, or
// every later kubectl debug of the Pod would be refused.
func (in Injection) ApplyToNewEphemeralContainers(pod, old *corev1.Pod) int {
	existing := make(map[string]bool, len(old.Spec.EphemeralContainers))
	for _, c := range old.Spec.EphemeralContainers {
		existing[c.Name] = true
	}
	changed := 0
	for i := range pod.Spec.EphemeralContainers {
		if !existing[pod.Spec.EphemeralContainers[i].Name] {
			changed += in.applyToEnv(&pod.Spec.EphemeralContainers[i].Env)
		}
	}
	return changed
}

// applyToEnv adds the variables to env unless it defines either of them,
// and returns 1 when it added them.
//
// The pair is one unit: a container that sets KUBERNETES_SERVICE_HOST or
// KUBERNETES_SERVICE_PORT itself (by value or valueFrom, say to a local
// proxy) gets neither, so it never dials its own host on svcguard's port, or
// svcguard's host on its own port. The owner's choice wins.
//
// New entries go at the end, which keeps the JSON patch to one "add" per
// container, unless an existing entry refers to one of the variables as
// $(NAME): the kubelet expands such references only against entries defined
// before them, so the variables go right before the first such entry.
func (in Injection) applyToEnv(env *[]corev1.EnvVar) int {
	if setsServiceVar(*env) {
		return 0
	}
	vars := in.appendVars(nil)
	at := firstReference(*env, vars)
	out := make([]corev1.EnvVar, 0, len(*env)+len(vars))
	out = append(out, (*env)[:at]...)
	out = append(out, vars...)
	out = append(out, (*env)[at:]...)
	*env = out
	return 1
}

// firstReference returns the index of the first entry of env whose value
// refers to one of vars as $(NAME), or len(env) when none does.
func firstReference(env []corev1.EnvVar, vars []corev1.EnvVar) int {
	for i, e := range env {
		for _, v := range vars {
			if strings.Contains(e.Value, "$("+v.Name+")") {
				return i
			}
		}
	}
	return len(env)
}
