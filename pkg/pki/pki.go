// Package pki creates and maintains distro's certificate authorities, leaf
// certificates and kubeconfigs. Everything is generated on first start and
// reused afterwards; a leaf that is near expiry, was signed by another CA, or
// whose names changed is reissued; a CA is never replaced silently.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"time"

	certutil "k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/klog/v2"

	"distro/pkg/fsutil"
)

// Leaf lifetimes. Tests shorten them through SetLifetimes; nothing else
// changes them.
var (
	// LeafValidity is how long a leaf certificate is valid.
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore is how close to expiry a running node reissues a leaf.
	RenewBefore = 120 * 24 * time.Hour
	// WarnBefore is how close to expiry a leaf that could not be renewed
	// raises a Warning Event and an hourly log line.
	WarnBefore = 30 * 24 * time.Hour
)

// Environment variables that shorten leaf lifetimes, for tests of live
// renewal only: a cluster with 10-minute certificates renews them every
// few minutes.
const (
	EnvTestLifetime    = "DISTRO_TEST_CERT_LIFETIME"
	EnvTestRenewBefore = "DISTRO_TEST_CERT_RENEW_BEFORE"
)

// SetLifetimesFromEnv applies EnvTestLifetime and EnvTestRenewBefore when
// set (Go durations, e.g. 10m and 5m); the warning window becomes a quarter
// of the renewal window. It says whether they were set.
func SetLifetimesFromEnv() (bool, error) {
	life, renew := os.Getenv(EnvTestLifetime), os.Getenv(EnvTestRenewBefore)
	if life == "" && renew == "" {
		return false, nil
	}
	l, err := time.ParseDuration(life)
	if err != nil || l < time.Minute {
		return false, fmt.Errorf("%s=%q: want a duration of at least 1m, like 10m", EnvTestLifetime, life)
	}
	r, err := time.ParseDuration(renew)
	if err != nil || r <= 0 || r >= l {
		return false, fmt.Errorf("%s=%q: want a duration shorter than %s, like 5m", EnvTestRenewBefore, renew, EnvTestLifetime)
	}
	LeafValidity, RenewBefore, WarnBefore = l, r, r/4
	return true, nil
}

// CheckInterval is how often a running node looks at its certificates:
// hourly, or a tenth of the renewal window when that is shorter.
func CheckInterval() time.Duration {
	return min(time.Hour, RenewBefore/10)
}

// CA is a loaded certificate authority.
type CA struct {
	Name string
	Cert *x509.Certificate
	Key  crypto.Signer
	// PEM is the CA certificate as written on disk.
	PEM []byte
}

// Leaf describes one certificate signed by a CA.
type Leaf struct {
	// Name is the file path under the PKI folder, without .crt/.key.
	Name string
	CA   *CA
	CN   string
	Orgs []string
	// Server and Client select the extended key usages.
	Server, Client bool
	DNSNames       []string
	IPs            []net.IP
}

// NewKey returns a new ECDSA P-256 private key.
func NewKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// EnsureCA loads the CA <dir>/<name>.crt/.key or, when neither exists,
// creates it (10 years). A CA with one of the two files missing, a key that
// does not match, or that has expired is an error: distro never replaces a
// CA on its own.
func EnsureCA(dir, name, cn string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case os.IsNotExist(certErr) && os.IsNotExist(keyErr):
		key, err := NewKey()
		if err != nil {
			return nil, err
		}
		cert, err := certutil.NewSelfSignedCACert(certutil.Config{CommonName: cn}, key)
		if err != nil {
			return nil, fmt.Errorf("create CA %s: %w", name, err)
		}
		if err := writePair(certPath, keyPath, cert, key); err != nil {
			return nil, err
		}
		klog.Infof("created certificate authority %s (valid until %s)", name, cert.NotAfter.Format(time.DateOnly))
		return &CA{Name: name, Cert: cert, Key: key, PEM: encodeCert(cert)}, nil
	case certErr != nil || keyErr != nil:
		return nil, fmt.Errorf("certificate authority %s: %s.crt and %s.key must both exist (one is missing or unreadable); restore the missing file, distro does not replace a CA", name, name, name)
	}
	cert, key, pemBytes, err := loadPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("certificate authority %s: %w", name, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate authority %s: %s is not a CA certificate", name, certPath)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("certificate authority %s expired on %s; distro does not replace a CA on its own", name, cert.NotAfter.Format(time.DateOnly))
	}
	return &CA{Name: name, Cert: cert, Key: key, PEM: pemBytes}, nil
}

