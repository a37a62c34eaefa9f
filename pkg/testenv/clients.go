package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
)

// Recorder returns an Events recorder that writes as "svcguard" (events.k8s.io/v1,
// as svcguard does) with cfg until ctx ends.
func Recorder(t testing.TB, ctx context.Context, cfg *rest.Config) events.EventRecorder {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("a clientset for the Events recorder: %v", err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	b.StartRecordingToSink(ctx.Done())
	return b.NewRecorder(scheme.Scheme, "svcguard")
}

// WebhookClient returns an HTTPS client that trusts the environment's CA and
// pools keep-alive connections, as the API server's webhook client does: the
// client to post reviews with (readiness.PostReview) as the API server would.
func (e *Environment) WebhookClient() *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.CAData)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 8,
	}}
}
