package server_test

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// cachesSynced is what the stand-in validating webhook reports about its
// caches; tests switch it to play a replica whose informers broke.
var cachesSynced atomic.Bool

var suite = &testenv.Suite{}

func TestMain(m *testing.M) {
	cachesSynced.Store(true)
	suite.Register = registerStandIns
	suite.Main(m)
}

// registerStandIns serves an admit-all webhook on every path the shipped
// configurations point at; the validating ones depend on caches, as the
// node-port guard does. Readiness is what is under test, not the rules.
func registerStandIns(s *server.Server) error {
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })
	for _, hook := range suite.Env.RegisteredWebhooks() {
		w := server.Webhook{Name: path.Base(hook.Path), Path: hook.Path, Handler: allow}
		if hook.Validating {
			w.CachesSynced = cachesSynced.Load
		}
		s.Register(w)
	}
	return nil
}

// waitReadiness polls /readyz?verbose until its status is wantReady and its
// body holds every text of want.
func waitReadiness(t *testing.T, wantReady bool, want ...string) {
	t.Helper()
	var body string
	ok := assert.Eventually(t, func() bool {
		var ready bool
		ready, body = testenv.Ready(suite.ProbeURL)
		if ready != wantReady {
			return false
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond, "want ready=%v with %q", wantReady, want)
	if !ok {
		t.Fatalf("last /readyz?verbose answer:\n%s", body)
	}
}

// editConfigurations changes every registered webhook entry of both
// configurations, retrying on conflicts.
func editConfigurations(t *testing.T, mutating func(*admissionregistrationv1.MutatingWebhook), validating func(*admissionregistrationv1.ValidatingWebhook)) {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	update(t, &mwc, func() {
		for i := range mwc.Webhooks {
			mutating(&mwc.Webhooks[i])
		}
	})
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	update(t, &vwc, func() {
		for i := range vwc.Webhooks {
			validating(&vwc.Webhooks[i])
		}
	})
}

// update reads the configuration named svcguard into obj, applies edit and
// writes it back, retrying on conflicts.
func update(t *testing.T, obj client.Object, edit func()) {
	t.Helper()
	ctx, c := context.Background(), suite.Env.Client
	require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKey{Name: "svcguard"}, obj); err != nil {
			return err
		}
		edit()
		return c.Update(ctx, obj)
	}))
}

func setPolicy(t *testing.T, p admissionregistrationv1.FailurePolicyType) {
	editConfigurations(t,
		func(w *admissionregistrationv1.MutatingWebhook) { w.FailurePolicy = ptr.To(p) },
		func(w *admissionregistrationv1.ValidatingWebhook) { w.FailurePolicy = ptr.To(p) })
}

func setCABundle(t *testing.T, bundle []byte) {
	editConfigurations(t,
		func(w *admissionregistrationv1.MutatingWebhook) { w.ClientConfig.CABundle = bundle },
		func(w *admissionregistrationv1.ValidatingWebhook) { w.ClientConfig.CABundle = bundle })
}

func TestEnvtestReadinessFollowsTheLiveFailurePolicy(t *testing.T) {
	waitReadiness(t, true, "readyz check passed\n")
	t.Cleanup(func() {
		setPolicy(t, admissionregistrationv1.Ignore)
		cachesSynced.Store(true)
		waitReadiness(t, true, "readyz check passed\n")
	})
	cachesSynced.Store(false)

	waitReadiness(t, true, "(failurePolicy Ignore); node-port-guard degrades (failurePolicy Ignore)", "readyz check passed (degraded: node-port-guard)")

	setPolicy(t, admissionregistrationv1.Fail)
	waitReadiness(t, false, "[-]caches failing", "node-port-guard (failurePolicy Fail); holds readiness back",
		"node-port-guard runs under failurePolicy Fail")

	setPolicy(t, admissionregistrationv1.Ignore)
	waitReadiness(t, true, "readyz check passed (degraded: node-port-guard)")

	cachesSynced.Store(true)
	waitReadiness(t, true, "[+]caches passing", "readyz check passed\n")
}

func TestEnvtestWrongCABundleMakesTheReplicaUnready(t *testing.T) {
	stranger, err := certtest.NewAuthority()
	require.NoError(t, err)
	t.Cleanup(func() {
		setCABundle(t, suite.Env.CAData)
		waitReadiness(t, true, "[+]ca-bundle passing")
	})

	setCABundle(t, stranger.PEM)
	waitReadiness(t, false, "[-]ca-bundle failing", "does not verify the serving certificate for 127.0.0.1", "certificate signed by unknown authority")
}

func TestEnvtestRotatedCertificateIsServedAndReadinessStaysGreen(t *testing.T) {
	waitReadiness(t, true, "[+]ca-bundle passing")
	next, err := certtest.NewAuthority()
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(suite.Env.CertDir, server.CertFile), filepath.Join(suite.Env.CertDir, server.KeyFile)
	oldCert, err := os.ReadFile(certFile)
	require.NoError(t, err)
	oldKey, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, os.WriteFile(keyFile, oldKey, 0o600))
		require.NoError(t, os.WriteFile(certFile, oldCert, 0o600))
		setCABundle(t, suite.Env.CAData)
		waitReadiness(t, true, "[+]ca-bundle passing", "[+]tls passing")
	})

	// As cert-manager rolls a CA: the bundle trusts old and new first, then
	// the serving certificate changes.
	setCABundle(t, append(append([]byte{}, suite.Env.CAData...), next.PEM...))
	waitReadiness(t, true, "[+]ca-bundle passing")
	rotated, err := next.IssueFiles(suite.Env.CertDir)
	require.NoError(t, err)

	deadline := time.Now().Add(30 * time.Second)
	for {
		ready, body := testenv.Ready(suite.ProbeURL)
		require.True(t, ready, "readiness must stay green through the rotation:\n%s", body)
		served, err := testenv.ServedSerial(suite.Env.WebhookBindAddress)
		require.NoError(t, err)
		if served.Cmp(rotated.Leaf.SerialNumber) == 0 && strings.Contains(body, "serial "+rotated.Leaf.SerialNumber.String()) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the rotated certificate (serial %s) was not served and checked within 30s; serving %s:\n%s",
			rotated.Leaf.SerialNumber, served, body)
		time.Sleep(100 * time.Millisecond)
	}
	waitReadiness(t, true, "[+]tls passing", "[+]serving passing", "[+]ca-bundle passing")
}
