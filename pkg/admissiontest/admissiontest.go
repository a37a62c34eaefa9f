// Package admissiontest builds admission requests and reads admission
// responses for the tests of every webhook and of the server, so that no
// test hand-rolls AdmissionReview plumbing of its own: Request is the one
// way to describe a request, whether a test hands it to a handler or posts
// it over HTTPS as the API server does (readiness.PostReview). The objects
// in requests come from pkg/fixtures.
package admissiontest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/warning"
)

// Decoder decodes with client-go's scheme, as the server does.
var Decoder = admission.NewDecoder(clientgoscheme.Scheme)

// Request describes one admission request; zero fields get the defaults of
// a plain CREATE by user "alice".
type Request struct {
	Operation   admissionv1.Operation
	Kind        metav1.GroupVersionKind
	Resource    metav1.GroupVersionResource
	SubResource string
	Namespace   string
	Name        string
	Object      runtime.Object
	OldObject   runtime.Object
	// RawObject, when set, is sent as the object instead of Object (for
	// undecodable bodies).
	RawObject []byte
	DryRun    bool
	User      string
	Groups    []string
}

// Build returns the admission.Request that the API server would send.
func (r Request) Build(t testing.TB) admission.Request {
	t.Helper()
	if r.Operation == "" {
		r.Operation = admissionv1.Create
	}
	if r.User == "" {
		r.User = "alice"
	}
	raw := r.RawObject
	if raw == nil && r.Object != nil {
		raw = mustMarshal(t, r.Object)
	}
	var oldRaw []byte
	if r.OldObject != nil {
		oldRaw = mustMarshal(t, r.OldObject)
	}
	dryRun := r.DryRun
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:         types.UID("test-uid"),
		Operation:   r.Operation,
		Kind:        r.Kind,
		Resource:    r.Resource,
		SubResource: r.SubResource,
		Namespace:   r.Namespace,
		Name:        r.Name,
		Object:      runtime.RawExtension{Raw: raw},
		OldObject:   runtime.RawExtension{Raw: oldRaw},
		DryRun:      &dryRun,
		UserInfo:    authenticationv1.UserInfo{Username: r.User, Groups: r.Groups},
	}}
}

// PodCreate is the CREATE of a one-container Pod default/app (image nginx),
// the plain request that tests playing the API server send.
func PodCreate() Request {
	pod := fixtures.Pod("default", "app", fixtures.Container("app", "nginx"))
	return Request{Kind: PodKind, Resource: PodResource, Namespace: pod.Namespace, Name: pod.Name, Object: pod}
}

// PodKind and PodResource identify core/v1 Pods in a request.
var (
	PodKind     = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	PodResource = metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
)

// ServiceKind and ServiceResource identify core/v1 Services in a request.
var (
	ServiceKind     = metav1.GroupVersionKind{Version: "v1", Kind: "Service"}
	ServiceResource = metav1.GroupVersionResource{Version: "v1", Resource: "services"}
)

// Patched applies the response's JSON patch to the request's object and
// decodes the result into out, as the API server would store it.
func Patched(t testing.TB, req admission.Request, resp admission.Response, out runtime.Object) {
	t.Helper()
	ops := PatchBytes(t, resp)
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("the response's patch %s is not a valid JSON patch: %v", ops, err)
	}
	result, err := patch.Apply(req.Object.Raw)
	if err != nil {
		t.Fatalf("the response's patch %s does not apply to the request's object: %v", ops, err)
	}
	if err := json.Unmarshal(result, out); err != nil {
		t.Fatalf("the patched object does not decode: %v", err)
	}
}

// PatchBytes returns the response's JSON patch as the API server receives
// it: the operations a handler listed (Patches), else the raw patch it
// wrote; nil when it has none.
func PatchBytes(t testing.TB, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patches) == 0 {
		return resp.Patch
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatalf("encoding the response's patch: %v", err)
	}
	return ops
}

// Operation is one operation of a JSON patch.
type Operation struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value,omitempty"`
}

// Operations returns the operations of the response's JSON patch (see
// PatchBytes); it fails t when the patch is not a JSON list of operations.
func Operations(t testing.TB, resp admission.Response) []Operation {
	t.Helper()
	raw := PatchBytes(t, resp)
	if raw == nil {
		return nil
	}
	var ops []Operation
	if err := json.Unmarshal(raw, &ops); err != nil {
		t.Fatalf("the response's patch %s is not a list of operations: %v", raw, err)
	}
	return ops
}

// Message returns the response's status message, or "" when it has none.
func Message(resp admission.Response) string {
	if resp.Result == nil {
		return ""
	}
	return resp.Result.Message
}

func mustMarshal(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatalf("encoding %T: %v", obj, err)
	}
	return raw
}

// AsSent turns fuzzed bytes into what an object in an AdmissionReview can
// be: the API server sends its own serialization, always valid JSON with no
// duplicate keys, and controller-runtime keeps a "null" object as none. It
// reports false for bytes that cannot arrive at all.
func AsSent(b []byte) ([]byte, bool) {
	if len(b) == 0 {
		return nil, true
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, false
	}
	if v == nil {
		return nil, true
	}
	out, err := json.Marshal(v)
	return out, err == nil
}

// OneLineText tells whether s is valid UTF-8 without line breaks: safe in
// one log line, one HTTP header, one line of kubectl output.
func OneLineText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsAny(s, "\r\n")
}

// CheckValidatingResponse fails t unless resp is what a validating webhook
// may answer, whatever came in: no patch; allowed with code 200, denied with
// 403, or refused with 400; a denial or refusal says why in one line; and
// each warning is one line short enough (warning.Max) for the API server to
// pass on whole as an HTTP Warning header.
func CheckValidatingResponse(t testing.TB, resp admission.Response) {
	t.Helper()
	if len(resp.Patches) > 0 || len(resp.Patch) > 0 || resp.PatchType != nil {
		t.Fatalf("a validating webhook answered with a patch")
	}
	for _, w := range resp.Warnings {
		if len(w) > warning.Max || !OneLineText(w) {
			t.Fatalf("warning %q: more than %d bytes or not one line of UTF-8 text", w, warning.Max)
		}
	}
	if resp.Allowed {
		if resp.Result != nil && resp.Result.Code != http.StatusOK {
			t.Fatalf("allowed with code %d", resp.Result.Code)
		}
		return
	}
	if resp.Result == nil {
		t.Fatalf("a refusal without a status")
	}
	if c := resp.Result.Code; c != http.StatusForbidden && c != http.StatusBadRequest {
		t.Fatalf("refused with code %d (want 403 denied or 400 not judged): %s", c, resp.Result.Message)
	}
	if m := resp.Result.Message; m == "" || !OneLineText(m) {
		t.Fatalf("a refusal must say why in one line of text: %q", m)
	}
}
