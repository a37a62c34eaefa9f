package readiness

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/svcguard/svcguard/pkg/metrics"
)

// Check is one readiness check.
type Check struct {
	// Name labels the check in /readyz?verbose and svcguard_readiness_check.
	Name string
	// Essential: see CheckState.Essential.
	Essential bool
	// Webhooks are the paths of the webhooks that depend on the check.
	Webhooks []Webhook
	// Run performs the check once.
	Run func(ctx context.Context) Result
}

// Webhook is a webhook the replica serves, as readiness sees it.
type Webhook struct {
	// Name labels it ("node-port-guard").
	Name string
	// Path is where its configuration entries point.
	Path string
	// SelfTest is a request the webhook must judge without error, as the
	// API server would send it (kind, resource, operation, object); the
	// serving check sends it with a fresh UID, as a dry run, marked.
	SelfTest admissionv1.AdmissionRequest
}

// CurrentCertificate returns the certificate the listener serves now.
type CurrentCertificate func() (*tls.Certificate, error)

// TLSCheck passes while the served certificate and key are loaded, parse,
// match and are within their validity period.
func TLSCheck(current CurrentCertificate, webhooks []Webhook) Check {
	return Check{Name: "tls", Essential: true, Webhooks: webhooks, Run: func(context.Context) Result {
		leaf, err := servedLeaf(current)
		if err != nil {
			return Fail(err)
		}
		metrics.ServingCertificateExpiration.Set(float64(leaf.NotAfter.Unix()))
		return Pass(fmt.Sprintf("serving certificate %s valid until %s", describe(leaf), leaf.NotAfter.UTC().Format(time.RFC3339)))
	}}
}

// servedLeaf returns the parsed leaf of the current certificate after
// checking that its key matches and that it is valid now.
func servedLeaf(current CurrentCertificate) (*x509.Certificate, error) {
	cert, err := current()
	if err != nil {
		return nil, fmt.Errorf("no serving certificate loaded: %w", err)
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("no serving certificate loaded: check --cert-dir")
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("the serving certificate does not parse: %w", err)
		}
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("the serving key is not a private key")
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		return nil, fmt.Errorf("the serving key does not match certificate %s", describe(leaf))
	}
	now := time.Now()
	switch {
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("serving certificate %s is not valid before %s", describe(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("serving certificate %s expired at %s: cert-manager should have renewed it, check the Certificate",
			describe(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return leaf, nil
}

func describe(c *x509.Certificate) string {
	return fmt.Sprintf("(serial %s, DNS names %v)", c.SerialNumber, c.DNSNames)
}

// ServingCheck passes when a TLS handshake with the listener at addr succeeds,
// the listener serves the current certificate, and each webhook's self-test
// request (Webhook.SelfTest), sent to its path and marked by mark, comes back
// judged: the whole path an API server request takes (TLS, HTTP, the
// AdmissionReview decode, the webhook's own decode, rules and patch code),
// tried on a new connection. An answer that is an error (HTTP code 400, 500,
// a recovered panic) fails the check: that replica would fail every real
// request the same way.
func ServingCheck(addr string, current CurrentCertificate, mark SelfTestMark, webhooks []Webhook) Check {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				MinVersion: tls.VersionTLS12,
				// The check compares the served certificate with the loaded one
				// itself; trust is the ca-bundle check's business.
				InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
				VerifyConnection: func(cs tls.ConnectionState) error {
					return sameCertificate(current, cs)
				},
			},
		},
	}
	return Check{Name: "serving", Essential: true, Webhooks: webhooks, Run: func(ctx context.Context) Result {
		for _, w := range webhooks {
			if err := mark.send(ctx, client, "https://"+addr+w.Path, w.SelfTest); err != nil {
				return Fail(fmt.Errorf("self-test of %s on %s: %w", w.Name, addr, err))
			}
		}
		return Pass(fmt.Sprintf("%d webhook paths judged a self-test request on %s", len(webhooks), addr))
	}}
}

func sameCertificate(current CurrentCertificate, cs tls.ConnectionState) error {
	cert, err := current()
	if err != nil || cert == nil || len(cert.Certificate) == 0 || len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate to compare with")
	}
	if !bytes.Equal(cs.PeerCertificates[0].Raw, cert.Certificate[0]) {
		return fmt.Errorf("the listener serves %s, not the loaded certificate", describe(cs.PeerCertificates[0]))
	}
	return nil
}

