package readiness

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/metrics"
)

func currentIs(c *tls.Certificate) CurrentCertificate {
	return func() (*tls.Certificate, error) { return c, nil }
}

const serviceName = "svcguard.svcguard.svc"

func TestTLSCheck(t *testing.T) {
	ca := certtest.NewAuthority(t)
	valid := ca.Issue(t, time.Now().Add(-time.Minute), time.Hour, serviceName)
	other := ca.Issue(t, time.Now().Add(-time.Minute), time.Hour, serviceName)
	mismatched := &tls.Certificate{Certificate: valid.Certificate, PrivateKey: other.PrivateKey}
	tests := []struct {
		name  string
		cert  *tls.Certificate
		state State
		why   string
	}{
		{"a valid certificate with its key passes", valid, Passing, "valid until"},
		{"an expired certificate fails", ca.Issue(t, time.Now().Add(-2*time.Hour), time.Hour, serviceName), Failing, "expired"},
		{"a certificate not valid yet fails", ca.Issue(t, time.Now().Add(time.Hour), time.Hour, serviceName), Failing, "not valid before"},
		{"a key that does not match fails", mismatched, Failing, "does not match"},
		{"no certificate fails", nil, Failing, "no serving certificate loaded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TLSCheck(currentIs(tt.cert), nil).Run(context.Background())
			assert.Equal(t, tt.state, got.State, "reason: %s", got.Reason)
			assert.Contains(t, got.Reason, tt.why)
		})
	}
}

func TestVerifyWithBundle(t *testing.T) {
	ca, stranger := certtest.NewAuthority(t), certtest.NewAuthority(t)
	cert := ca.Issue(t, time.Now().Add(-time.Minute), time.Hour, serviceName, "127.0.0.1")
	assert.NoError(t, VerifyWithBundle(cert, ca.PEM, serviceName), "the issuing CA verifies the service name")
	assert.NoError(t, VerifyWithBundle(cert, ca.PEM, "127.0.0.1"), "the issuing CA verifies an IP SAN")
	assert.ErrorContains(t, VerifyWithBundle(cert, stranger.PEM, serviceName), "unknown authority")
	assert.ErrorContains(t, VerifyWithBundle(cert, ca.PEM, "svcguard.other.svc"), "not svcguard.other.svc")
	assert.ErrorContains(t, VerifyWithBundle(cert, []byte("not PEM"), serviceName), "no PEM certificate")
}

func TestCABundleCheck(t *testing.T) {
	ca, stranger := certtest.NewAuthority(t), certtest.NewAuthority(t)
	cert := ca.Issue(t, time.Now().Add(-time.Minute), time.Hour, serviceName)
	hooks := []Webhook{{Name: "service-host", Path: "/webhooks/service-host"}}
	entry := func(bundle []byte) Registration {
		return Registration{Registered: true, Known: true, Entries: []Entry{{
			Configuration: "MutatingWebhookConfiguration/svcguard", Webhook: "service-host.svcguard.io", CABundle: bundle, ServerName: serviceName,
		}}}
	}
	tests := []struct {
		name  string
		reg   Registration
		state State
		why   string
	}{
		{"the injected CA passes", entry(ca.PEM), Passing, "service-host.svcguard.io"},
		{"another CA fails", entry(stranger.PEM), Failing, "does not verify the serving certificate for " + serviceName},
		{"no caBundle is skipped", entry(nil), Skipped, "has no caBundle"},
		{"an unreadable configuration is skipped", Registration{Registered: true, Note: "MutatingWebhookConfiguration svcguard cannot be read (forbidden)"}, Skipped, "forbidden"},
		{"a configuration not read yet waits", Registration{Waiting: true}, Pending, "waiting"},
		{"no configuration pointing here is skipped", Registration{Known: true}, Skipped, "no webhook configuration points"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CABundleCheck(currentIs(cert), func(string) Registration { return tt.reg }, hooks).Run(context.Background())
			assert.Equal(t, tt.state, got.State, "reason: %s", got.Reason)
			assert.Contains(t, got.Reason, tt.why)
		})
	}
}

