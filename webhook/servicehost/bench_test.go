package servicehost

import (
	"context"
	"fmt"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/fixtures"
)

// BenchmarkHandler is one Pod CREATE through the handler, for Pods of 1, 5
// and 20 containers: the fast path (Handler) against the typed path it
// replaced (kept as the tests' oracle).
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 5, 20} {
		req := podRequest(admissionv1.Create, "", fixtures.TypicalPod(n)).Build(b)
		h := &Handler{Injection: Injection{Host: "10.0.0.1", Port: "6443"}, Decoder: admissiontest.Decoder}
		for _, path := range []struct {
			name    string
			handler admission.Handler
		}{{"fast", h}, {"typed", (*typedHandler)(h)}} {
			b.Run(fmt.Sprintf("containers=%d/%s", n, path.name), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(req.Object.Raw)))
				for b.Loop() {
					if resp := path.handler.Handle(context.Background(), req); !resp.Allowed {
						b.Fatal(admissiontest.Message(resp))
					}
				}
			})
		}
	}
}

// BenchmarkPodPatch is the patch alone, from a Pod already read: the goal is
// under 5 µs for 5 containers.
func BenchmarkPodPatch(b *testing.B) {
	req := podRequest(admissionv1.Create, "", fixtures.TypicalPod(5)).Build(b)
	view, err := ReadPod(req.Object.Raw, admissiontest.Decoder)
	if err != nil {
		b.Fatal(err)
	}
	in := Injection{Host: "10.0.0.1", Port: "6443"}
	b.ReportAllocs()
	for b.Loop() {
		if _, n := in.PodPatch(view); n != 5 {
			b.Fatalf("injected %d containers, want 5", n)
		}
	}
}
