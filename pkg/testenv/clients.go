package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
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

// ServiceAccountConfig returns a rest.Config that authenticates as
// ServiceAccount namespace/name with a token from the TokenRequest API, as a
// Pod of that account would, creating the namespace and the account when
// missing: the shipped RBAC binds ServiceAccounts, so tests that prove it
// run as one.
func (e *Environment) ServiceAccountConfig(t testing.TB, namespace, name string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}},
	} {
		if err := e.Client.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s %s: %v", obj.GetObjectKind().GroupVersionKind().Kind, name, err)
		}
	}
	token, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	return &rest.Config{Host: e.Config.Host, BearerToken: token.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: e.Config.CAData}}
}

// WriteKubeconfig writes cfg (a host, its CA and a bearer token) as a
// kubeconfig file for a process, and returns its path.
func WriteKubeconfig(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "user"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// APIServerMetrics returns kube-apiserver's /metrics, where it counts its
// calls to admission webhooks (apiserver_admission_webhook_*). It returns an
// error: tests poll it inside require.Eventually.
func (e *Environment) APIServerMetrics(ctx context.Context) (string, error) {
	cs, err := e.clientset()
	if err != nil {
		return "", err
	}
	data, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	return string(data), err
}

// CheckAdmissionEvaluation returns an error when the API server failed to
// evaluate a matchCondition of a registered webhook, or an expression of a
// mutating admission policy: under failurePolicy Ignore it then skips the
// webhook or the policy silently, so every suite checks this after its tests.
func (e *Environment) CheckAdmissionEvaluation(ctx context.Context) error {
	text, err := e.APIServerMetrics(ctx)
	if err != nil {
		return fmt.Errorf("reading the API server's metrics for evaluation errors: %w", err)
	}
	const conditions = "apiserver_admission_match_condition_evaluation_errors_total"
	n, _, err := sumSamples(text, conditions)
	if err != nil {
		return fmt.Errorf("parsing the API server's metrics: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("the API server failed %v times to evaluate a webhook's matchConditions, and skipped the webhook each time: "+
			"fix the expression (%s names the webhook)", n, conditions)
	}
	const policies = "apiserver_mutating_admission_policy_check_total"
	all, _, _ := sumSamples(text, policies)
	ok, _, _ := sumSamples(text, policies, "error_type", "no_error")
	if all > ok {
		return fmt.Errorf("the API server failed %v times to evaluate a mutating admission policy, and skipped or refused it each time: "+
			"fix the expression (%s names the policy and the error type)", all-ok, policies)
	}
	return nil
}

// clientset is a client-go clientset on Config.
func (e *Environment) clientset() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(e.Config)
}

// Warnings collects the HTTP Warning headers the API server passes on from
// admission webhooks, as kubectl prints them.
type Warnings struct {
	mu   sync.Mutex
	seen []string
}

// HandleWarningHeader keeps one warning (rest.WarningHandler).
func (w *Warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

// Take returns the warnings received since the last Take.
func (w *Warnings) Take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.seen
	w.seen = nil
	return out
}

// ClientWithWarnings returns an admin clientset that keeps the warnings it is
// sent.
func (e *Environment) ClientWithWarnings(t testing.TB) (kubernetes.Interface, *Warnings) {
	t.Helper()
	w := &Warnings{}
	cfg := rest.CopyConfig(e.Config)
	cfg.WarningHandler = w
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("a clientset for warnings: %v", err)
	}
	return c, w
}

// UpdateService gets Service namespace/name, lets change modify it and
// updates it (dryRun: as a dry run, which stores nothing).
func UpdateService(ctx context.Context, c kubernetes.Interface, namespace, name string, dryRun bool, change func(*corev1.Service)) (*corev1.Service, error) {
	svc, err := c.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	change(svc)
	opts := metav1.UpdateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return c.CoreV1().Services(namespace).Update(ctx, svc, opts)
}
