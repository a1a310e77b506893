package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

// CertInfo describes one certificate file.
type CertInfo struct {
	File     string
	Subject  string
	Issuer   string
	NotAfter time.Time
	IsCA     bool
	Serial   string // hexadecimal
}

// DaysLeft is the whole days until the certificate expires (negative once
// it has).
func (c CertInfo) DaysLeft(now time.Time) int {
	return int(c.NotAfter.Sub(now).Hours() / 24)
}

// Status says what happens to the certificate: "ok", "renewal due" (a
// leaf within RenewBefore of expiry: the running node renews it within
// CheckInterval), or "EXPIRED".
func (c CertInfo) Status(now time.Time) string {
	left := c.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return "EXPIRED"
	case !c.IsCA && left < RenewBefore:
		return "renewal due"
	}
	return "ok"
}

// ListCerts reads every *.crt file under the folders (the first
// certificate of each), sorted by path. Folders that do not exist are
// skipped; a file that is not a certificate is an error naming it.
func ListCerts(dirs ...string) ([]CertInfo, error) {
	var out []CertInfo
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) && p == dir {
					return filepath.SkipDir
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".crt") {
				return nil
			}
			info, err := ReadCert(p)
			if err != nil {
				return err
			}
			out = append(out, info)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// ReadCert describes the first certificate of a file; a file that is not a
// certificate is an error naming it.
func ReadCert(path string) (CertInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return CertInfo{}, err
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		return CertInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	cert := certs[0]
	return CertInfo{File: path, Subject: name(cert.Subject.CommonName, cert.Subject.Organization),
		Issuer: cert.Issuer.CommonName, NotAfter: cert.NotAfter, IsCA: cert.IsCA, Serial: cert.SerialNumber.Text(16)}, nil
}

func name(cn string, org []string) string {
	if len(org) == 0 {
		return cn
	}
	return cn + " (" + strings.Join(org, ",") + ")"
}

// ServedSerial connects to a TLS endpoint and returns the serial
// (hexadecimal) of the certificate it presents, without verifying it or
// offering a client certificate: it tells which certificate a running
// component actually serves.
func ServedSerial(addr string) (string, error) {
	var serial string
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 {
				if c, err := x509.ParseCertificate(raw[0]); err == nil {
					serial = c.SerialNumber.Text(16)
				}
			}
			return nil
		},
	})
	if conn != nil {
		conn.Close()
	}
	if serial == "" {
		return "", fmt.Errorf("%s: no certificate served: %v", addr, err)
	}
	return serial, nil
}
