// Package certtest issues throwaway certificates for svcguard's tests: a CA
// and serving certificates it signs, in memory or written as tls.crt and
// tls.key the way cert-manager writes them. Only tests call it: every
// function takes the test and fails it on error.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating the CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(), Subject: pkix.Name{CommonName: "svcguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("signing the CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing the CA certificate: %v", err)
	}
	return &Authority{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// Issue signs a serving certificate for names (DNS names or IPs), valid from
// notBefore for life.
func (a *Authority) Issue(t testing.TB, notBefore time.Time, life time.Duration, names ...string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generating a serving key: %v", err)
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
		t.Fatalf("signing a serving certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parsing a serving certificate: %v", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// IssueFiles issues a certificate for 127.0.0.1 and localhost, valid for an
// hour, and writes it into dir as tls.key and tls.crt (key first, so a
// watcher never pairs the new certificate with the old key for long).
func (a *Authority) IssueFiles(t testing.TB, dir string) *tls.Certificate {
	t.Helper()
	cert := a.Issue(t, time.Now().Add(-time.Minute), time.Hour, "127.0.0.1", "localhost")
	chain, key := EncodePEM(t, cert)
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), chain, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert
}

// EncodePEM returns cert's chain and its ECDSA key as PEM, the contents of
// tls.crt and tls.key.
func EncodePEM(t testing.TB, cert *tls.Certificate) (chain, key []byte) {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatalf("encoding the serving key: %v", err)
	}
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return chain, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return n
}
