package servicehost

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/fixtures"
)

// sameAsTyped fails unless the fast path's answer fast and the typed path's
// answer typed to req are the same decision: both allowed or both refused
// with the same code, and when patched, both patches give the same object
// applied to the request's.
func sameAsTyped(t *testing.T, req admission.Request, fast, typed admission.Response) {
	t.Helper()
	if !fast.Allowed && typed.Allowed && strings.Contains(admissiontest.Message(fast), errAmbiguous.Error()) {
		// The one documented difference: see errAmbiguous.
		if fast.Result.Code != http.StatusBadRequest {
			t.Fatalf("an ambiguous document is refused with %d, want 400", fast.Result.Code)
		}
		return
	}
	if fast.Allowed != typed.Allowed {
		t.Fatalf("fast path allowed=%v (%s), typed path allowed=%v (%s), for %s",
			fast.Allowed, admissiontest.Message(fast), typed.Allowed, admissiontest.Message(typed), req.Object.Raw)
	}
	if !fast.Allowed {
		if fast.Result.Code != typed.Result.Code {
			t.Fatalf("fast path refused with %d (%s), typed path with %d (%s)", fast.Result.Code, fast.Result.Message, typed.Result.Code, typed.Result.Message)
		}
		return
	}
	fastPatch, typedPatch := admissiontest.PatchBytes(t, fast), admissiontest.PatchBytes(t, typed)
	if (len(fastPatch) == 0) != (len(typedPatch) == 0) {
		t.Fatalf("fast path patch %s, typed path patch %s, for %s", fastPatch, typedPatch, req.Object.Raw)
	}
	if len(fastPatch) == 0 {
		return
	}
	got, err := applied(fastPatch, req.Object.Raw)
	if err != nil {
		t.Fatalf("the fast path's patch: %v", err)
	}
	want, err := applied(typedPatch, req.Object.Raw)
	if err != nil {
		// The typed path diffed its own encoding of the Pod, which can name
		// members the request lacks ("replace" of an env entry's absent name):
		// its patch then applies only to that encoding.
		var pod corev1.Pod
		if err := admissiontest.Decoder.DecodeRaw(req.Object, &pod); err != nil {
			t.Fatalf("the typed path patched a Pod it cannot decode: %v", err)
		}
		encoded, _ := json.Marshal(&pod)
		if want, err = applied(typedPatch, encoded); err != nil {
			t.Fatalf("the typed path's patch: %v", err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the patches give different Pods\nfast  %s\ntyped %s\nobject %s\nfast gives  %+v\ntyped gives %+v", fastPatch, typedPatch, req.Object.Raw, got.Spec, want.Spec)
	}
}

// applied is patch applied to raw, decoded as the API server would store it.
func applied(patch, raw []byte) (*corev1.Pod, error) {
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("%s is not a JSON patch: %w", patch, err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		return nil, fmt.Errorf("%s does not apply to %s: %w", patch, raw, err)
	}
	var pod corev1.Pod
	if err := admissiontest.Decoder.DecodeRaw(runtime.RawExtension{Raw: out}, &pod); err != nil {
		return nil, fmt.Errorf("the patched object %s does not decode: %w", out, err)
	}
	return &pod, nil
}

// injections are the settings the differential tests try.
var injections = []Injection{{Host: testHost}, {Host: testHost, Port: testPort}, {Host: "api.example.com", Port: "443"}, {Host: `a"b<c>&`, Port: "1"}}

// TestFastPathMatchesTypedOnTheHandlerTables runs the requests of every
// handler test through both paths, under every injection.
func TestFastPathMatchesTypedOnTheHandlerTables(t *testing.T) {
	var requests []admissiontest.Request
	for _, s := range fuzzSeeds {
		r := admissiontest.Request{Operation: fuzzRequests[s.shape].op, SubResource: fuzzRequests[s.shape].subResource,
			Kind: admissiontest.PodKind, Resource: admissiontest.PodResource, RawObject: []byte(s.obj)}
		requests = append(requests, r)
	}
	pods := append(fixtures.InjectionTable("team", fixtures.Label(OptOutLabel, OptOutValue)), corpus(rand.New(rand.NewPCG(1, 2)), 500)...)
	for i, p := range pods {
		requests = append(requests, podRequest(admissionv1.Create, "", p))
		if i%5 == 0 {
			old := p.DeepCopy()
			if n := len(old.Spec.EphemeralContainers); n > 0 {
				old.Spec.EphemeralContainers = old.Spec.EphemeralContainers[:n/2]
			}
			requests = append(requests, debugRequest(old, p))
		}
	}
	for _, in := range injections {
		for i, r := range requests {
			t.Run(fmt.Sprintf("%s:%s/%d", in.Host, in.Port, i), func(t *testing.T) {
				req := r.Build(t)
				if r.RawObject != nil && len(r.RawObject) == 0 {
					req.Object.Raw = nil
				}
				h := &Handler{Injection: in, Decoder: admissiontest.Decoder}
				sameAsTyped(t, req, h.Handle(context.Background(), req), (*typedHandler)(h).Handle(context.Background(), req))
			})
		}
	}
}

// corpus is fixtures.InjectionCorpus in namespace team, opted out by label.
func corpus(r *rand.Rand, n int) []*corev1.Pod {
	return fixtures.InjectionCorpus(r, n, "team", fixtures.Label(OptOutLabel, OptOutValue))
}

// TestReadPodRefusesWhatTheDecoderRefuses covers the errors the fast path
// must keep: each body is refused by both paths, with code 400.
func TestReadPodRefusesWhatTheDecoderRefuses(t *testing.T) {
	base := `"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}`
	for _, body := range []string{
		``, `x`, `[1]`, `"pod"`, `{` + base + `,"spec":{"containers":"not-a-list"}}`,
		`{"apiVersion":"v2","kind":"Pod"}`, `{"apiVersion":"v1","kind":"Service"}`, `{"kind":"Deployment"}`, `{"apiVersion":5}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"creationTimestamp":"yesterday"}}`,
		`{` + base + `,"spec":{"priority":1.5}}`, `{` + base + `,"spec":{"priority":1e2}}`, `{` + base + `,"spec":{"priority":2147483648}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","ports":[{"containerPort":"80"}]}]}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"lots"}}}]}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1\u0030"}}}]}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","env":[{"name":"A","value":"\x41"}]}]}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","env":[{"name":"A","value":1}]}]}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","livenessProbe":{"httpGet":{"port":1.5}}}]}}`,
		`{` + base + `,"spec":{"containers":[{"name":"a","env":[]}],"containers":"x"}}`,
		`{` + base + `,"metadata":{"labels":{"a":1}}}`,
	} {
		t.Run(body, func(t *testing.T) {
			req := admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource, RawObject: []byte(body)}.Build(t)
			req.Object.Raw = []byte(body)
			h := &Handler{Injection: Injection{Host: testHost}, Decoder: admissiontest.Decoder}
			fast := h.Handle(context.Background(), req)
			if fast.Allowed {
				t.Fatalf("the fast path allowed %s", body)
			}
			sameAsTyped(t, req, fast, (*typedHandler)(h).Handle(context.Background(), req))
		})
	}
}

// TestReadPodAcceptsWhatTheDecoderAccepts covers documents that look odd but
// decode: the fast path answers them as the typed path does.
func TestReadPodAcceptsWhatTheDecoderAccepts(t *testing.T) {
	deep := strings.Repeat(`[`, 400) + strings.Repeat(`]`, 400)
	for _, body := range []string{
		`null`, `{}`, ` {"apiVersion":"v1","kind":"Pod"} `, `{"kind":"Pod"}`, `{"apiVersion":"v1"}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a"}]},"x":` + deep + `}`,
		`{"apiVersion":"v1","kind":"Pod","Spec":{"containers":"x"},"spec":{"containers":[{"name":"b","env":[{"name":"A"}]}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","env":[{"name":"\u004bUBERNETES_SERVICE_HOST","value":"x"}]}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","env":[{"name":"U","value":"\u0024(KUBERNETES_SERVICE_HOST)"}]}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"priority":-0,"containers":[{"name":"a","resources":{"limits":{"cpu":2}}}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","ports":[{"containerPort":80,"name":"web"}],"livenessProbe":{"httpGet":{"port":"web"}}}]}}`,
	} {
		t.Run(body[:min(len(body), 80)], func(t *testing.T) {
			req := admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource, RawObject: []byte(body)}.Build(t)
			h := &Handler{Injection: Injection{Host: testHost, Port: testPort}, Decoder: admissiontest.Decoder}
			fast := h.Handle(context.Background(), req)
			if !fast.Allowed {
				t.Fatalf("the fast path refused %s: %s", body, admissiontest.Message(fast))
			}
			sameAsTyped(t, req, fast, (*typedHandler)(h).Handle(context.Background(), req))
		})
	}
}

