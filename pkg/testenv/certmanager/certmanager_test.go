package certmanager_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"github.com/cert-manager/cert-manager/pkg/util/pki"

	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/pkg/testenv/certmanager"
)

// timeout bounds every wait: one issuance takes well under a second here.
const timeout = 30 * time.Second

var (
	// k8s reaches the control plane as an admin, with cert-manager's types.
	k8s client.Client
	// skipReason is set when there is no control plane to run on.
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run starts kube-apiserver and etcd (envtest) and cert-manager on them,
// runs the tests and stops both. Without the envtest binaries the tests
// skip, as every envtest suite here would fail the same way for a reason
// that is not theirs.
func run(m *testing.M) int {
	assets, err := assetsDirectory()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if missing := missingBinaries(assets); missing != "" {
		skipReason = missing
		return m.Run()
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting kube-apiserver and etcd:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	if k8s, err = certmanager.NewClient(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "building a client:", err)
		return 1
	}
	log := logr.New(errorsOnly{funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{}).GetSink()})
	cm, err := certmanager.Start(logr.NewContext(context.Background(), log), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting cert-manager:", err)
		return 1
	}
	code := m.Run()
	if err := cm.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager stopped with errors:", err)
		return 1
	}
	return code
}

// errorsOnly passes on errors only: they go to stderr, which go test shows
// when a test fails, while cert-manager's routine lines (retries on
// conflicts, which it expects, and start-up chatter) would bury them.
type errorsOnly struct{ logr.LogSink }

func (errorsOnly) Enabled(int) bool { return false }

func (s errorsOnly) WithValues(kv ...any) logr.LogSink {
	return errorsOnly{s.LogSink.WithValues(kv...)}
}

func (s errorsOnly) WithName(name string) logr.LogSink {
	return errorsOnly{s.LogSink.WithName(name)}
}

// assetsDirectory is where pkg/testenv finds kube-apiserver and etcd:
// KUBEBUILDER_ASSETS, else bin/envtest in the repository.
func assetsDirectory() (string, error) {
	if assets := os.Getenv("KUBEBUILDER_ASSETS"); assets != "" {
		return assets, nil
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin", "envtest"), nil
}

// missingBinaries says which envtest binary assets lacks, if any.
func missingBinaries(assets string) string {
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return fmt.Sprintf("no %s in %s: run `make envtest` to build it (or set KUBEBUILDER_ASSETS)", bin, assets)
		}
	}
	return ""
}

// begin skips the test when there is no control plane, and returns a
// context that ends after timeout or with the test.
func begin(t *testing.T) context.Context {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// namespace creates a namespace for one test.
func namespace(t *testing.T, ctx context.Context) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "certmanager-"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}

func create(t *testing.T, ctx context.Context, objs ...client.Object) {
	t.Helper()
	for _, obj := range objs {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
}

func issuerRef(name string) cmmeta.IssuerReference {
	return cmmeta.IssuerReference{Name: name, Kind: cmapi.IssuerKind, Group: cmapi.SchemeGroupVersion.Group}
}

// ecdsaKey asks for a fresh ECDSA P-256 key at every issuance.
func ecdsaKey() *cmapi.CertificatePrivateKey {
	return &cmapi.CertificatePrivateKey{Algorithm: cmapi.ECDSAKeyAlgorithm, Size: 256, RotationPolicy: cmapi.RotationPolicyAlways}
}

// The chain is the one the manifests' cert-manager component holds: a
// selfSigned Issuer, a CA Certificate it issues, a CA Issuer on the CA's
// Secret and a serving Certificate that Issuer issues.
const (
	selfSignedIssuer = "selfsigned"
	caCertificate    = "ca"
	caIssuer         = "ca"
	servingCert      = "serving-cert"
)

// createCA creates the selfSigned Issuer and the CA Certificate in ns and
// waits until the CA is issued.
func createCA(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	create(t, ctx,
		&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: selfSignedIssuer},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{SelfSigned: &cmapi.SelfSignedIssuer{}}},
		},
		&cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: caCertificate},
			Spec: cmapi.CertificateSpec{
				IsCA:       true,
				CommonName: "svcguard-test-ca",
				SecretName: caCertificate,
				PrivateKey: ecdsaKey(),
				IssuerRef:  issuerRef(selfSignedIssuer),
			},
		})
	if _, err := certmanager.WaitForRevision(ctx, k8s, ns, caCertificate, 1); err != nil {
		t.Fatal(err)
	}
}