// TestCertificateExpiriesAreExportedForAlerts proves the gauges the expiry
// alerts read: the served certificate's NotAfter, and the NotAfter of the
// bundle's CA that verifies it (while a CA rotates, the bundle holds a CA
// that does not), 0 when none does.
func TestCertificateExpiriesAreExportedForAlerts(t *testing.T) {
	caExpiry := time.Now().Add(400 * 24 * time.Hour).Truncate(time.Second)
	ca, stranger := certtest.NewAuthorityUntil(t, caExpiry), certtest.NewAuthorityUntil(t, time.Now().Add(10*24*time.Hour))
	cert := ca.Issue(t, time.Now().Add(-time.Minute), 90*24*time.Hour, serviceName)
	hooks := []Webhook{{Name: "service-host", Path: "/webhooks/service-host"}}
	check := func(bundle []byte) Result {
		return CABundleCheck(currentIs(cert), func(string) Registration {
			return Registration{Registered: true, Known: true, Entries: []Entry{{
				Configuration: "MutatingWebhookConfiguration/svcguard", Webhook: "service-host.svcguard.io", CABundle: bundle, ServerName: serviceName,
			}}}
		}, hooks).Run(context.Background())
	}

	require.Equal(t, Passing, TLSCheck(currentIs(cert), hooks).Run(context.Background()).State)
	assert.Equal(t, float64(cert.Leaf.NotAfter.Unix()), promtestutil.ToFloat64(metrics.ServingCertificateExpiration))

	require.Equal(t, Passing, check(append(append([]byte{}, stranger.PEM...), ca.PEM...)).State)
	assert.Equal(t, float64(caExpiry.Unix()), promtestutil.ToFloat64(metrics.CACertificateExpiration),
		"the CA that verifies the served certificate, not the other one in the bundle")
	require.Equal(t, Failing, check(stranger.PEM).State)
	assert.Zero(t, promtestutil.ToFloat64(metrics.CACertificateExpiration), "no CA in the bundle verifies the served certificate")
}

// selfTestAnswerer answers AdmissionReviews the way the server does, after
// checking that they are marked self-tests of mark carrying the sample.
func selfTestAnswerer(t *testing.T, mark SelfTestMark, answer func(admissionv1.AdmissionRequest) admissionv1.AdmissionResponse) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		err := json.NewDecoder(r.Body).Decode(&review)
		if err != nil || review.Request == nil || !IsSelfTest(mark.Context(r.Context(), r)) ||
			review.Request.Kind.Kind != "Pod" || !ptr.Deref(review.Request.DryRun, false) {
			t.Errorf("the self-test sent %+v (decode error %v); want a marked dry-run AdmissionReview of the sample Pod", review.Request, err)
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		resp := answer(*review.Request)
		review.Response = &resp
		_ = json.NewEncoder(w).Encode(review)
	})
}

func TestServingCheck(t *testing.T) {
	ca := certtest.NewAuthority(t)
	served := ca.Issue(t, time.Now().Add(-time.Minute), time.Hour, "127.0.0.1")
	loadedElsewhere := ca.Issue(t, time.Now().Add(-time.Minute), time.Hour, "127.0.0.1")
	sample := admissionv1.AdmissionRequest{Kind: admissiontest.PodKind, Operation: admissionv1.Create}
	hooks := []Webhook{{Name: "a", Path: "/a", SelfTest: sample}, {Name: "b", Path: "/b", SelfTest: sample}}
	allowed := func(r admissionv1.AdmissionRequest) admissionv1.AdmissionResponse {
		return admissionv1.AdmissionResponse{UID: r.UID, Allowed: true}
	}
	denied := func(r admissionv1.AdmissionRequest) admissionv1.AdmissionResponse {
		return admissionv1.AdmissionResponse{UID: r.UID, Result: &metav1.Status{Code: http.StatusForbidden, Message: "a rule says no"}}
	}
	errored := func(r admissionv1.AdmissionRequest) admissionv1.AdmissionResponse {
		return admissionv1.AdmissionResponse{UID: r.UID, Result: &metav1.Status{Code: http.StatusBadRequest, Message: "cannot decode the Pod"}}
	}
	otherUID := func(admissionv1.AdmissionRequest) admissionv1.AdmissionResponse {
		return admissionv1.AdmissionResponse{UID: "another-uid", Allowed: true}
	}

	tests := []struct {
		name    string
		current *tls.Certificate
		answer  func(admissionv1.AdmissionRequest) admissionv1.AdmissionResponse
		state   State
		why     string
	}{
		{"a listener that judges every path with the loaded certificate passes", served, allowed, Passing, "2 webhook paths"},
		{"a denial by a rule is a judgement and passes", served, denied, Passing, "2 webhook paths"},
		{"an error answer fails, with the handler's message", served, errored, Failing, "HTTP code 400: cannot decode the Pod"},
		{"a listener serving another certificate than the loaded one fails", loadedElsewhere, allowed, Failing, "not the loaded certificate"},
		{"an answer for another request fails", served, otherUID, Failing, "does not carry the request's UID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mark := NewSelfTestMark()
			srv := httptest.NewUnstartedServer(selfTestAnswerer(t, mark, tt.answer))
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{*served}, MinVersion: tls.VersionTLS12}
			srv.StartTLS()
			defer srv.Close()
			got := ServingCheck(srv.Listener.Addr().String(), currentIs(tt.current), mark, hooks).Run(context.Background())
			assert.Equal(t, tt.state, got.State, "reason: %s", got.Reason)
			assert.Contains(t, got.Reason, tt.why)
		})
	}
	t.Run("a webhook without a self-test request fails", func(t *testing.T) {
		got := ServingCheck("127.0.0.1:1", currentIs(served), NewSelfTestMark(), []Webhook{{Name: "a", Path: "/a"}}).Run(context.Background())
		assert.Equal(t, Failing, got.State)
		assert.Contains(t, got.Reason, "gives no self-test request")
	})
	t.Run("a closed listener fails", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		addr := srv.Listener.Addr().String()
		srv.Close()
		got := ServingCheck(addr, currentIs(served), NewSelfTestMark(), hooks).Run(context.Background())
		assert.Equal(t, Failing, got.State)
		assert.Contains(t, got.Reason, "connection refused")
	})
}

