package deploy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/pkg/testenv/certmanager"
)

// serverName is the name the API server dials: the Service's DNS name.
const serverName = "svcguard." + namespace + ".svc"

// TestEnvtestCertificateRotationsFailNoCall proves the shipped certificate
// chain with cert-manager's own controllers and cainjector running against
// the API server: caBundle is the CA; reissuing the serving certificate
// leaves it unchanged; renewing the CA with a new key adds the new CA beside
// the old one. Through both rotations, replicas of the real binary that serve
// the old and the new serving certificates are all trusted by a client that
// uses the live caBundle (and by their own ca-bundle readiness check), so no
// replica is ever distrusted while the kubelet refreshes its Secret.
func TestEnvtestCertificateRotationsFailNoCall(t *testing.T) {
	objs := installed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cm, err := certmanager.Start(ctx, env.Config)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, cm.Stop()) })
	c, err := certmanager.NewClient(env.Config)
	require.NoError(t, err)

	_, err = certmanager.WaitForRevision(ctx, c, namespace, "svcguard-ca", 1)
	require.NoError(t, err, "cert-manager issues the shipped CA")
	_, err = certmanager.WaitForRevision(ctx, c, namespace, "svcguard-serving-cert", 1)
	require.NoError(t, err, "cert-manager issues the shipped serving certificate from the CA")
	firstCA := secretData(t, "svcguard-ca")["ca.crt"]
	bundle := waitForBundle(t, ctx, func(b []byte) bool { return bytes.Equal(b, firstCA) }, "caBundle is the CA")

	// Replica A serves the first serving certificate.
	replicaA := replicaServing(t, objs)

	// The serving certificate is reissued (a new key): the bundle stays.
	servingCert := func(revision int) {
		t.Helper()
		rev, err := certmanager.Reissue(ctx, c, namespace, "svcguard-serving-cert")
		require.NoError(t, err)
		require.Equal(t, revision, rev)
		_, err = certmanager.WaitForRevision(ctx, c, namespace, "svcguard-serving-cert", revision)
		require.NoError(t, err)
	}
	servingCert(2)
	assertBundleStays(t, bundle)
	replicaB := replicaServing(t, objs)
	require.NotEqual(t, replicaA.leaf.SerialNumber, replicaB.leaf.SerialNumber)
	for _, r := range []replica{replicaA, replicaB} {
		r.assertTrustedBy(t, bundle)
	}

	// The CA renews with a new key: cainjector keeps the old CA beside the
	// new one, so replicas A and B, signed by the old CA, stay trusted.
	rev, err := certmanager.Reissue(ctx, c, namespace, "svcguard-ca")
	require.NoError(t, err)
	_, err = certmanager.WaitForRevision(ctx, c, namespace, "svcguard-ca", rev)
	require.NoError(t, err)
	secondCA := secretData(t, "svcguard-ca")["ca.crt"]
	require.NotEqual(t, firstCA, secondCA, "the CA renewed")
	bundle = waitForBundle(t, ctx, func(b []byte) bool {
		return bytes.Contains(b, bytes.TrimSpace(firstCA)) && bytes.Contains(b, bytes.TrimSpace(secondCA))
	}, "caBundle holds the old and the new CA")
	servingCert(3)
	assertBundleStays(t, bundle)
	replicaC := replicaServing(t, objs)
	for _, r := range []replica{replicaA, replicaB, replicaC} {
		r.assertTrustedBy(t, bundle)
	}
	assert.Error(t, verify(replicaC.leaf, firstCA), "the last serving certificate is signed by the new CA only")

	// Each replica exports the expiry of the CA it is trusted through.
	prometheus := env.ServiceAccountConfig(t, "monitoring", "prometheus-k8s")
	for name, r := range map[string]struct {
		replica
		ca []byte
	}{"A": {replicaA, firstCA}, "C": {replicaC, secondCA}} {
		ca := parseCert(t, r.ca)
		require.Eventually(t, func() bool {
			_, text := scrapeTrusting(t, r.proc, prometheus.BearerToken, bundle, serverName)
			v, _ := testenv.SumSamples(t, text, "svcguard_ca_certificate_expiration_timestamp_seconds")
			return v == float64(ca.NotAfter.Unix())
		}, 20*time.Second, 250*time.Millisecond, "replica %s reports the NotAfter of the CA that verifies its certificate", name)
	}
}

