package nodeport

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
)

// fuzzRequests are the request shapes FuzzHandler picks from by number: the
// two the guard judges, two it lets through, and a wrong kind.
var fuzzRequests = []struct {
	op          admissionv1.Operation
	subResource string
	service     bool
}{
	{admissionv1.Create, "", true},
	{admissionv1.Update, "", true},
	{admissionv1.Delete, "", true},
	{admissionv1.Update, "status", true},
	{admissionv1.Create, "", false},
}

// fuzzHandlerSeeds mirror the cases of TestHandler (whose table is local to
// it) as raw objects: {request shape, new Service, old Service, user}.
var fuzzHandlerSeeds = []struct {
	shape    uint8
	obj, old string
	admin    bool
}{
	{1, `{"apiVersion":"v1","kind":"Service","metadata":{"namespace":"istio-ingress","name":"istio-ingressgateway"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":443,"protocol":"TCP","nodePort":30194}]}}`,
		`{"apiVersion":"v1","kind":"Service","metadata":{"namespace":"istio-ingress","name":"istio-ingressgateway"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":443,"protocol":"TCP","nodePort":30445}]}}`, false},
	{1, `{"metadata":{"namespace":"istio-ingress","name":"istio-ingressgateway"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":443,"protocol":"TCP","nodePort":30194}]}}`,
		`{"metadata":{"namespace":"istio-ingress","name":"istio-ingressgateway"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":443,"protocol":"TCP","nodePort":30445}]}}`, true},
	{0, `{"metadata":{"namespace":"x","name":"y"},"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"protocol":"TCP","nodePort":30445}]}}`, ``, false},
	{1, `{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"protocol":"TCP","nodePort":31001}]}}`,
		`{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"protocol":"TCP","nodePort":30105}]}}`, false},
	{1, `{"metadata":{"namespace":"a","name":"web","annotations":{"svcguard.io/allow-node-port-reassignment":"true"}},"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"nodePort":31002}]}}`,
		`{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"nodePort":31001}]}}`, false},
	{0, `{"metadata":{"namespace":"tenant","name":"squatter","annotations":{"svcguard.io/pinned-node-ports":"http=30446"}},"spec":{"type":"ClusterIP","ports":[{"name":"http","port":80}]}}`, ``, false},
	{0, `{"metadata":{"namespace":"t","name":"s","annotations":{"svcguard.io/pinned-node-ports":"http=30446,http=30447, 80=x"}},"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30447}]}}`, ``, false},
	{1, `{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"ClusterIP","ports":[{"name":"http","port":80}]}}`,
		`{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"LoadBalancer","allocateLoadBalancerNodePorts":false,"ports":[{"name":"http","port":80,"nodePort":31001},{"port":81,"protocol":"UDP","nodePort":31001}]}}`, false},
	{1, `{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"NodePort","ports":[{"name":"renamed","port":80,"nodePort":31005}]}}`,
		`{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"NodePort","ports":[{"name":"http","port":80,"nodePort":31001}]}}`, false},
	{2, `{"metadata":{"namespace":"istio-ingress","name":"istio-ingressgateway"}}`, ``, false},
	{3, `{"metadata":{"name":"s"}}`, `{}`, false},
	{4, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`, ``, false},
	{0, `{"apiVersion":"v1","kind":"Service","spec":{"ports":"many"}}`, ``, false},
	{1, `{"metadata":{"name":"s"}}`, ``, false},
	{0, ``, ``, false},
}

// FuzzHandler feeds the guard arbitrary Services and old Services, from an
// admin or not, with pin annotations restricted or not. Whatever comes in,
// the guard answers (no panic, no hang) with a well-formed response: allowed
// with code 200 and no patch, denied with 403, or refused with 400; a denial
// or refusal says why in one line, and warnings stay short enough for the
// API server to pass on whole as HTTP Warning headers.
func FuzzHandler(f *testing.F) {
	pinned := `{"metadata":{"namespace":"a","name":"web"},"spec":{"type":"NodePort","ports":[{"name":"tcp","port":443,"nodePort":30200}]}}`
	for _, pin := range []string{"tcp=30200", "tcp=30201", "tcp=30445", "tcp=30446,80=30300", "udp=30200", "tcp=x", "tcp=30200,tcp=30201", " , "} {
		f.Add(uint8(0), []byte(pinned), []byte{}, pin, false, false)
		f.Add(uint8(1), []byte(pinned), []byte(pinned), pin, true, true)
	}
	for _, s := range fuzzHandlerSeeds {
		f.Add(s.shape, []byte(s.obj), []byte(s.old), "", s.admin, false)
		f.Add(s.shape, []byte(s.obj), []byte(s.old), "", s.admin, true)
	}
	f.Fuzz(func(t *testing.T, shape uint8, obj, old []byte, pin string, admin, restrict bool) {
		raw, ok := admissiontest.AsSent(obj)
		if !ok {
			return
		}
		// The pin annotation is where the guard parses free text: a fuzzed
		// value goes there directly, rather than waiting for the fuzzer to
		// write it as JSON.
		if raw, ok = withPin(raw, pin); !ok {
			return
		}
		oldRaw, ok := admissiontest.AsSent(old)
		if !ok {
			return
		}
		s := fuzzRequests[int(shape)%len(fuzzRequests)]
		r := admissiontest.Request{Operation: s.op, SubResource: s.subResource, Kind: admissiontest.ServiceKind,
			Resource: admissiontest.ServiceResource, Namespace: "a", Name: "web", RawObject: raw}
		if !s.service {
			r.Kind, r.Resource = admissiontest.PodKind, admissiontest.PodResource
		}
		if admin {
			r.User = "platform-admin"
		}
		req := r.Build(t)
		req.Object.Raw, req.OldObject.Raw = raw, oldRaw // Build turns a nil object into an empty one
		guard := testGuard()
		guard.RestrictPinAnnotation = restrict
		h := &Handler{Guard: guard, View: fakeView{}, Decoder: admissiontest.Decoder}

		done := make(chan admission.Response, 1)
		go func() { done <- h.Handle(context.Background(), req) }()
		var resp admission.Response
		select {
		case resp = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the handler did not answer within 10s")
		}

		admissiontest.CheckValidatingResponse(t, resp)
	})
}

// withPin sets the pin annotation of the object raw to pin, when raw is a
// JSON object and pin is not empty; it reports false when the object's
// metadata or annotations are not JSON objects.
func withPin(raw []byte, pin string) ([]byte, bool) {
	if pin == "" || raw == nil || !utf8.ValidString(pin) {
		return raw, pin == "" || raw == nil
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil {
		return raw, true // not an object: left as it is
	}
	meta, ok := obj["metadata"].(map[string]any)
	if obj["metadata"] == nil {
		meta, ok = map[string]any{}, true
	}
	if !ok {
		return nil, false
	}
	annotations, ok := meta["annotations"].(map[string]any)
	if meta["annotations"] == nil {
		annotations, ok = map[string]any{}, true
	}
	if !ok {
		return nil, false
	}
	annotations[PinAnnotation] = pin
	meta["annotations"], obj["metadata"] = annotations, meta
	out, err := json.Marshal(obj)
	return out, err == nil
}

// maxParseError bounds a parser's error message for an input of n bytes:
// the input may be quoted (up to 4 bytes per input byte, as \x00) at most
// twice, plus a fixed text. No amplification beyond that.
func maxParseError(n int) int {
	return 2*4*n + 256
}

// checkParseError fails unless err is one line of text bounded by the input.
func checkParseError(t *testing.T, input string, err error) {
	t.Helper()
	if m := err.Error(); !admissiontest.OneLineText(m) || len(m) > maxParseError(len(input)) {
		t.Fatalf("error for %q is not one bounded line of text (%d bytes): %q", input, len(m), m)
	}
}

// FuzzParseRange: a range that parses lies within 1-65535, starts no later
// than it ends, and reads back the same from its String; anything else is
// refused with one bounded line.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"30000-32767", "30080", " 30000 - 32767 ", "32767-30000", "0-10", "1-65535", "65536", "x", "", "-", "30000-",
		"-30000", "1-2-3", "+30000", "030000", "30000-30000", "٣٠٠٠٠", "30000\n-32767"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			checkParseError(t, s, err)
			return
		}
		if r.First < 1 || r.Last > 65535 || r.First > r.Last {
			t.Fatalf("ParseRange(%q) = %+v: not a range of ports", s, r)
		}
		back, err := ParseRange(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRange(%q) = %s, which reads back as %+v, %v", s, r, back, err)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) || r.StaticBandLast() < r.First || r.StaticBandLast() > r.Last {
			t.Fatalf("range %s: inconsistent Contains or static band (last %d)", r, r.StaticBandLast())
		}
	})
}

// FuzzParsePinFlag: a pin that parses names a namespace, a name and a port
// and a nodePort from 1 to 65535, and its canonical form parses back to the
// same; anything else is refused with one bounded line.
func FuzzParsePinFlag(f *testing.F) {
	for _, s := range []string{"istio-ingress/istio-ingressgateway:tcp=30445", "istio-ingressgateway:tcp=30445", "ns/name=30445",
		"ns/name:tcp=x", "ns/name:tcp=70000", "a/b:c=8080", "a/b:c=30005", "a/b:80= 30000 ", "/b:c=1", "a/:c=1", "a/b:=1",
		"a/b/c:d:e=1", "a/b:c=1=2", "", "=", "a\n/b:c=30000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, n, err := ParsePinFlag(s)
		if err != nil {
			checkParseError(t, s, err)
			return
		}
		if ref.Namespace == "" || ref.Name == "" || ref.Port == "" || n < 1 || n > 65535 {
			t.Fatalf("ParsePinFlag(%q) = %+v=%d: a part is missing or out of range", s, ref, n)
		}
		canonical := fmt.Sprintf("%s=%d", ref, n)
		ref2, n2, err := ParsePinFlag(canonical)
		if err != nil || ref2 != ref || n2 != n {
			t.Fatalf("ParsePinFlag(%q) = %s=%d, which reads back as %+v=%d, %v", s, ref, n, ref2, n2, err)
		}
	})
}

// FuzzParsePinAnnotation: pins that parse name trimmed, non-empty ports with
// nodePorts from 1 to 65535, and their canonical form ("p=n,..." sorted)
// parses back to the same; anything else is refused with one bounded line.
func FuzzParsePinAnnotation(f *testing.F) {
	for _, s := range []string{"tcp=30445, http=30080", "tcp=30445", "http=30446", "", ",", " , ", "tcp", "=30000", "tcp=",
		"tcp=x", "tcp=0", "tcp=65536", "80=30080", "a=30000,a=30001", "a=30000,a=30000", "a=b=c", "http=30446,http=30447, 80=x",
		"a\n=30000,a\n=30001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pins, err := ParsePinAnnotation(s)
		if err != nil {
			checkParseError(t, s, err)
			return
		}
		items := make([]string, 0, len(pins))
		for port, n := range pins {
			if port == "" || port != strings.TrimSpace(port) || strings.ContainsAny(port, ",=") || n < 1 || n > 65535 {
				t.Fatalf("ParsePinAnnotation(%q) pins %q to %d: not a trimmed port name and a port", s, port, n)
			}
			items = append(items, fmt.Sprintf("%s=%d", port, n))
		}
		sort.Strings(items)
		canonical := strings.Join(items, ",")
		back, err := ParsePinAnnotation(canonical)
		if err != nil || len(back) != len(pins) {
			t.Fatalf("ParsePinAnnotation(%q) = %v, whose canonical form %q reads back as %v, %v", s, pins, canonical, back, err)
		}
		for port, n := range pins {
			if back[port] != n {
				t.Fatalf("ParsePinAnnotation(%q) = %v, whose canonical form %q reads back as %v", s, pins, canonical, back)
			}
		}
	})
}