func TestSelfTestMarkRecognisesOnlyItsOwnToken(t *testing.T) {
	mark, other := NewSelfTestMark(), NewSelfTestMark()
	signed := httptest.NewRequest(http.MethodPost, "/", nil)
	mark.Sign(signed)
	assert.True(t, IsSelfTest(mark.Context(context.Background(), signed)), "a request signed by this mark is a self-test")
	assert.False(t, IsSelfTest(other.Context(context.Background(), signed)), "another process's token marks nothing")
	forged := httptest.NewRequest(http.MethodPost, "/", nil)
	forged.Header.Set(SelfTestHeader, "")
	assert.False(t, IsSelfTest(mark.Context(context.Background(), forged)), "an empty header marks nothing")
	assert.False(t, IsSelfTest(SelfTestMark{}.Context(context.Background(), forged)), "a zero mark recognises nothing")
}

func TestRegistrationOf(t *testing.T) {
	const path = "/webhooks/service-host"
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "svcguard"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			{Name: "by-service.svcguard.io", FailurePolicy: ptr.To(admissionregistrationv1.Ignore), ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: "svcguard", Name: "svcguard", Path: ptr.To(path)}, CABundle: []byte("ca"),
			}},
			{Name: "elsewhere.svcguard.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{
				Service: &admissionregistrationv1.ServiceReference{Namespace: "svcguard", Name: "svcguard", Path: ptr.To("/webhooks/other")},
			}},
		},
	}
	byURL := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "svcguard"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			// No failurePolicy: admissionregistration/v1 defaults it to Fail.
			{Name: "by-url.svcguard.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:9443//webhooks/service-host")}},
		},
	}

	t.Run("an entry by service gives its policy and the service's DNS name", func(t *testing.T) {
		r := RegistrationOf(path, []runtime.Object{mutating}, nil)
		assert.True(t, r.Registered && r.Known)
		assert.Equal(t, admissionregistrationv1.Ignore, r.Policy)
		require.Len(t, r.Entries, 1, "only the entry on this path")
		assert.Equal(t, Entry{Configuration: "MutatingWebhookConfiguration/svcguard", Webhook: "by-service.svcguard.io",
			Policy: admissionregistrationv1.Ignore, CABundle: []byte("ca"), ServerName: serviceName}, r.Entries[0])
	})
	t.Run("the strictest policy wins, an unset policy is Fail, URL paths are compared cleaned", func(t *testing.T) {
		r := RegistrationOf(path, []runtime.Object{mutating, byURL}, nil)
		assert.Equal(t, admissionregistrationv1.Fail, r.Policy)
		require.Len(t, r.Entries, 2)
		assert.Equal(t, "127.0.0.1", r.Entries[1].ServerName)
	})
	t.Run("a configuration that cannot be read makes the policy Fail, assumed, and says so", func(t *testing.T) {
		r := RegistrationOf(path, []runtime.Object{mutating}, []string{"ValidatingWebhookConfiguration svcguard cannot be read (forbidden)"})
		assert.False(t, r.Known)
		assert.True(t, r.Registered, "an unknown registration counts as registered")
		assert.Equal(t, admissionregistrationv1.Fail, r.Policy)
		assert.Contains(t, r.Note, "forbidden")
	})
	t.Run("a path no entry points at is not registered", func(t *testing.T) {
		r := RegistrationOf("/webhooks/none", []runtime.Object{mutating, byURL}, nil)
		assert.False(t, r.Registered)
		assert.True(t, r.Known)
		assert.True(t, strings.HasPrefix(r.Note, "no consulted webhook configuration points at"), r.Note)
	})
}
