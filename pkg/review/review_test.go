package review

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

// echo answers with everything of the request it was given, so that two
// answers are equal only if the two requests were.
var echo = admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
	seen, err := json.Marshal(req.AdmissionRequest)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.Allowed(string(seen))
})

// answer is what a handler sends for body.
type answer struct {
	code int
	body string
}

func serve(h http.Handler, body []byte, contentType string) answer {
	r := httptest.NewRequest(http.MethodPost, "/webhooks/x", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return answer{w.Code, w.Body.String()}
}

// both serves body with controller-runtime's webhook and with Handler over
// the same handler and returns the two answers.
func both(body []byte, contentType string) (want, got answer) {
	return serve(&webhook.Admission{Handler: echo}, body, contentType),
		serve(Handler{Webhook: &webhook.Admission{Handler: echo}}, body, contentType)
}

// reviewOf is an AdmissionReview of apiVersion holding req, as JSON.
func reviewOf(t testing.TB, apiVersion string, req admissionv1.AdmissionRequest) []byte {
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "AdmissionReview"},
		Request:  &req,
	})
	require.NoError(t, err)
	return body
}

func podRaw(t testing.TB, containers int) []byte {
	raw, err := json.Marshal(fixtures.TypicalPod(containers))
	require.NoError(t, err)
	return raw
}

// wellFormed are reviews as API servers send them: Decode must read each
// in one pass, and exactly as controller-runtime does.
func wellFormed(t testing.TB) map[string][]byte {
	pod := podRaw(t, 5)
	full := admissionv1.AdmissionRequest{
		UID:                "7c3e1f2a-0b9d-4c5e-8f6a-1b2c3d4e5f60",
		Kind:               metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:           metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		SubResource:        "ephemeralcontainers",
		RequestKind:        &metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		RequestResource:    &metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		RequestSubResource: "ephemeralcontainers",
		Name:               "web-1", Namespace: "shop", Operation: admissionv1.Update,
		UserInfo: authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", UID: "u-1",
			Groups: []string{"system:serviceaccounts", "system:authenticated"}, Extra: map[string]authenticationv1.ExtraValue{"scope": {"a", "b"}}},
		Object: runtime.RawExtension{Raw: pod}, OldObject: runtime.RawExtension{Raw: pod},
		DryRun:  new(true),
		Options: runtime.RawExtension{Raw: []byte(`{"kind":"UpdateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl"}`)},
	}
	create := admissionv1.AdmissionRequest{UID: "u", Kind: full.Kind, Resource: full.Resource, Name: "web-1", Namespace: "shop",
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: podRaw(t, 1)}}
	escaped := create
	escaped.Name, escaped.UserInfo.Username = `a "quoted" <name> é\ `, "ユーザー"
	out := map[string][]byte{
		"v1 create":                 reviewOf(t, "admission.k8s.io/v1", create),
		"v1beta1 create":            reviewOf(t, "admission.k8s.io/v1beta1", create),
		"every field":               reviewOf(t, "admission.k8s.io/v1", full),
		"escapes and unicode":       reviewOf(t, "admission.k8s.io/v1", escaped),
		"20 containers":             reviewOf(t, "admission.k8s.io/v1", admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: podRaw(t, 20)}}),
		"dry run false, null parts": []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","dryRun":false,"oldObject":null,"requestKind":null,"name":null,"userInfo":null,"object":{"kind":"Pod"}}}`),
		"unknown fields":            []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","extra":[1,{"a":"}"}],"request":{"uid":"u","Uid":"other","future":{"x":[]},"object":{}}}`),
		"a response that is null":   []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":null,"request":{"uid":"u"}}`),
		"whitespace everywhere":     []byte(" {\n\t\"apiVersion\" : \"admission.k8s.io/v1\" ,\r\n \"kind\":\"AdmissionReview\", \"request\" : { \"uid\" : \"u\" , \"object\" : { \"a\" : [ 1 , 2 ] } , \"dryRun\" : true } } \n"),
		"an object of any JSON":     []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":"a string","options":12.5e3}}`),
	}
	return out
}