// createServing creates the CA Issuer and the serving Certificate for
// svcguard.NS.svc in ns and waits until both are Ready.
func createServing(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	create(t, ctx,
		&cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: caIssuer},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: caCertificate}}},
		},
		&cmapi.Certificate{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: servingCert},
			Spec: cmapi.CertificateSpec{
				DNSNames:   []string{serviceName(ns)},
				SecretName: servingCert,
				PrivateKey: ecdsaKey(),
				IssuerRef:  issuerRef(caIssuer),
			},
		})
	if _, err := certmanager.WaitForIssuerReady(ctx, k8s, ns, caIssuer); err != nil {
		t.Fatal(err)
	}
	if _, err := certmanager.WaitForRevision(ctx, k8s, ns, servingCert, 1); err != nil {
		t.Fatal(err)
	}
}

// serviceName is the name the API server dials for a webhook Service
// svcguard in ns.
func serviceName(ns string) string { return "svcguard." + ns + ".svc" }

// secret reads the Secret ns/name and fails the test unless it holds
// tls.crt, tls.key and ca.crt, as every Secret cert-manager issues here does.
func secret(t *testing.T, ctx context.Context, ns, name string) *corev1.Secret {
	t.Helper()
	var s corev1.Secret
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		t.Fatalf("reading Secret %s/%s: %v", ns, name, err)
	}
	for _, key := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, cmmeta.TLSCAKey} {
		if len(s.Data[key]) == 0 {
			t.Fatalf("Secret %s/%s: want %s, got keys %v", ns, name, key, slices.Sorted(maps.Keys(s.Data)))
		}
	}
	return &s
}

// leaf parses the first certificate of the Secret's tls.crt.
func leaf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	return parse(t, s.Data[corev1.TLSCertKey])
}

// parse parses the first certificate of PEM data.
func parse(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	cert, err := pki.DecodeX509CertificateBytes(data)
	if err != nil {
		t.Fatalf("a certificate does not parse: %v", err)
	}
	return cert
}

// describe names the certificates of PEM data, in order, by common name
// and serial, for failure messages: a CA and its renewal share a name.
func describe(data []byte) string {
	if len(data) == 0 {
		return "[] (empty)"
	}
	certs, err := pki.DecodeX509CertificateSetBytes(data)
	if err != nil {
		return fmt.Sprintf("(unparseable: %v)", err)
	}
	var names []string
	for _, c := range certs {
		names = append(names, fmt.Sprintf("CN=%s serial=%x", c.Subject.CommonName, c.SerialNumber))
	}
	return "[" + strings.Join(names, ", ") + "]"
}

// samePublicKey reports whether a and b certify the same key.
func samePublicKey(a, b *x509.Certificate) bool {
	key, ok := a.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && key.Equal(b.PublicKey)
}

// verify checks that cert is valid for dnsName under the CAs of bundle.
func verify(cert *x509.Certificate, bundle []byte, dnsName string) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return errors.New("the bundle holds no PEM certificate")
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: dnsName, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestSelfSignedIssuerIssuesAnECDSACACertificate(t *testing.T) {
	ctx := begin(t)
	ns := namespace(t, ctx)
	createCA(t, ctx, ns)
	if _, err := certmanager.WaitForIssuerReady(ctx, k8s, ns, selfSignedIssuer); err != nil {
		t.Fatal(err)
	}

	s := secret(t, ctx, ns, caCertificate)
	ca := leaf(t, s)
	if !ca.IsCA || !ca.BasicConstraintsValid {
		t.Errorf("CA certificate: want a valid isCA basic constraint, got IsCA=%v BasicConstraintsValid=%v", ca.IsCA, ca.BasicConstraintsValid)
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate: want key usage cert sign, got %v", ca.KeyUsage)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA certificate: want an ECDSA P-256 key, got %T", ca.PublicKey)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA certificate: want self-signed, got a signature that its own key does not verify: %v", err)
	}
	if ca.Subject.CommonName != "svcguard-test-ca" {
		t.Errorf("CA certificate: want common name svcguard-test-ca, got %q", ca.Subject.CommonName)
	}
	if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		t.Errorf("CA Secret: want tls.key to match tls.crt, got %v", err)
	}
	if !bytes.Equal(s.Data[cmmeta.TLSCAKey], s.Data[corev1.TLSCertKey]) {
		t.Errorf("CA Secret: want ca.crt equal to tls.crt (a self-signed CA is its own CA), got ca.crt %s and tls.crt %s",
			describe(s.Data[cmmeta.TLSCAKey]), describe(s.Data[corev1.TLSCertKey]))
	}
}