// Renew loads the leaf from dir and reissues it when it is missing,
// broken, signed by another CA, expiring within RenewBefore, its names
// changed, or force is set; it says whether it did. The key is written
// before the certificate, each atomically, so a reader never sees half a
// file.
func (l Leaf) Renew(dir string, force bool) (bool, error) {
	certPath, keyPath := filepath.Join(dir, l.Name+".crt"), filepath.Join(dir, l.Name+".key")
	reason := ""
	cert, _, _, err := loadPair(certPath, keyPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		reason = "new"
	case err != nil:
		reason = err.Error()
	case force:
		reason = "renewal asked for"
	default:
		reason = l.staleReason(cert)
	}
	if reason == "" {
		return false, nil
	}
	if reason != "new" {
		klog.Infof("reissuing certificate %s: %s", l.Name, reason)
	}
	cert, key, err := l.issue(LeafValidity)
	if err != nil {
		return false, err
	}
	return true, writePair(certPath, keyPath, cert, key)
}

// WriteLeaf writes a certificate and key received from elsewhere (the join
// API) as <dir>/<name>.crt and .key, the key first, each atomically.
func WriteLeaf(dir, name string, certPEM, keyPEM []byte) error {
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, name+".key"), keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, name+".crt"), certPEM, 0o644)
}

// Issue signs a new certificate for l in memory and returns the
// certificate and key PEM.
func (l Leaf) Issue() (certPEM, keyPEM []byte, err error) {
	cert, key, err := l.issue(LeafValidity)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(cert), keyPEM, nil
}

// staleReason says why cert must be reissued, or "" when it is fine.
func (l Leaf) staleReason(cert *x509.Certificate) string {
	if err := cert.CheckSignatureFrom(l.CA.Cert); err != nil {
		return "not signed by the current " + l.CA.Name
	}
	if left := time.Until(cert.NotAfter); left < RenewBefore {
		return fmt.Sprintf("expires in %d days", int(left.Hours()/24))
	}
	if cert.Subject.CommonName != l.CN || !sameStrings(cert.Subject.Organization, l.Orgs) {
		return "subject changed"
	}
	if !sameStrings(cert.DNSNames, l.DNSNames) || !sameStrings(ipStrings(cert.IPAddresses), ipStrings(l.IPs)) {
		return "subject alternative names changed"
	}
	return ""
}

func (l Leaf) issue(validity time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := NewKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).SetInt64(math.MaxInt64))
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.CN, Organization: l.Orgs},
		NotBefore:    now.Add(-time.Minute).UTC(),
		NotAfter:     now.Add(validity).UTC(),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	if l.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, l.CA.Cert, key.Public(), l.CA.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", l.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// EnsureKey loads or creates a bare private key (the service-account
// signing key).
func EnsureKey(path string) error {
	data, err := os.ReadFile(path)
	if err == nil {
		if _, err := keyutil.ParsePrivateKeyPEM(data); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	if !os.IsNotExist(err) {
		return err
	}
	key, err := NewKey()
	if err != nil {
		return err
	}
	pemBytes, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, pemBytes, 0o600)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, []byte, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, nil, err
	}
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	k, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return nil, nil, nil, fmt.Errorf("%s does not match %s", keyPath, certPath)
	}
	return certs[0], key, certPEM, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ae.Equal(b)
}

// writePair writes the key first, then the certificate, each atomically:
// a crash in between leaves a pair that fails to load and is reissued.
func writePair(certPath, keyPath string, cert *x509.Certificate, key crypto.Signer) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(certPath, encodeCert(cert), 0o644)
}

func sameStrings(a, b []string) bool {
	a, b = append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(a)
	sort.Strings(b)
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// Bundle concatenates CA certificates.
func Bundle(cas ...*CA) []byte {
	var b bytes.Buffer
	for _, ca := range cas {
		b.Write(ca.PEM)
	}
	return b.Bytes()
}

// encodeCert renders one certificate as PEM.
func encodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: certutil.CertificateBlockType, Bytes: cert.Raw})
}