// CABundleCheck passes when the caBundle of every configuration entry that
// points at one of the webhooks verifies the served certificate for the name
// the API server dials. An entry without a caBundle is skipped (the API
// server then uses its system roots), as is a configuration that cannot be
// read.
func CABundleCheck(current CurrentCertificate, lookup func(path string) Registration, webhooks []Webhook) Check {
	return Check{Name: "ca-bundle", Essential: true, Webhooks: webhooks, Run: func(context.Context) Result {
		cert, err := current()
		if err != nil || cert == nil || len(cert.Certificate) == 0 {
			return Skip("no serving certificate loaded (see the tls check)")
		}
		var verified, skipped []string
		var caExpiry time.Time // the earliest over the entries: the first the API server would stop trusting
		defer func() {
			if len(verified) == 0 {
				caExpiry = time.Time{}
			}
			metrics.CACertificateExpiration.Set(float64(max(caExpiry.Unix(), 0)))
		}()
		skip := func(note string) { // once each, in the order met: webhooks share configurations
			if !slices.Contains(skipped, note) {
				skipped = append(skipped, note)
			}
		}
		for _, w := range webhooks {
			reg := lookup(w.Path)
			if reg.Waiting {
				return Result{State: Pending, Reason: "waiting for the first read of the webhook configurations"}
			}
			if !reg.Known {
				skip(reg.Note)
				continue
			}
			for _, e := range reg.Entries {
				if len(e.CABundle) == 0 {
					skip(e.Configuration + " webhook " + e.Webhook + " has no caBundle")
					continue
				}
				notAfter, err := verifyingRootExpiry(cert, e.CABundle, e.ServerName)
				if err != nil {
					verified = nil
					return Fail(fmt.Errorf("the caBundle of %s webhook %s does not verify the serving certificate for %s: %w; the API server cannot call this replica (check the cert-manager CA injection)",
						e.Configuration, e.Webhook, e.ServerName, err))
				}
				if caExpiry.IsZero() || notAfter.Before(caExpiry) {
					caExpiry = notAfter
				}
				verified = append(verified, e.Webhook)
			}
		}
		if len(verified) == 0 {
			if len(skipped) == 0 {
				return Skip("no webhook configuration points at this replica's webhooks")
			}
			return Skip(strings.Join(skipped, "; "))
		}
		return Pass("verified by the caBundle of " + strings.Join(verified, ", "))
	}}
}

// VerifyWithBundle verifies cert (leaf and intermediates) against the PEM
// roots in bundle for serverName, as the API server does when it calls.
func VerifyWithBundle(cert *tls.Certificate, bundle []byte, serverName string) error {
	_, err := verifyingRootExpiry(cert, bundle, serverName)
	return err
}

// verifyingRootExpiry verifies like VerifyWithBundle and returns the latest
// NotAfter of the bundle's roots that verify cert: while a CA rotates, the
// bundle holds the old and the new CA, and trust lasts as long as the
// longest-lived of those that verify.
func verifyingRootExpiry(cert *tls.Certificate, bundle []byte, serverName string) (time.Time, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return time.Time{}, errors.New("the caBundle holds no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return time.Time{}, err
	}
	intermediates := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: serverName})
	if err != nil {
		return time.Time{}, err
	}
	var latest time.Time
	for _, chain := range chains {
		if root := chain[len(chain)-1]; root.NotAfter.After(latest) {
			latest = root.NotAfter
		}
	}
	return latest, nil
}

// CachesCheck passes while synced reports true: the informer caches that
// the webhooks need for their full decisions hold the whole cluster.
func CachesCheck(synced func() bool, webhooks []Webhook) Check {
	return Check{Name: "caches", Webhooks: webhooks, Run: func(context.Context) Result {
		if !synced() {
			return Fail(errors.New("informer caches not synced: the API server may be unreachable or svcguard's RBAC may not allow list/watch"))
		}
		return Pass("informer caches synced")
	}}
}

// LoopbackAddress turns a bind address into one this process can dial: an empty or
// unspecified host becomes the loopback address of the same family.
func LoopbackAddress(bind string) string {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return bind
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