func TestCAIssuerIssuesAServingCertificateTheCAVerifies(t *testing.T) {
	ctx := begin(t)
	ns := namespace(t, ctx)
	createCA(t, ctx, ns)
	createServing(t, ctx, ns)

	caPEM := secret(t, ctx, ns, caCertificate).Data[corev1.TLSCertKey]
	s := secret(t, ctx, ns, servingCert)
	if !bytes.Equal(s.Data[cmmeta.TLSCAKey], caPEM) {
		t.Errorf("serving Secret: want ca.crt equal to the CA certificate %s, got %s", describe(caPEM), describe(s.Data[cmmeta.TLSCAKey]))
	}
	if _, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
		t.Errorf("serving Secret: want tls.key to match tls.crt, got %v", err)
	}
	serving := leaf(t, s)
	if serving.IsCA {
		t.Error("serving certificate: want a leaf, got a CA")
	}
	if err := verify(serving, caPEM, serviceName(ns)); err != nil {
		t.Errorf("serving certificate: want it to verify against the CA for %s, got %v", serviceName(ns), err)
	}
}

// webhookConfigurations creates a mutating and a validating webhook
// configuration named ns, annotated to take their caBundle from the CA
// Certificate ns/ca, as svcguard's manifests are.
func webhookConfigurations(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	name := ns
	annotations := map[string]string{cmapi.WantInjectAnnotation: ns + "/" + caCertificate}
	service := &admissionregistrationv1.ServiceReference{Namespace: ns, Name: "svcguard", Path: ptr.To("/webhook")}
	// The entries match nothing (no rules), so that they never stand in the
	// way of the API server's other requests.
	create(t, ctx,
		&admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "mutating.svcguard.test",
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: service},
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
				FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			}},
		},
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Webhooks: []admissionregistrationv1.ValidatingWebhook{{
				Name:                    "validating.svcguard.test",
				ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: service},
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				AdmissionReviewVersions: []string{"v1"},
				FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			}},
		})
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}})
		_ = k8s.Delete(context.Background(), &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})
}

// caBundles reads the caBundle of the single entry of both webhook
// configurations named name.
func caBundles(ctx context.Context, name string) (mutating, validating []byte, err error) {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &mwc); err != nil {
		return nil, nil, err
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, &vwc); err != nil {
		return nil, nil, err
	}
	return mwc.Webhooks[0].ClientConfig.CABundle, vwc.Webhooks[0].ClientConfig.CABundle, nil
}

