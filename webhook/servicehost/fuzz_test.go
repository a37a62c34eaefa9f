package servicehost

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"testing"
	"time"
	"unicode/utf8"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
)

// fuzzRequests are the request shapes the fuzzer picks from by number:
// the two the webhook mutates, one it lets through, and a wrong kind.
var fuzzRequests = []struct {
	op          admissionv1.Operation
	subResource string
	kind        bool // true: a Pod
}{
	{admissionv1.Create, "", true},
	{admissionv1.Update, "ephemeralcontainers", true},
	{admissionv1.Update, "", true},
	{admissionv1.Create, "", false},
}

// fuzzSeeds mirror the cases of TestHandler (whose table is local to it) as
// raw objects: {request shape, Pod, old Pod}.
var fuzzSeeds = []struct {
	shape    uint8
	obj, old string
}{
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"namespace":"team-a","name":"web"},"spec":{"containers":[{"name":"c0","image":"app"},{"name":"c1","image":"app","env":[{"name":"A","value":"1"}]}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"initContainers":[{"name":"init","image":"i"},{"name":"sidecar","image":"s","restartPolicy":"Always"}],"containers":[{"name":"c0","image":"app"}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0","image":"app"}],"ephemeralContainers":[{"name":"debugger","image":"busybox"}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0","env":[{"name":"KUBERNETES_SERVICE_HOST","value":"owner.example"}]}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0","env":[{"name":"KUBERNETES_SERVICE_HOST","valueFrom":{"fieldRef":{"fieldPath":"status.hostIP"}}}]}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0","env":[{"name":"A","value":"1"},{"name":"URL","value":"https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},{"name":"B","value":"2"}]}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"svcguard.io/service-host-injection":"disabled"}},"spec":{"containers":[{"name":"c0"}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"svcguard.io/service-host-injection":"enabled"}},"spec":{"containers":[{"name":"c0"}]}}`, ``},
	{0, `{"apiVersion":"v1","kind":"Pod","spec":{"containers":"not-a-list"}}`, ``},
	{0, `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c0","env":null}]}}`, ``},
	{0, `{}`, ``},
	{0, ``, ``},
	{1, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0"}],"ephemeralContainers":[{"name":"old","image":"b"},{"name":"debugger","image":"busybox"}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0"}],"ephemeralContainers":[{"name":"old","image":"b"}]}}`},
	{1, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0"}],"ephemeralContainers":[{"name":"debugger"}]}}`, ``},
	{1, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"ephemeralContainers":[{"name":"debugger"}]}}`, `{"spec":{"ephemeralContainers":"x"}}`},
	{2, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0"}]}}`, `{"apiVersion":"v1","kind":"Pod"}`},
	{3, `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`, ``},
}

// envPatchPath is every path the webhook may patch: a container's env, or
// anything inside it (entries after an insertion point are replaced).
var envPatchPath = regexp.MustCompile(`^/spec/(initContainers|containers|ephemeralContainers)/[0-9]+/env(/.*)?$`)

// FuzzHandler feeds the handler arbitrary Pods and old Pods. Whatever comes
// in, the handler answers (no panic, no hang) with a well-formed response:
// allowed, or refused with code 400 or 500 and a one-line message; a patch
// only touches containers' env, applies to the object the API server sent,
// sets the variables, and is not needed a second time.
func FuzzHandler(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s.shape, []byte(s.obj), []byte(s.old), "", "", false)
		f.Add(s.shape, []byte(s.obj), []byte(s.old), "", "", true)
	}
	one := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c0","env":[{"name":"A","value":"1"}]}]}}`
	for _, e := range [][2]string{{"URL", "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"}, {"KUBERNETES_SERVICE_HOST", "owner"},
		{"KUBERNETES_SERVICE_PORT", ""}, {"X", "$(KUBERNETES_SERVICE_PORT"}, {"", "$$(KUBERNETES_SERVICE_HOST)"}} {
		f.Add(uint8(0), []byte(one), []byte{}, e[0], e[1], true)
	}
	f.Fuzz(func(t *testing.T, shape uint8, obj, old []byte, envName, envValue string, withPort bool) {
		raw, ok := admissiontest.AsSent(obj)
		if !ok {
			return
		}
		// Env entries are what the webhook reads and writes: a fuzzed one goes
		// into the first container directly, rather than waiting for the
		// fuzzer to write it as JSON.
		raw = withEnv(raw, envName, envValue)
		oldRaw, ok := admissiontest.AsSent(old)
		if !ok {
			return
		}
		s := fuzzRequests[int(shape)%len(fuzzRequests)]
		r := admissiontest.Request{Operation: s.op, SubResource: s.subResource, Kind: admissiontest.PodKind,
			Resource: admissiontest.PodResource, Namespace: "team-a", Name: "web", RawObject: raw}
		if !s.kind {
			r.Kind, r.Resource = admissiontest.ServiceKind, admissiontest.ServiceResource
		}
		req := r.Build(t)
		req.Object.Raw, req.OldObject.Raw = raw, oldRaw // Build turns a nil object into an empty one
		injection := Injection{Host: "10.0.0.1"}
		if withPort {
			injection.Port = "6443"
		}
		h := &Handler{Injection: injection, Decoder: admissiontest.Decoder}

		resp := handleWithin(t, h, req)
		checkWellFormed(t, resp)
		sameAsTyped(t, req, resp, handleWithin(t, (*typedHandler)(h), req))
		if !resp.Allowed || len(resp.Patch) == 0 {
			return
		}
		for _, op := range admissiontest.Operations(t, resp) {
			if op.Op != "add" || !envPatchPath.MatchString(op.Path) || (s.subResource == "ephemeralcontainers" && !bytes.Contains([]byte(op.Path), []byte("/ephemeralContainers/"))) {
				t.Fatalf("patch operation %s %s touches more than the env of the containers it may change", op.Op, op.Path)
			}
		}
		ops := resp.Patch
		patch, err := jsonpatch.DecodePatch(ops)
		if err != nil {
			t.Fatalf("the patch %s is not a valid JSON patch: %v", ops, err)
		}
		patched, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("the patch %s does not apply to the object %s: %v", ops, raw, err)
		}
		var pod, before corev1.Pod
		if err := json.Unmarshal(patched, &pod); err != nil {
			t.Fatalf("the patched object %s does not decode: %v", patched, err)
		}
		if err := json.Unmarshal(raw, &before); err != nil {
			t.Fatalf("the object %s does not decode: %v", raw, err)
		}
		ownersKept(t, &before, &pod)
		if s.subResource == "" {
			for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
				for _, c := range cs {
					if !defines(c.Env, HostVar) || (withPort && !defines(c.Env, PortVar)) {
						t.Fatalf("container %q lacks the variables after the patch: %v", c.Name, c.Env)
					}
				}
			}
		}
		again := req
		again.Object.Raw = patched
		if second := handleWithin(t, h, again); !second.Allowed || len(second.Patch) > 0 {
			t.Fatalf("the patched Pod is patched again (not idempotent): allowed %v, %s", second.Allowed, second.Patch)
		}
	})
}