// replica is one svcguard process and the leaf it serves.
type replica struct {
	proc *testenv.Process
	addr string
	leaf *x509.Certificate
}

// replicaServing starts the binary as the Deployment runs it, serving the
// serving certificate's Secret as it is now, on its own address, and waits
// until it is ready (its ca-bundle check included).
func replicaServing(t *testing.T, objs []*unstructured.Unstructured) replica {
	t.Helper()
	data := secretData(t, "svcguard-serving-cert")
	dir := t.TempDir()
	for _, f := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), data[f], 0o600))
	}
	addr, err := testenv.FreeAddress()
	require.NoError(t, err)
	proc := shippedBinary(t, objs, "--cert-dir="+dir, "--webhook-bind-address="+addr)
	var verbose string
	require.Eventually(t, func() bool {
		_, verbose = proc.Ready()
		return strings.Contains(verbose, "[+]ca-bundle passing")
	}, 20*time.Second, 200*time.Millisecond, "the replica's own ca-bundle check passes; /readyz?verbose:\n%s", verbose)
	return replica{proc: proc, addr: addr, leaf: parseCert(t, data["tls.crt"])}
}

// assertTrustedBy proves a client that trusts only bundle, dialling the
// Service's name as the API server does, completes TLS with the replica and
// gets a review answered.
func (r replica) assertTrustedBy(t *testing.T, bundle []byte) {
	t.Helper()
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(bundle))
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
	req := component.CreateRequest("Pod", "pods", mustJSON(t, fixtures.Pod("deploy-test", "rotation", fixtures.Container("app", "registry.example/app:1"))))
	req.UID = k8stypes.UID("rotation-" + r.leaf.SerialNumber.String())
	answer, err := readiness.PostReview(context.Background(), hc, "https://"+r.addr+"/webhooks/service-host", &req, nil)
	require.NoError(t, err, "a client using caBundle calls the replica serving certificate serial %s", r.leaf.SerialNumber)
	assert.True(t, answer.Response.Allowed)
}

func secretData(t *testing.T, name string) map[string][]byte {
	t.Helper()
	var s corev1.Secret
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: namespace, Name: name}, &s))
	return s.Data
}

// waitForBundle waits until both configurations' caBundle satisfy ok, and
// returns it.
func waitForBundle(t *testing.T, ctx context.Context, ok func([]byte) bool, msg string) []byte {
	t.Helper()
	var bundle []byte
	require.Eventually(t, func() bool {
		bundles := liveBundles(t, ctx)
		bundle = bundles[0]
		return ok(bundles[0]) && bytes.Equal(bundles[0], bundles[1])
	}, 30*time.Second, 100*time.Millisecond, "%s; last caBundle:\n%s", msg, bundle)
	return bundle
}

// liveBundles returns the mutating and the validating configuration's
// caBundle.
func liveBundles(t *testing.T, ctx context.Context) [2][]byte {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "svcguard"}, &mwc))
	require.NoError(t, env.Client.Get(ctx, client.ObjectKey{Name: "svcguard"}, &vwc))
	return [2][]byte{mwc.Webhooks[0].ClientConfig.CABundle, vwc.Webhooks[0].ClientConfig.CABundle}
}

// assertBundleStays checks for a while that cainjector leaves both caBundles
// at bundle: a change would come within its reconcile after the Secret
// changed, which WaitForRevision already waited for.
func assertBundleStays(t *testing.T, bundle []byte) {
	t.Helper()
	require.Never(t, func() bool {
		b := liveBundles(t, context.Background())
		return !bytes.Equal(b[0], bundle) || !bytes.Equal(b[1], bundle)
	}, 2*time.Second, 100*time.Millisecond, "caBundle must not change when the serving certificate is reissued")
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	require.NotNil(t, block, "a PEM certificate")
	cert, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return cert
}

func verify(leaf *x509.Certificate, roots []byte) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: serverName})
	return err
}