// waitForCABundles waits until both configurations named name carry
// caBundle want (as cainjector writes it: PEM certificates one after the
// other) and fails the test with what they carry otherwise.
func waitForCABundles(t *testing.T, ctx context.Context, name string, want []byte) {
	t.Helper()
	var mutating, validating []byte
	var err error
	for {
		mutating, validating, err = caBundles(ctx, name)
		if err == nil && bytes.Equal(mutating, want) && bytes.Equal(validating, want) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("webhook configurations %s: want caBundle %s, got mutating %s and validating %s (last error: %v)",
				name, describe(want), describe(mutating), describe(validating), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestCAInjectorSetsTheCAAsCABundleOfBothWebhookConfigurations(t *testing.T) {
	ctx := begin(t)
	ns := namespace(t, ctx)
	createCA(t, ctx, ns)
	webhookConfigurations(t, ctx, ns)

	caPEM := secret(t, ctx, ns, caCertificate).Data[corev1.TLSCertKey]
	waitForCABundles(t, ctx, ns, caPEM)
}

func TestReissuedServingCertificateIsNewAndTheCABundleStays(t *testing.T) {
	ctx := begin(t)
	ns := namespace(t, ctx)
	createCA(t, ctx, ns)
	webhookConfigurations(t, ctx, ns)
	createServing(t, ctx, ns)
	caPEM := secret(t, ctx, ns, caCertificate).Data[corev1.TLSCertKey]
	waitForCABundles(t, ctx, ns, caPEM)
	before := leaf(t, secret(t, ctx, ns, servingCert))

	revision, err := certmanager.Reissue(ctx, k8s, ns, servingCert)
	if err != nil {
		t.Fatal(err)
	}
	if revision != 2 {
		t.Fatalf("Reissue of a Certificate issued once: want revision 2 next, got %d", revision)
	}
	if _, err := certmanager.WaitForRevision(ctx, k8s, ns, servingCert, revision); err != nil {
		t.Fatal(err)
	}

	after := leaf(t, secret(t, ctx, ns, servingCert))
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Errorf("reissued serving certificate: want a new serial, got the old one %s", before.SerialNumber)
	}
	if samePublicKey(after, before) {
		t.Error("reissued serving certificate: want a new key (rotationPolicy Always), got the old one")
	}
	if err := verify(after, caPEM, serviceName(ns)); err != nil {
		t.Errorf("reissued serving certificate: want it to verify against the unchanged CA, got %v", err)
	}
	mutating, validating, err := caBundles(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mutating, caPEM) || !bytes.Equal(validating, caPEM) {
		t.Errorf("caBundle after reissuing the serving certificate: want the CA alone %s, got mutating %s and validating %s",
			describe(caPEM), describe(mutating), describe(validating))
	}
}

func TestRenewedCAIsMergedIntoTheCABundleBesideTheOldOne(t *testing.T) {
	ctx := begin(t)
	ns := namespace(t, ctx)
	createCA(t, ctx, ns)
	webhookConfigurations(t, ctx, ns)
	createServing(t, ctx, ns)
	oldCA := secret(t, ctx, ns, caCertificate).Data[corev1.TLSCertKey]
	waitForCABundles(t, ctx, ns, oldCA)
	oldLeaf := leaf(t, secret(t, ctx, ns, servingCert))

	revision, err := certmanager.Reissue(ctx, k8s, ns, caCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certmanager.WaitForRevision(ctx, k8s, ns, caCertificate, revision); err != nil {
		t.Fatal(err)
	}
	newCA := secret(t, ctx, ns, caCertificate).Data[corev1.TLSCertKey]
	if bytes.Equal(newCA, oldCA) {
		t.Fatal("renewed CA: want a new certificate, got the old one")
	}
	if samePublicKey(parse(t, newCA), parse(t, oldCA)) {
		t.Fatal("renewed CA: want a new key (rotationPolicy Always), got the old one")
	}
	// cainjector merges: the old CA first, as it was, then the new one.
	bundle := append(append([]byte{}, oldCA...), newCA...)
	waitForCABundles(t, ctx, ns, bundle)

	revision, err = certmanager.Reissue(ctx, k8s, ns, servingCert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := certmanager.WaitForRevision(ctx, k8s, ns, servingCert, revision); err != nil {
		t.Fatal(err)
	}
	newLeaf := leaf(t, secret(t, ctx, ns, servingCert))
	for _, c := range []struct {
		name string
		leaf *x509.Certificate
		ca   []byte
	}{{"old", oldLeaf, oldCA}, {"new", newLeaf, newCA}} {
		if err := verify(c.leaf, c.ca, serviceName(ns)); err != nil {
			t.Errorf("%s serving certificate: want it signed by the %s CA, got %v", c.name, c.name, err)
		}
		if err := verify(c.leaf, bundle, serviceName(ns)); err != nil {
			t.Errorf("%s serving certificate: want the merged caBundle to trust it, got %v", c.name, err)
		}
	}
	if err := verify(newLeaf, oldCA, serviceName(ns)); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("new serving certificate: want the old CA alone not to trust it (unknown authority), got %v", err)
	}
}
