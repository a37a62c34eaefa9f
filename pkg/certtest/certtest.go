// Package certtest issues throwaway certificates for svcguard's tests: a CA
// and serving certificates it signs, in memory or written as tls.crt and
// tls.key the way cert-manager writes them. Only tests call it: the
// functions take the test and fail it on error, except Generate and
// ServingFiles, which return errors for harnesses that run before any test
// (a TestMain).
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Authority is a throwaway certificate authority.
type Authority struct {
	// Cert is the CA certificate; PEM is it encoded, as a caBundle holds it.
	Cert *x509.Certificate
	PEM  []byte
	key  *ecdsa.PrivateKey
}

// NewAuthority creates a CA valid for a day.
func NewAuthority(t testing.TB) *Authority {
	t.Helper()
	return NewAuthorityUntil(t, time.Now().Add(24*time.Hour))
}

// NewAuthorityUntil creates a CA valid until notAfter, for tests of what
// expires when.
func NewAuthorityUntil(t testing.TB, notAfter time.Time) *Authority {
	t.Helper()
	a, err := Generate(notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Generate creates a CA valid until notAfter.
func Generate(notAfter time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "svcguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate: %w", err)
	}
	return &Authority{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Issue signs a serving certificate for names (DNS names or IPs), valid from
// notBefore for life.
func (a *Authority) Issue(t testing.TB, notBefore time.Time, life time.Duration, names ...string) *tls.Certificate {
	t.Helper()
	cert, err := a.issue(notBefore, life, names...)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (a *Authority) issue(notBefore time.Time, life time.Duration, names ...string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "svcguard"},
		NotBefore: notBefore, NotAfter: notBefore.Add(life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("signing a serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing a serving certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// IssueFiles issues a certificate for 127.0.0.1 and localhost, valid for an
// hour, and writes it into dir as tls.key and tls.crt (key first, so a
// watcher never pairs the new certificate with the old key for long).
func (a *Authority) IssueFiles(t testing.TB, dir string) *tls.Certificate {
	t.Helper()
	cert, files, err := a.serving()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"tls.key", "tls.crt"} {
		if err := os.WriteFile(filepath.Join(dir, name), files[name], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert
}

// ServingFiles issues what IssueFiles writes and returns the files' contents
// by name (tls.crt, tls.key), for a harness that writes them its own way.
func (a *Authority) ServingFiles() (map[string][]byte, error) {
	_, files, err := a.serving()
	return files, err
}

func (a *Authority) serving() (*tls.Certificate, map[string][]byte, error) {
	cert, err := a.issue(time.Now().Add(-time.Minute), time.Hour, "127.0.0.1", "localhost")
	if err != nil {
		return nil, nil, err
	}
	chain, key, err := encodePEM(cert)
	if err != nil {
		return nil, nil, err
	}
	return cert, map[string][]byte{"tls.crt": chain, "tls.key": key}, nil
}

// EncodePEM returns cert's chain and its ECDSA key as PEM, the contents of
// tls.crt and tls.key.
func EncodePEM(t testing.TB, cert *tls.Certificate) (chain, key []byte) {
	t.Helper()
	chain, key, err := encodePEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	return chain, key
}

func encodePEM(cert *tls.Certificate) (chain, key []byte, err error) {
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the serving key: %w", err)
	}
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return chain, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