// TestReadPodRefusesAmbiguousDocumentsTheAPIServerNeverSends: duplicate
// members where the decision reads, and null containers or env entries, are
// refused with 400 (see errAmbiguous), while the typed decoder would merge
// them.
func TestReadPodRefusesAmbiguousDocumentsTheAPIServerNeverSends(t *testing.T) {
	for _, body := range []string{
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","env":[{"name":"KUBERNETES_SERVICE_HOST"}]}],"containers":[{"name":"b"}]}}`,
		`{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"svcguard.io/service-host-injection":"disabled","svcguard.io/service-host-injection":"x"}}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[null,{"name":"b"}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"b","env":[null]}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"b","env":[{"name":"A","name":"KUBERNETES_SERVICE_PORT"}]}]}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{},"spec":{"containers":[{"name":"b"}]}}`,
	} {
		t.Run(body, func(t *testing.T) {
			req := admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource, RawObject: []byte(body)}.Build(t)
			h := &Handler{Injection: Injection{Host: testHost}, Decoder: admissiontest.Decoder}
			resp := h.Handle(context.Background(), req)
			require.False(t, resp.Allowed, "allowed %s", body)
			assert.EqualValues(t, http.StatusBadRequest, resp.Result.Code)
			assert.Contains(t, resp.Result.Message, "no API server sends")
		})
	}
}

func TestEnvEntriesAreTheJSONOfTheirEnvVar(t *testing.T) {
	for _, value := range []string{"10.0.0.1", "fd00::1", "api.example.com", "6443", "", `a"b`, `a\b`, "<&>", "é", "\x01", "\u2028"} {
		want, err := json.Marshal(corev1.EnvVar{Name: HostVar, Value: value})
		require.NoError(t, err)
		got := appendEnvEntry(nil, HostVar, value)
		var a, b corev1.EnvVar
		require.NoError(t, json.Unmarshal(got, &a), "entry %s is not JSON", got)
		require.NoError(t, json.Unmarshal(want, &b))
		assert.Equal(t, b, a, "the entry for %q decodes to the EnvVar", value)
		if value == "10.0.0.1" {
			assert.Equal(t, string(want), string(got), "a plain value is written as encoding/json writes it")
		}
	}
}