func TestDecodeReadsWellFormedReviewsInOnePassAsControllerRuntimeDoes(t *testing.T) {
	for name, body := range wellFormed(t) {
		t.Run(name, func(t *testing.T) {
			req, gvk, ok := Decode(body)
			require.True(t, ok, "expected the one-pass reading of a well-formed review, got the fallback")
			assert.Equal(t, "AdmissionReview", gvk.Kind)
			if req.Object.Raw != nil {
				assert.True(t, bytes.Contains(body, req.Object.Raw), "the object is a slice of the body")
			}
			want, got := both(body, "application/json")
			assert.Equal(t, want, got, "the answer for the same review")
		})
	}
}

// malformed are bodies Decode must leave to controller-runtime; every one
// must get controller-runtime's own answer.
var malformed = map[string]string{
	"empty":                       ``,
	"not JSON":                    `request: {uid: u}`,
	"truncated":                   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"`,
	"an array":                    `[{"kind":"AdmissionReview"}]`,
	"no kind":                     `{"apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}`,
	"another kind":                `{"kind":"Pod","apiVersion":"v1","request":{"uid":"u"}}`,
	"another version":             `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v2","request":{"uid":"u"}}`,
	"a null request":              `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":null}`,
	"no request":                  `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}`,
	"a request that is a string":  `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":"u"}`,
	"a uid that is a number":      `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":5}}`,
	"a dryRun that is a string":   `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","dryRun":"yes"}}`,
	"a kind that is an array":     `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":[]}}`,
	"groups that are a string":    `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","userInfo":{"groups":"a"}}}`,
	"duplicate uid":               `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"a","uid":"b"}}`,
	"duplicate object":            `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"a":1},"object":{"b":2}}}`,
	"duplicate request":           `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"a"},"request":{"uid":"b"}}`,
	"an escaped key":              `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"\u0075id":"u"}}`,
	"a response":                  `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"},"response":{"allowed":"no"}}`,
	"invalid UTF-8 in a name":     "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"u\",\"name\":\"a\xffb\"}}",
	"a control byte in a string":  "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{\"uid\":\"u\x01\"}}",
	"YAML":                        "kind: AdmissionReview\napiVersion: admission.k8s.io/v1\nrequest:\n  uid: u\n",
	"trailing garbage":            `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}} {}`,
	"a number that overflows":     `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"n":1e999}}}`,
	"an escaped kind":             `{"kind":"Admission\u0052eview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u"}}`,
	"an extra entry of two types": `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","userInfo":{"extra":{"a":"b"}}}}`,
	"a kind in another case":      `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","Kind":"X","request":{"uid":"u"}}`,
	"a Kelvin sign in kind":       "{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"\u212aind\":\"X\",\"request\":{\"uid\":\"u\"}}",
	"an APIVERSION":               `{"APIVERSION":"v1","apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`,
	"an object nested past the limit": `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":` +
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + `}}`,
	"an object nested past the decoder's limit": `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":` +
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}`,
}

func TestEveryOtherBodyGetsControllerRuntimesOwnAnswer(t *testing.T) {
	for name, body := range malformed {
		t.Run(name, func(t *testing.T) {
			want, got := both([]byte(body), "application/json")
			assert.Equal(t, want, got, "the answer for the same body")
		})
	}
	valid := wellFormed(t)["v1 create"]
	for _, contentType := range []string{"", "text/plain", "application/json; charset=utf-8"} {
		want, got := both(valid, contentType)
		assert.Equal(t, want, got, "the answer with Content-Type %q", contentType)
		assert.Equal(t, http.StatusOK, got.code, "a review error is an AdmissionReview, sent with 200")
		assert.Contains(t, got.body, "expected application/json")
	}
}

func TestABodyAtTheSizeLimitIsRefusedAsControllerRuntimeRefusesIt(t *testing.T) {
	for _, size := range []int{MaxRequestBytes - 1, MaxRequestBytes, MaxRequestBytes + 10} {
		prefix := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"pad":"`
		suffix := `"}}}`
		body := prefix + strings.Repeat("x", size-len(prefix)-len(suffix)) + suffix
		want, got := both([]byte(body), "application/json")
		assert.Equal(t, want, got, "the answer for a body of %d bytes", size)
		if size >= MaxRequestBytes {
			assert.Contains(t, got.body, "request entity is too large", "a body of %d bytes", size)
		}
	}
}

// stalled is a body that yields part of a review, then fails every read as
// a connection past its read deadline does, and would block a second reader.
type stalled struct {
	part  io.Reader
	after int // reads after the failure: must be 0
}

