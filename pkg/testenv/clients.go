package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
)

// PodCreateReview is an AdmissionReview of a one-container Pod CREATE, as the
// API server sends it, for tests that play the API server.
func PodCreateReview() ([]byte, error) {
	pod, err := json.Marshal(&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "app"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("test-review"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "default",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: pod},
		},
	})
}

// Answer is what a webhook answered to SendReview.
type Answer struct {
	// Closed: the answer carried Connection: close.
	Closed bool
	// Review is the decoded answer.
	Review admissionv1.AdmissionReview
}

// SendReview posts review to url and returns the webhook's answer; an error
// says what went wrong on the way (HTTP status, malformed answer).
func SendReview(ctx context.Context, client *http.Client, url string, review []byte) (Answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(review))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	a := Answer{Closed: resp.Close}
	data, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return a, err
	case resp.StatusCode != http.StatusOK:
		return a, fmt.Errorf("HTTP %d: %s", resp.StatusCode, data)
	case json.Unmarshal(data, &a.Review) != nil || a.Review.Response == nil:
		return a, fmt.Errorf("not an AdmissionReview answer: %s", data)
	}
	return a, nil
}

// Recorder returns an Events recorder that writes as "svcguard" (events.k8s.io/v1,
// as svcguard does) with cfg until ctx ends.
func Recorder(ctx context.Context, cfg *rest.Config) (events.EventRecorder, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	b.StartRecordingToSink(ctx.Done())
	return b.NewRecorder(scheme.Scheme, "svcguard"), nil
}

// WebhookClient returns an HTTPS client that trusts the environment's CA and
// pools keep-alive connections, as the API server's webhook client does.
func (e *Environment) WebhookClient() *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.CAData)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 8,
	}}
}
