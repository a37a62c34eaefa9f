// Package server_test is the envtest suite of package server (real
// kube-apiserver and etcd, an in-process svcguard server), run by `make test`
// and `make integration`.
package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"sync/atomic"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// cachesSynced is what the stand-in validating webhook reports about its
// caches; tests switch it to play a replica whose informers broke.
var cachesSynced atomic.Bool

// handlerBroken makes the stand-ins fail every request after decoding it, as a
// replica whose rules fail on every request would.
var handlerBroken atomic.Bool

var suite = &testenv.Suite{}

func TestMain(m *testing.M) {
	cachesSynced.Store(true)
	suite.Register = registerStandIns
	suite.Main(m)
}

// registerStandIns serves, on every path the shipped configurations point at,
// a webhook that decodes the Pod in the request and admits it; the validating
// ones depend on caches, as the node-port guard does. Readiness is what is
// under test, not the rules.
func registerStandIns(s *server.Server) error {
	decoder := s.Dependencies().Decoder
	decodeAndAllow := admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		var pod corev1.Pod
		if err := decoder.Decode(req, &pod); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("cannot decode the Pod: %w", err))
		}
		if handlerBroken.Load() {
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("rules failed on Pod %s", pod.Name))
		}
		return admission.Allowed("")
	})
	pod, err := json.Marshal(fixtures.Pod("", "self-test"))
	if err != nil {
		return err
	}
	sample := admissionv1.AdmissionRequest{
		Kind:      admissiontest.PodKind,
		Resource:  admissiontest.PodResource,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: pod},
	}
	for _, hook := range suite.Env.RegisteredWebhooks() {
		w := component.Webhook{Name: path.Base(hook.Path), Path: hook.Path, Handler: decodeAndAllow, SelfTest: sample}
		if hook.Validating {
			w.CachesSynced = cachesSynced.Load
		}
		s.Register(w)
	}
	return nil
}
