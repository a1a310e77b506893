package pki

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	certutil "k8s.io/client-go/util/cert"
)

func testInput() ServerInput {
	return ServerInput{
		Hostname:      "node-a",
		NodeIPs:       []net.IP{net.ParseIP("192.0.2.10")},
		ServiceIP:     net.ParseIP("10.43.0.1"),
		ClusterDomain: "example.local",
		TLSSANs:       []string{"api.example.com", "198.51.100.7"},
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// every leaf and the CA that must have signed it.
var leafCA = map[string]string{
	"serving-kube-apiserver":          "server-ca",
	"serving-kube-controller-manager": "server-ca",
	"serving-kube-scheduler":          "server-ca",
	"client-kube-apiserver":           "client-ca",
	"client-admin":                    "client-ca",
	"client-controller":               "client-ca",
	"client-scheduler":                "client-ca",
	"client-auth-proxy":               "request-header-ca",
	"etcd/client":                     "etcd/server-ca",
	"etcd/server-client":              "etcd/server-ca",
	"etcd/peer-server-client":         "etcd/peer-ca",
}

func TestChainVerifies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	for leaf, ca := range leafCA {
		caCert := readCert(t, filepath.Join(dir, ca+".crt"))
		if !caCert.IsCA {
			t.Errorf("%s is not a CA", ca)
		}
		if years := time.Until(caCert.NotAfter).Hours() / 24 / 365; years < 9.9 || years > 10.1 {
			t.Errorf("%s valid for %.1f years, want 10", ca, years)
		}
		cert := readCert(t, filepath.Join(dir, leaf+".crt"))
		pool := x509.NewCertPool()
		pool.AddCert(caCert)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not verify against %s: %v", leaf, ca, err)
		}
		if days := time.Until(cert.NotAfter).Hours() / 24; days < 364 || days > 366 {
			t.Errorf("%s valid for %.0f days, want 365", leaf, days)
		}
	}
	admin := readCert(t, filepath.Join(dir, "client-admin.crt"))
	if admin.Subject.CommonName != "system:admin" || len(admin.Subject.Organization) != 1 || admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin subject = %v", admin.Subject)
	}
}

func TestAPIServerSANs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	cert := readCert(t, filepath.Join(dir, "serving-kube-apiserver.crt"))
	dns := append([]string(nil), cert.DNSNames...)
	sort.Strings(dns)
	want := []string{"api.example.com", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.example.local", "localhost", "node-a"}
	if strings.Join(dns, ",") != strings.Join(want, ",") {
		t.Errorf("DNS SANs = %v, want %v", dns, want)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	sort.Strings(ips)
	wantIPs := []string{"10.43.0.1", "127.0.0.1", "192.0.2.10", "198.51.100.7", "::1"}
	if strings.Join(ips, ",") != strings.Join(wantIPs, ",") {
		t.Errorf("IP SANs = %v, want %v", ips, wantIPs)
	}
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, "server-ca.crt")))
	for _, name := range append(want, "10.43.0.1", "192.0.2.10") {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("serving cert does not verify for %s: %v", name, err)
		}
	}
}

func TestKeyModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(path, ".key") {
			n++
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %o, want 600", path, info.Mode().Perm())
			}
		}
		return nil
	})
	if n < 17 {
		t.Errorf("found %d keys, want at least 17", n)
	}
	if _, err := os.Stat(dir + ".new"); !os.IsNotExist(err) {
		t.Errorf("temporary folder left behind: %v", err)
	}
}

func TestRenewal(t *testing.T) {
	dir := t.TempDir()
	ca, err := EnsureCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf := Leaf{Name: "leaf", CA: ca, CN: "x", Client: true}
	// A leaf 30 days from expiry is reissued.
	cert, key, err := leaf.issue(30 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePair(filepath.Join(dir, "leaf.crt"), filepath.Join(dir, "leaf.key"), cert, key); err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Renew(dir, false); err != nil {
		t.Fatal(err)
	}
	renewed := readCert(t, filepath.Join(dir, "leaf.crt"))
	if renewed.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Fatal("leaf 30 days from expiry was not reissued")
	}
	if time.Until(renewed.NotAfter) < 360*24*time.Hour {
		t.Errorf("reissued leaf expires %s", renewed.NotAfter)
	}
	// A fresh one is kept.
	if _, err := leaf.Renew(dir, false); err != nil {
		t.Fatal(err)
	}
	if again := readCert(t, filepath.Join(dir, "leaf.crt")); again.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Error("fresh leaf was reissued")
	}
	// Changed names are reissued.
	leaf.DNSNames = []string{"new.example"}
	if _, err := leaf.Renew(dir, false); err != nil {
		t.Fatal(err)
	}
	if c := readCert(t, filepath.Join(dir, "leaf.crt")); len(c.DNSNames) != 1 || c.DNSNames[0] != "new.example" {
		t.Errorf("SAN change not reissued: %v", c.DNSNames)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	before := readCert(t, filepath.Join(dir, "serving-kube-apiserver.crt"))
	caBefore := readCert(t, filepath.Join(dir, "server-ca.crt"))
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	if readCert(t, filepath.Join(dir, "serving-kube-apiserver.crt")).SerialNumber.Cmp(before.SerialNumber) != 0 {
		t.Error("serving certificate changed on a second start")
	}
	if !readCert(t, filepath.Join(dir, "server-ca.crt")).Equal(caBefore) {
		t.Error("CA changed on a second start")
	}
	// A new SAN reissues the serving certificate under the same CA.
	in := testInput()
	in.TLSSANs = append(in.TLSSANs, "extra.example.com")
	if _, err := EnsureServer(dir, in); err != nil {
		t.Fatal(err)
	}
	after := readCert(t, filepath.Join(dir, "serving-kube-apiserver.crt"))
	if after.SerialNumber.Cmp(before.SerialNumber) == 0 {
		t.Error("new --tls-san did not reissue the serving certificate")
	}
	if err := after.CheckSignatureFrom(caBefore); err != nil {
		t.Error(err)
	}
}

func TestCANeverReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "client-ca.key")); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureServer(dir, testInput())
	if err == nil || !strings.Contains(err.Error(), "client-ca") {
		t.Fatalf("missing CA key: err = %v, want an error naming client-ca", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "client-ca.key")); !os.IsNotExist(err) {
		t.Error("a CA key was recreated")
	}
	// A mismatched key is refused too.
	other := t.TempDir()
	if _, err := EnsureCA(other, "x", "x"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(other, "x.key"))
	os.WriteFile(filepath.Join(dir, "client-ca.key"), data, 0o600)
	if _, err := EnsureServer(dir, testInput()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched CA key: err = %v", err)
	}
}

func TestCertStatus(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		info CertInfo
		want string
		days int
	}{
		{CertInfo{NotAfter: now.Add(365*24*time.Hour + time.Minute)}, "ok", 365},
		{CertInfo{NotAfter: now.Add(30*24*time.Hour + time.Minute)}, "renewal due", 30},
		{CertInfo{NotAfter: now.Add(30*24*time.Hour + time.Minute), IsCA: true}, "ok", 30},
		{CertInfo{NotAfter: now.Add(-48 * time.Hour)}, "EXPIRED", -2},
	} {
		if got := c.info.Status(now); got != c.want {
			t.Errorf("%v: status %q, want %q", c.info.NotAfter, got, c.want)
		}
		if got := c.info.DaysLeft(now); got != c.days {
			t.Errorf("%v: %d days left, want %d", c.info.NotAfter, got, c.days)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.crt"), []byte("not a certificate"), 0o600)
	if _, err := ListCerts(dir); err == nil || !strings.Contains(err.Error(), "bad.crt") {
		t.Errorf("a file that is not a certificate: %v", err)
	}
}

// A running server renews only what is due, or what `certificate rotate`
// names; everything stays signed by the same CAs.
func TestRenewServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := EnsureServer(dir, testInput()); err != nil {
		t.Fatal(err)
	}
	serials := func() map[string]string {
		out := map[string]string{}
		certs, err := ListCerts(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			out[c.File] = c.Serial
		}
		return out
	}
	before := serials()
	if _, renewed, err := RenewServer(dir, testInput(), nil); err != nil || len(renewed) != 0 {
		t.Fatalf("periodic check renewed %v (%v), want nothing", renewed, err)
	}
	force, err := ForceServices([]string{"etcd", "admin"})
	if err != nil {
		t.Fatal(err)
	}
	_, renewed, err := RenewServer(dir, testInput(), force)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(renewed)
	if want := "client-admin etcd/client etcd/peer-server-client etcd/server-client"; strings.Join(renewed, " ") != want {
		t.Errorf("renewed %v, want %s", renewed, want)
	}
	after := serials()
	for file, serial := range before {
		leaf := strings.TrimSuffix(strings.TrimPrefix(file, dir+"/"), ".crt")
		changed := after[file] != serial
		if changed != (leaf == "client-admin" || strings.HasPrefix(leaf, "etcd/") && !strings.HasSuffix(leaf, "-ca")) {
			t.Errorf("%s: changed=%v", leaf, changed)
		}
		if ca, ok := leafCA[leaf]; ok {
			if err := readCert(t, file).CheckSignatureFrom(readCert(t, filepath.Join(dir, ca+".crt"))); err != nil {
				t.Errorf("%s: %v", leaf, err)
			}
		}
	}
	if _, err := ForceServices([]string{"kubelet", "nope"}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown service: %v", err)
	}
}

func TestSetLifetimesFromEnv(t *testing.T) {
	defer func(l, r, w time.Duration) { LeafValidity, RenewBefore, WarnBefore = l, r, w }(LeafValidity, RenewBefore, WarnBefore)
	if short, err := SetLifetimesFromEnv(); short || err != nil {
		t.Fatalf("unset: %v %v", short, err)
	}
	t.Setenv(EnvTestLifetime, "10m")
	t.Setenv(EnvTestRenewBefore, "5m")
	if short, err := SetLifetimesFromEnv(); !short || err != nil {
		t.Fatalf("set: %v %v", short, err)
	}
	if LeafValidity != 10*time.Minute || RenewBefore != 5*time.Minute || CheckInterval() != 30*time.Second {
		t.Errorf("got %s %s %s", LeafValidity, RenewBefore, CheckInterval())
	}
	t.Setenv(EnvTestRenewBefore, "10m")
	if _, err := SetLifetimesFromEnv(); err == nil || !strings.Contains(err.Error(), EnvTestRenewBefore) {
		t.Errorf("renew window as long as the lifetime: %v", err)
	}
}