func (s *stalled) Read(p []byte) (int, error) {
	if n, err := s.part.Read(p); err != io.EOF {
		return n, err
	}
	if s.after++; s.after > 1 {
		panic("the body was read again after it failed: a real connection would block here")
	}
	return 0, errors.New("read tcp 127.0.0.1:9443->127.0.0.1:50000: i/o timeout")
}

func TestABodyThatFailsMidwayGetsControllerRuntimesAnswerWithoutASecondRead(t *testing.T) {
	part := `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":{"a":`
	answer := func(h http.Handler) answer {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/x", &stalled{part: strings.NewReader(part)})
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return answer{w.Code, w.Body.String()}
	}
	want := answer(&webhook.Admission{Handler: echo})
	got := answer(Handler{Webhook: &webhook.Admission{Handler: echo}})
	assert.Equal(t, want, got)
	assert.Contains(t, got.body, "i/o timeout")
}

func TestAPanickingHandlerIsRecoveredAsControllerRuntimeRecoversIt(t *testing.T) {
	boom := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { panic("boom") })
	body := wellFormed(t)["v1 create"]
	want := serve(&webhook.Admission{Handler: boom}, body, "application/json")
	got := serve(Handler{Webhook: &webhook.Admission{Handler: boom}}, body, "application/json")
	assert.Equal(t, want, got)
	assert.Contains(t, got.body, `panic: boom [recovered]`)
}

func TestAHugelyNestedBodyIsLeftToControllerRuntimeUnvalidated(t *testing.T) {
	// Three MiB of '[': fastjson's validator would recurse once per byte.
	body := []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","object":` + strings.Repeat("[", 3<<20))
	_, _, ok := Decode(body)
	assert.False(t, ok)
	want, got := both(body, "application/json")
	assert.Equal(t, want, got)
	assert.True(t, deeperThan([]byte(`[[["]]]]]]"]]]`), 2), "brackets inside strings do not count")
	assert.False(t, deeperThan([]byte(`[["[[[[\"[[["]]`), 2), "nor after an escaped quote")
}

// seeds are every well-formed and malformed body shorter than maxLen, in
// a fixed order (the maps' is random), so that seeded mutations are the
// same every run.
func seeds(t testing.TB, maxLen int) [][]byte {
	var out [][]byte
	for _, body := range wellFormed(t) {
		out = append(out, body)
	}
	for _, body := range malformed {
		out = append(out, []byte(body))
	}
	out = slices.DeleteFunc(out, func(b []byte) bool { return len(b) >= maxLen })
	slices.SortFunc(out, bytes.Compare)
	return out
}

func FuzzHandlerAnswersAsControllerRuntime(f *testing.F) {
	for _, body := range seeds(f, 4096) { // the minimizer takes minutes over a large input
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, got := both(body, "application/json")
		if want != got {
			t.Fatalf("for body %q\ncontroller-runtime answered %d %s\nHandler answered %d %s", body, want.code, want.body, got.code, got.body)
		}
	})
}

// BenchmarkDecode compares the one-pass reading of a 5-container Pod's
// review with controller-runtime's webhook, through the same handler.
func BenchmarkDecode(b *testing.B) {
	body := reviewOf(b, "admission.k8s.io/v1", admissionv1.AdmissionRequest{UID: "u", Operation: admissionv1.Create,
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Object: runtime.RawExtension{Raw: podRaw(b, 5)}})
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	for name, h := range map[string]http.Handler{
		"controller-runtime": &webhook.Admission{Handler: allow},
		"one-pass":           Handler{Webhook: &webhook.Admission{Handler: allow}},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if a := serve(h, body, "application/json"); a.code != http.StatusOK {
					b.Fatal(fmt.Sprint(a))
				}
			}
		})
	}
}

func TestVerboseLogsSayWhatControllerRuntimesSay(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	logf.SetLogger(funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 5}))
	t.Cleanup(func() { logf.SetLogger(logr.Discard()) })
	logged := func(h http.Handler) []string {
		mu.Lock()
		lines = nil
		mu.Unlock()
		serve(h, wellFormed(t)["v1 create"], "application/json")
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(lines)
	}
	want := logged(&webhook.Admission{Handler: echo})
	got := logged(Handler{Webhook: &webhook.Admission{Handler: echo}})
	require.Len(t, want, 2, "controller-runtime's received and wrote lines")
	assert.Equal(t, want, got)
}
