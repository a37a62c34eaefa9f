package servicepath

import (
	"context"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
)

// fuzzRequests are the request shapes FuzzHandler picks from by number: the
// three the guard judges, two it lets through, and a wrong kind.
var fuzzRequests = []struct {
	op          admissionv1.Operation
	subResource string
	service     bool
}{
	{admissionv1.Create, "", true},
	{admissionv1.Update, "", true},
	{admissionv1.Update, "status", true},
	{admissionv1.Delete, "", true},
	{admissionv1.Create, "status", true},
	{admissionv1.Create, "", false},
}

// FuzzHandler feeds the guard arbitrary Services and old Services. Whatever
// comes in, it answers (no panic, no hang) with a well-formed validating
// response (admissiontest.CheckValidatingResponse).
func FuzzHandler(f *testing.F) {
	for _, s := range []struct {
		shape    uint8
		obj, old string
	}{
		{0, `{"metadata":{"namespace":"shop","name":"web"},"spec":{"externalIPs":["10.96.0.1","010.096.000.001","::ffff:10.96.0.1"]}}`, ``},
		{0, `{"metadata":{"namespace":"shop","name":"web"},"spec":{"type":"LoadBalancer","loadBalancerIP":"10.0.0.9"}}`, ``},
		{1, `{"metadata":{"namespace":"shop","name":"web"},"spec":{"externalIPs":["10.96.0.1"]}}`,
			`{"metadata":{"namespace":"shop","name":"web"},"spec":{"externalIPs":["10.96.0.1"]}}`},
		{2, `{"metadata":{"namespace":"shop","name":"web"},"status":{"loadBalancer":{"ingress":[{"ip":"172.18.0.2"},{"hostname":"x"}]}}}`, `{}`},
		{0, `{"metadata":{"namespace":"shop","name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":"http"},{"port":81,"protocol":"UDP","targetPort":"http"}]}}`, ``},
		{0, `{"metadata":{"namespace":"shop","name":"web"},"spec":{"selector":{"app":"web"},"ports":[{"port":80,"targetPort":""}]}}`, ``},
		{0, `{"apiVersion":"v1","kind":"Service","spec":{"externalIPs":"10.96.0.1"}}`, ``},
		{3, `{}`, ``},
		{4, `{}`, ``},
		{5, `{"apiVersion":"v1","kind":"Pod"}`, ``},
		{0, ``, ``},
	} {
		f.Add(s.shape, []byte(s.obj), []byte(s.old))
	}
	f.Fuzz(func(t *testing.T, shape uint8, obj, old []byte) {
		raw, ok := admissiontest.AsSent(obj)
		if !ok {
			return
		}
		oldRaw, ok := admissiontest.AsSent(old)
		if !ok {
			return
		}
		s := fuzzRequests[int(shape)%len(fuzzRequests)]
		r := admissiontest.Request{Operation: s.op, SubResource: s.subResource, Kind: admissiontest.ServiceKind,
			Resource: admissiontest.ServiceResource, Namespace: "shop", Name: "web"}
		if !s.service {
			r.Kind, r.Resource = admissiontest.PodKind, admissiontest.PodResource
		}
		req := r.Build(t)
		req.Object.Raw, req.OldObject.Raw = raw, oldRaw
		v := testView()
		v.pods = map[string][]viewPod{"shop": {pod("web-a", "web", httpTCP), pod("web-b", "web")}}
		h := testHandler(v)

		done := make(chan admission.Response, 1)
		go func() { done <- h.Handle(context.Background(), req) }()
		select {
		case resp := <-done:
			admissiontest.CheckValidatingResponse(t, resp)
		case <-time.After(10 * time.Second):
			t.Fatalf("the handler did not answer within 10s")
		}
	})
}
