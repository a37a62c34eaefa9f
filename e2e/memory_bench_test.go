package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/svcguard/svcguard/pkg/benchtest"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// BenchmarkHostileReviewsPeakRSS measures the peak resident memory of a
// replica run with the manifests' memory settings (--max-in-flight-requests
// from config.yaml, GOMEMLIMIT from the Deployment) while three times as
// many clients as it admits at once post valid AdmissionReviews of about
// 6.4 MiB, an UPDATE whose object and old object are as large as the API
// server stores: the worst a caller of the webhook port can send without
// being refused at once. It reports peak-MiB; the Deployment's memory limit
// (512Mi) must stay above it.
func BenchmarkHostileReviewsPeakRSS(b *testing.B) {
	var deploy appsv1.Deployment
	testenv.Shipped(b, testenv.DefaultOverlay, "Deployment", "svcguard", &deploy)
	var settings struct {
		MaxInFlight int `json:"max-in-flight-requests"`
	}
	require.NoError(b, yaml.Unmarshal([]byte(testenv.ShippedConfig(b, testenv.DefaultOverlay)), &settings))
	for _, e := range deploy.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "GOMEMLIMIT" {
			b.Setenv("GOMEMLIMIT", e.Value)
		}
	}
	// Its own webhook address: the suite's replica serves the environment's.
	addr, err := testenv.FreeAddress()
	require.NoError(b, err)
	p, err := env.StartBinary(context.Background(), binary, nil, "--service-host="+serviceHost,
		fmt.Sprintf("--max-in-flight-requests=%d", settings.MaxInFlight), "--webhook-bind-address="+addr)
	require.NoError(b, err)
	defer p.Kill()
	body := largestReview(b)
	client := env.WebhookClient()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 3 * settings.MaxInFlight
	url := "https://" + addr + "/webhooks/service-host"

	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		for c := 0; c < 3*settings.MaxInFlight; c++ {
			wg.Go(func() {
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err == nil {
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	peak, err := benchtest.PeakRSS(p.PID())
	require.NoError(b, err)
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	b.ReportMetric(float64(settings.MaxInFlight), "in-flight")
}

// largestReview is an UPDATE review of a Pod of about 3.2 MiB (annotations),
// object and old object: about 6.4 MiB, under the 7 MiB a webhook accepts.
func largestReview(b *testing.B) []byte {
	pod := fixtures.Pod("a", "large", fixtures.Container("app", "nginx"))
	pod.Annotations = map[string]string{}
	for i := range 33 {
		pod.Annotations[fmt.Sprintf("k%d", i)] = strings.Repeat("v", 100*1024)
	}
	raw, err := json.Marshal(pod)
	require.NoError(b, err)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "large", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "a", Name: "large", Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}, OldObject: runtime.RawExtension{Raw: raw},
		},
	})
	require.NoError(b, err)
	return body
}
