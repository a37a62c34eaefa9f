package policy_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

// lateSidecarLabel marks the Pods the late sidecar injector adds a container to.
const lateSidecarLabel = "svcguard-test/late-sidecar"

// lateSidecar is the container the injector adds.
const lateSidecar = "late-sidecar"

// installLateSidecarInjector registers, until the test ends, a mutating
// webhook named after svcguard's (so the API server calls it last) that adds
// a container without env to every Pod labelled lateSidecarLabel, as a
// sidecar injector does: svcguard's webhook and its twin, both with
// reinvocationPolicy IfNeeded, must inject that container too.
func installLateSidecarInjector(t *testing.T) {
	t.Helper()
	te := suite.Env
	cert, err := tls.LoadX509KeyPair(filepath.Join(te.CertDir, "tls.crt"), filepath.Join(te.CertDir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(addLateSidecar)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("the late sidecar injector stopped: %v", err)
		}
	}()
	url := "https://" + ln.Addr().(*net.TCPAddr).String() + "/"
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zzz-late-sidecar"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "late-sidecar.test.svcguard.io",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: te.CAData},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			ObjectSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{lateSidecarLabel: "yes"}},
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			SideEffects:        ptr.To(admissionregistrationv1.SideEffectClassNone),
			ReinvocationPolicy: ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		}},
	}
	if err := te.Client.Create(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = te.Client.Delete(context.Background(), cfg)
		_ = srv.Close()
	})
	// The API server calls it within a moment: wait until a dry run comes back with the sidecar.
	deadline := time.Now().Add(30 * time.Second)
	ns := te.Namespace(t, nil)
	for {
		pod := fixtures.Pod(ns, "probe", fixtures.Label(lateSidecarLabel, "yes"), fixtures.Container("app", "app"))
		if err := te.Client.Create(context.Background(), pod, client.DryRunAll); err == nil && len(pod.Spec.Containers) == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the API server never called the late sidecar injector within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// addLateSidecar answers an AdmissionReview with a patch that appends the
// late sidecar, once.
func addLateSidecar(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	var pod struct {
		Spec struct {
			Containers []struct{ Name string } `json:"containers"`
		} `json:"spec"`
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if json.Unmarshal(review.Request.Object.Raw, &pod) == nil {
		has := false
		for _, c := range pod.Spec.Containers {
			has = has || c.Name == lateSidecar
		}
		if !has {
			resp.Patch = []byte(`[{"op":"add","path":"/spec/containers/-","value":{"name":"` + lateSidecar + `","image":"proxy"}}]`)
			resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
		}
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}
