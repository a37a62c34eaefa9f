package readiness

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/utils/ptr"
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

// SelfTestUser and SelfTestGroup mark the synthetic AdmissionReviews of the
// serving check. The server answers such a request (both marks: the API
// server never sends that group) without running the webhook or counting
// it, so the self-test neither skews metrics nor logs.
const (
	SelfTestUser  = "system:svcguard:self-test"
	SelfTestGroup = "selftest.svcguard.io"
)

// IsSelfTest tells whether req is the serving check's synthetic request.
func IsSelfTest(req admissionv1.AdmissionRequest) bool {
	return req.UserInfo.Username == SelfTestUser && req.Kind.Group == SelfTestGroup
}

// ServingCheck passes when a TLS handshake with the listener at addr succeeds,
// the listener serves the current certificate, and a synthetic
// AdmissionReview sent to each webhook's path gets a well-formed answer: the
// whole request path the API server uses, tried on a new connection.
func ServingCheck(addr string, current CurrentCertificate, webhooks []Webhook) Check {
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
			if err := selfTest(ctx, client, "https://"+addr+w.Path); err != nil {
				return Fail(fmt.Errorf("self-test of %s on %s: %w", w.Name, addr, err))
			}
		}
		return Pass(fmt.Sprintf("%d webhook paths answered a self-test on %s", len(webhooks), addr))
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

func selfTest(ctx context.Context, client *http.Client, url string) error {
	uid := types.UID("self-test-" + string(uuid.NewUUID()))
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       uid,
			Kind:      metav1.GroupVersionKind{Group: SelfTestGroup, Version: "v1", Kind: "SelfTest"},
			Resource:  metav1.GroupVersionResource{Group: SelfTestGroup, Version: "v1", Resource: "selftests"},
			Name:      "self-test",
			Operation: admissionv1.Connect,
			UserInfo:  authenticationv1.UserInfo{Username: SelfTestUser},
			DryRun:    ptr.To(true),
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &answer); err != nil {
		return fmt.Errorf("the answer is not an AdmissionReview: %w", err)
	}
	if answer.Response == nil || answer.Response.UID != uid {
		return fmt.Errorf("the answer does not carry the request's UID %s", uid)
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
		for _, w := range webhooks {
			reg := lookup(w.Path)
			if reg.Waiting {
				return Result{State: Pending, Reason: "waiting for the first read of the webhook configurations"}
			}
			if !reg.Known {
				skipped = append(skipped, reg.Note)
				continue
			}
			for _, e := range reg.Entries {
				if len(e.CABundle) == 0 {
					skipped = append(skipped, e.Configuration+" webhook "+e.Webhook+" has no caBundle")
					continue
				}
				if err := VerifyWithBundle(cert, e.CABundle, e.ServerName); err != nil {
					return Fail(fmt.Errorf("the caBundle of %s webhook %s does not verify the serving certificate for %s: %w; the API server cannot call this replica (check the cert-manager CA injection)",
						e.Configuration, e.Webhook, e.ServerName, err))
				}
				verified = append(verified, e.Webhook)
			}
		}
		if len(verified) == 0 {
			if len(skipped) == 0 {
				return Skip("no webhook configuration points at this replica's webhooks")
			}
			return Skip(strings.Join(dedupe(skipped), "; "))
		}
		return Pass("verified by the caBundle of " + strings.Join(verified, ", "))
	}}
}

// VerifyWithBundle verifies cert (leaf and intermediates) against the PEM
// roots in bundle for serverName, as the API server does when it calls.
func VerifyWithBundle(cert *tls.Certificate, bundle []byte, serverName string) error {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return errors.New("the caBundle holds no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	intermediates := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			intermediates.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, DNSName: serverName})
	return err
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

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
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