// withEnv adds the env entry name=value to the first container of the
// object raw, when it has one as a JSON object whose env is a list or none;
// raw is returned unchanged otherwise.
func withEnv(raw []byte, name, value string) []byte {
	if name == "" && value == "" {
		return raw
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil {
		return raw
	}
	spec, _ := obj["spec"].(map[string]any)
	containers, _ := spec["containers"].([]any)
	if len(containers) == 0 {
		return raw
	}
	c, ok := containers[0].(map[string]any)
	if !ok {
		return raw
	}
	env, ok := c["env"].([]any)
	if !ok && c["env"] != nil {
		return raw
	}
	c["env"] = append(env, map[string]any{"name": name, "value": value})
	out, err := json.Marshal(obj)
	if err != nil {
		return raw
	}
	return out
}

// ownersKept fails when a variable that a container set itself before the
// patch has another value, or another source, after it: the owner's choice
// wins.
func ownersKept(t *testing.T, before, after *corev1.Pod) {
	t.Helper()
	pairs := [][2][]corev1.Container{{before.Spec.InitContainers, after.Spec.InitContainers}, {before.Spec.Containers, after.Spec.Containers}}
	for _, pair := range pairs {
		for i, c := range pair[0] {
			if i >= len(pair[1]) {
				t.Fatalf("the patch removed container %q", c.Name)
			}
			for _, name := range []string{HostVar, PortVar} {
				was, had := firstEnv(c.Env, name)
				now, _ := firstEnv(pair[1][i].Env, name)
				if had && !reflect.DeepEqual(was, now) {
					t.Fatalf("container %q: the owner's %s %+v became %+v", c.Name, name, was, now)
				}
			}
		}
	}
}

func firstEnv(env []corev1.EnvVar, name string) (corev1.EnvVar, bool) {
	for _, e := range env {
		if e.Name == name {
			return e, true
		}
	}
	return corev1.EnvVar{}, false
}

// handleWithin calls the handler and fails when it does not answer within a
// generous bound (a hang, not a slow answer).
func handleWithin(t *testing.T, h admission.Handler, req admission.Request) admission.Response {
	t.Helper()
	done := make(chan admission.Response, 1)
	go func() { done <- h.Handle(context.Background(), req) }()
	select {
	case resp := <-done:
		return resp
	case <-time.After(10 * time.Second):
		t.Fatalf("the handler did not answer within 10s")
		return admission.Response{}
	}
}

// checkWellFormed fails unless resp is allowed (code 200, no status otherwise),
// or refused with code 400 or 500 and a one-line message, with a patch only
// when allowed.
func checkWellFormed(t *testing.T, resp admission.Response) {
	t.Helper()
	if resp.Allowed {
		if resp.Result != nil && resp.Result.Code != http.StatusOK {
			t.Fatalf("allowed with code %d", resp.Result.Code)
		}
		if len(admissiontest.PatchBytes(t, resp)) > 0 && (resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch) {
			t.Fatalf("a patch without patchType JSONPatch")
		}
		return
	}
	if len(resp.Patches) > 0 || len(resp.Patch) > 0 {
		t.Fatalf("a refusal carries a patch")
	}
	if resp.Result == nil {
		t.Fatalf("a refusal without a status")
	}
	if c := resp.Result.Code; c != http.StatusBadRequest && c != http.StatusInternalServerError {
		t.Fatalf("refused with code %d (want 400 or 500): %s", c, resp.Result.Message)
	}
	m := resp.Result.Message
	if m == "" || bytes.ContainsAny([]byte(m), "\n\r") || !utf8.ValidString(m) {
		t.Fatalf("a refusal must say why in one line of text: %q", m)
	}
}
